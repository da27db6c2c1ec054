"""The report's data section: funnel tables (curation, held out, decontamination, tokens) and
the token ledger, compact: shared funnels shown once, identical ledger rows merged."""

from __future__ import annotations

import dataclasses
import json

from repro.report import data
from repro.report.collect import load_runs
from repro.report.render import Heading, Table, to_markdown
from repro.stages.base import StageIO, write_json


def funnel(kept_tokens: int = 900, decont: bool = True) -> dict:
    f = {
        "dataset": "web",
        "curation": {
            "docs_in": 10, "chars_in": 5000, "docs_out": 6, "chars_out": 3000,
            "tokens_out": kept_tokens,
            "steps": {
                "01_trafilatura": {"docs_in": 10, "docs_out": 9, "chars_out": 4000,
                                   "removed": {"timeout": 1}, "tokens_removed": None,
                                   "tokens_out": None},
                "02_gopher_repetition": {"docs_in": 9, "docs_out": 6, "chars_out": 3000,
                                         "removed": {"a": 1, "b": 1, "c": 3, "d": 2},
                                         "tokens_removed": 300, "tokens_out": kept_tokens},
            }},
        "heldout": {"docs": 1, "chars": 400, "tokens": 100},
        "training": {"docs": 4, "chars": 2100, "tokens": 700},
    }
    if decont:
        f["decontamination"] = {"docs_in": 5, "docs_out": 4, "chars_out": 2100,
                                "removed": {"repro_bpb_web": 1},
                                "tokens_removed": {"repro_bpb_web": 100}, "tokens_out": 700}
    return f


def ledger(max_epochs: float = 4.0) -> dict:
    return {"experiment": "x", "seq_len": 15, "window_tokens": 16, "round_robin_simulated": True,
            "stages": ["stable", "decay"],
            "datasets": {"web": {
                "tokens_available": 800, "windows_available": 50, "tokens_drawn": 1500,
                "windows_drawn": 100, "epochs": 2.0, "max_epochs": max_epochs,
                "stages": {"decay": {"tokens": 300}, "stable": {"tokens": 1200}}}}}


def test_funnel_rows():
    rows = data.funnel_rows(funnel())
    assert [r[0] for r in rows] == ["input", "01_trafilatura", "02_gopher_repetition",
                                    "held out (evaluation)", "decontamination"]
    assert rows[0] == ("input", "10", "5,000", "—", "", "", "")
    assert rows[1][3:6] == ("—", "1", "—")  # tokens unknown before the extractor's loss
    assert rows[2][6] == "c 3, d 2, a 1, other 1"  # most frequent first, ties by name
    assert rows[3] == ("held out (evaluation)", "5", "2,600", "800", "1", "100", "held-out split")
    assert rows[4] == ("decontamination", "4", "2,100", "700", "1", "100", "repro_bpb_web 1")
    assert [r[0] for r in data.funnel_rows(funnel(decont=False))][-1] == "held out (evaluation)"


def test_shared_funnels_once_and_merged_ledger_rows(make_run):
    a = dataclasses.replace(make_run("a", {}), funnels={"web": funnel()}, ledger=ledger())
    b = dataclasses.replace(make_run("b", {}), funnels={"web": funnel()}, ledger=ledger())
    blocks = data.blocks([a, b])
    headings = [x.text for x in blocks if isinstance(x, Heading)]
    assert headings == ["Data", "Funnel: web", "Token ledger"]
    [_, ledger_table] = [x for x in blocks if isinstance(x, Table)]
    assert ledger_table.rows == (("a, b", "web", "800", "1,500", "stable 1,200 + decay 300",
                                  "2.00", "4"),)


def test_differing_funnels_and_ledgers_are_told_apart(make_run):
    a = dataclasses.replace(make_run("a", {}), funnels={"web": funnel()}, ledger=ledger())
    b = dataclasses.replace(make_run("b", {}), funnels={"web": funnel(kept_tokens=950)},
                            ledger=ledger(max_epochs=8))
    md = to_markdown(data.blocks([a, b]))
    assert "### Funnel: web (a)" in md and "### Funnel: web (b)" in md
    assert "| a | web |" in md and "| b | web |" in md


def test_no_data_no_section(make_run):
    assert data.blocks([make_run("a", {})]) == []
    assert data.summary([make_run("a", {})]) == {"funnels": {}, "ledgers": {}}


def test_load_runs_reads_ledger_and_funnels(tmp_path):
    write_json(tmp_path / "t.json", {"step_end": 2, "tokens": 20})
    (tmp_path / "l.csv").write_text("step,tokens,loss,lr\n1,10,2.0,0.1\n")
    write_json(tmp_path / "e.json", {"tasks": {}})
    write_json(tmp_path / "ledger.json", ledger())
    write_json(tmp_path / "funnel.json", funnel())
    ins = {"train:a:seed0:s": tmp_path / "t.json", "loss:a:seed0:s": tmp_path / "l.csv",
           "eval:a:seed0:s": tmp_path / "e.json", "ledger:a": tmp_path / "ledger.json",
           "funnel:a:web": tmp_path / "funnel.json"}
    [run] = load_runs(StageIO("r", ins, {}), ["a"], "a").runs
    assert run.ledger == ledger() and run.funnels == {"web": json.loads(json.dumps(funnel()))}


def test_funnel_counts_and_ledger_numbers(make_run):
    assert data.funnel_counts(funnel()) == [
        ("input", 10, None), ("01_trafilatura", 9, None), ("02_gopher_repetition", 6, 900),
        ("held out", 5, 800), ("decontamination", 4, 700)]
    a = dataclasses.replace(make_run("a", {}), ledger=ledger())
    b = dataclasses.replace(make_run("b", {}), ledger=ledger())
    # planned falls back to drawn tokens where the ledger has no tokens_planned
    assert data.ledger_numbers([a, b]) == [("a, b", "web", 800, 1500, 1500)]
