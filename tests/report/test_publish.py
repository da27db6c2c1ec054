"""`repro publish`: the static site built from reports the real report stage wrote."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock
from urllib.parse import unquote, urlsplit

import pytest
from click.testing import CliRunner

from repro.cli import main
from repro.report.publish import MARKER, PublishError, build_site, push_to_hub

REPO = Path(__file__).resolve().parents[2]


def _site_fixtures():
    """tests/report/report_site_fixtures.py, by path (tests are not a package)."""
    path = Path(__file__).with_name("report_site_fixtures.py")
    spec = importlib.util.spec_from_file_location("report_site_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_fixtures = _site_fixtures()
stage_reports, parse_page = _fixtures.stage_reports, _fixtures.parse_page  # pytest fixtures


@pytest.fixture(scope="module")
def site(stage_reports, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("publish") / "site"
    build_site(stage_reports, out)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _number(cell: str) -> float | None:
    return None if cell == "—" else float(cell.replace(",", ""))


def _summary(stage_reports: Path, report: str) -> dict:
    return json.loads((stage_reports / report / "summary.json").read_text())


def test_site_structure(site, stage_reports):
    experiments = _summary(stage_reports, "quick")["experiments"]
    assert set(_summary(stage_reports, "flipped")["experiments"]) <= set(experiments)
    report_files = [f"reports/{r.name}/{f.name}" for r in stage_reports.iterdir()
                    for f in r.iterdir()]  # every file of each report, report.html included
    assert sorted(_files(site)) == sorted(
        [MARKER, "index.html", *(f"experiments/{e}.html" for e in experiments), *report_files])
    assert not list(site.parent.glob(".*"))  # the temporary build folder was renamed away


def test_pages_are_self_contained_and_every_link_resolves(site, stage_reports, parse_page):
    pages = sorted(site.rglob("*.html"))
    for page in pages:
        parsed = parse_page(page)
        assert not parsed.tags & {"script", "link", "iframe", "object", "embed"}, page
        assert all(s.startswith("data:image/png;base64,") for s in parsed.srcs), page
        for href in parsed.hrefs:
            url = urlsplit(href)
            assert not url.scheme and not url.netloc and not url.path.startswith("/"), href
            target = (page.parent / unquote(url.path)).resolve()
            assert target.is_file() and target.is_relative_to(site.resolve()), (page, href)
    index = parse_page(site / "index.html")
    experiments = _summary(stage_reports, "quick")["experiments"]
    for name in ["reports/quick/report.html", "reports/flipped/report.html",
                 *(f"experiments/{e}.html" for e in experiments)]:
        assert name in index.hrefs
    for page in pages:  # every page leads back to the index
        if page.name != "index.html":
            assert any(unquote(h).endswith("index.html") for h in parse_page(page).hrefs), page


def test_report_page_is_the_report_with_links_added(site, stage_reports):
    page = (site / "reports/quick/report.html").read_text()
    original = (stage_reports / "quick/report.html").read_text()
    nav_end = page.index("</p>\n", page.index("<body>")) + len("</p>\n")
    assert page[:page.index("<body>") + 7] + page[nav_end:] == original
    for name in _summary(stage_reports, "quick")["experiments"]:
        assert f'<a href="../../experiments/{name}.html">{name}</a>' in page
    for f in (stage_reports / "quick").iterdir():
        if f.name != "report.html":
            assert (site / "reports/quick" / f.name).read_bytes() == f.read_bytes()


def test_index_lists_reports_and_experiments(site, stage_reports, parse_page):
    quick, flipped = _summary(stage_reports, "quick"), _summary(stage_reports, "flipped")
    tables = parse_page(site / "index.html").tables
    reports, experiments = tables["Reports"], tables["Experiments"]
    assert [r[:3] for r in reports[1:]] == [
        ["flipped", flipped["baseline"], str(len(flipped["experiments"]))],
        ["quick", quick["baseline"], str(len(quick["experiments"]))]]
    assert [r[0] for r in experiments[1:]] == sorted(quick["experiments"])
    for cells in experiments[1:]:
        source = flipped if cells[0] in flipped["experiments"] else quick
        row = next(r for r in source["rows"] if r["experiment"] == cells[0])
        assert cells[1] == row["final_stage"] and _number(cells[2]) == row["tokens"]
        assert _number(cells[3]) == pytest.approx(row["final_train_loss"], rel=1e-5)
        assert cells[4] == ("flipped, quick" if source is flipped else "quick")


def _approx(want: float | None):
    return None if want is None else pytest.approx(want, rel=1e-5)


def test_experiment_numbers_equal_summary_json(site, stage_reports, parse_page):
    flipped, quick = _summary(stage_reports, "flipped"), _summary(stage_reports, "quick")
    for experiment in quick["experiments"]:
        # Numbers come from the first report by folder name that lists the experiment.
        summary = flipped if experiment in flipped["experiments"] else quick
        _check_experiment_page(parse_page(site / f"experiments/{experiment}.html").tables,
                               summary, experiment)


def _check_experiment_page(tables: dict, summary: dict, experiment: str) -> None:

    stages = summary["stages"][experiment]
    assert [(r[0], _number(r[1]), _number(r[2]), _number(r[3]), _number(r[4]))
            for r in tables["Training stages"][1:]] == [
        (s["stage"], s["step_end"], s["tokens"], s["tokens_total"], _approx(s["final_loss"]))
        for s in stages]

    row = next(r for r in summary["rows"] if r["experiment"] == experiment)
    final = tables["Final scores"][1:]
    assert len(final) == len(summary["metrics"])
    for cells, m in zip(final, summary["metrics"]):
        assert cells[1:3] == [m["metric"], m["better"]]
        assert cells[0] == m["task"] or m["task"] is None
        assert _number(cells[3]) == _approx(row[m["column"]])
        assert _number(cells[4]) == _approx(row.get(m["column"] + "_stderr"))

    evals = summary["evaluations"][experiment]
    shown = tables["Scores at every evaluated checkpoint"][1:]
    assert len(shown) == sum(len([m for m in metrics if not m.endswith("_stderr")])
                             for ev in evals.values() for metrics in ev["tasks"].values())
    assert {c[0] for c in shown} == set(evals) and len(evals) > 1
    seen = [_number(c[1]) for c in shown]
    assert seen == sorted(seen)  # training order
    for ckpt, tokens, task, metric, value, se, rnd in shown:
        ev = evals[ckpt]
        assert _number(tokens) == ev["tokens_seen"]
        assert _number(value) == _approx(ev["tasks"][task][metric])
        assert _number(se) == _approx(ev["tasks"][task].get(metric + "_stderr"))
        assert _number(rnd) == _approx(ev["random_baseline"].get(task, {}).get(metric))


def test_two_builds_are_byte_identical_across_processes(site, stage_reports, tmp_path):
    # A second process has another hash seed, so set/dict-order accidents would show.
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, "-m", "repro.cli", "publish", str(tmp_path / "again"),
                    "--reports", str(stage_reports)], check=True, env=env, cwd=REPO,
                   capture_output=True)
    assert _files(tmp_path / "again") == _files(site)


def test_rebuild_replaces_an_earlier_site_but_not_a_foreign_folder(stage_reports, tmp_path):
    out = tmp_path / "site"
    build_site(stage_reports, out)
    (out / "stale.html").write_text("from an earlier publish")
    build_site(stage_reports, out)
    assert not (out / "stale.html").exists()
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(PublishError, match="not written by `repro publish`"):
        build_site(stage_reports, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_publish_never_removes_a_link_the_workspace_or_the_reports(stage_reports, tmp_path,
                                                                   monkeypatch):
    """Publishing replaces DIR whole; a link to an earlier site (its target would go), the
    workspace, a folder holding it, and a folder holding the reports are refused from the
    CLI with exit 2 and the fix, and nothing is removed."""
    earlier = tmp_path / "earlier"
    build_site(stage_reports, earlier)
    (earlier / "sentinel.txt").write_text("keep me")
    (tmp_path / "link").symlink_to(earlier)
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / MARKER).write_text("a marker does not make the workspace a site")
    (ws / "sentinel.txt").write_text("keep me")
    shutil.copytree(stage_reports, ws / "reports")
    monkeypatch.chdir(ws / "sub")
    runner = CliRunner()
    for target, reports in ((tmp_path / "link", stage_reports), (ws / "sub", stage_reports),
                            (ws, stage_reports), (ws, ws / "reports")):
        result = runner.invoke(main, ["publish", str(target), "--reports", str(reports)])
        assert result.exit_code == 2, result.output
        assert "nothing was removed" in result.output and "\n    fix: choose a new or empty " \
            "folder" in result.output and "Traceback" not in result.output
    assert (earlier / "sentinel.txt").read_text() == "keep me" and (tmp_path / "link").is_symlink()
    assert (ws / "sentinel.txt").read_text() == "keep me" and (ws / "sub").is_dir()
    assert _files(ws / "reports") == _files(stage_reports)


def test_no_reports_says_where_it_looked_and_how_to_make_them(tmp_path):
    (tmp_path / "reports" / ".quick.tmp-1").mkdir(parents=True)  # half-written: not a report
    (tmp_path / "reports" / ".quick.tmp-1" / "summary.json").write_text("{}")
    result = CliRunner().invoke(main, ["publish", str(tmp_path / "site"),
                                       "--reports", str(tmp_path / "reports")])
    assert result.exit_code == 2
    assert f"looked for {tmp_path / 'reports'}/*/summary.json" in result.output
    assert "dvc repro" in result.output
    assert not (tmp_path / "site").exists()


def test_unreadable_summary_names_the_file(tmp_path):
    (tmp_path / "r" / "bad").mkdir(parents=True)
    (tmp_path / "r" / "bad" / "summary.json").write_text("{not json")
    with pytest.raises(PublishError, match=r"cannot read .*bad/summary.json.*dvc repro"):
        build_site(tmp_path / "r", tmp_path / "site")


def test_missing_keys_and_page_degrade_with_a_note(stage_reports, tmp_path, parse_page):
    reports = tmp_path / "reports"
    shutil.copytree(stage_reports / "quick", reports / "quick")
    summary = json.loads((reports / "quick/summary.json").read_text())
    for key in ("experiments", "metrics", "evaluations"):
        del summary[key]
    summary["stages"] = "garbled"
    (reports / "quick/summary.json").write_text(json.dumps(summary))
    (reports / "quick/report.html").unlink()
    result = CliRunner().invoke(main, ["publish", str(tmp_path / "site"),
                                       "--reports", str(reports)])
    assert result.exit_code == 0, result.output
    for key in ("experiments", "metrics", "evaluations"):
        assert f"has no `{key}`" in result.output
    assert "has a malformed `stages`" in result.output and "report.html is missing" in result.output
    site = tmp_path / "site"
    exp = (site / f"experiments/{summary['rows'][0]['experiment']}.html").read_text()
    assert exp.count("Not shown:") == 3  # stages, final scores (no metric list), checkpoints
    assert "<h1>Report: quick</h1>" in (site / "reports/quick/report.html").read_text()
    fallback = parse_page(site / "reports/quick/report.html").tables["Report: quick"]
    assert [r[0] for r in fallback[1:]] == [r["experiment"] for r in summary["rows"]]
    index = (site / "index.html").read_text()
    assert "<h2>Missing from the reports</h2>" in index and "has no `metrics`" in index


def test_stale_report_disagreement_is_flagged(stage_reports, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(stage_reports, reports)
    summary = json.loads((reports / "quick/summary.json").read_text())
    changed, same = _summary(stage_reports, "flipped")["experiments"][:2]
    final = next(r for r in summary["rows"] if r["experiment"] == changed)["final_stage"]
    metrics = next(iter(summary["evaluations"][changed][final]["tasks"].values()))
    metrics[next(iter(metrics))] = 12345.0
    (reports / "quick/summary.json").write_text(json.dumps(summary))
    build_site(reports, tmp_path / "site")
    page = (tmp_path / f"site/experiments/{changed}.html").read_text()
    assert "Reports quick hold different numbers" in page
    assert "different numbers" not in (tmp_path / f"site/experiments/{same}.html").read_text()


# ------------------------------------------------------------------------ hub (mocked)


def test_push_creates_a_static_space_and_uploads_the_site(site):
    api = mock.Mock()
    url = push_to_hub(site, "org/lm-reports", api=api)
    assert url == "https://huggingface.co/spaces/org/lm-reports"
    api.create_repo.assert_called_once_with("org/lm-reports", repo_type="space",
                                            space_sdk="static", exist_ok=True)
    api.upload_folder.assert_called_once_with(folder_path=str(site), repo_id="org/lm-reports",
                                              repo_type="space", commit_message="repro publish")


def test_cli_push_uses_the_stored_token(stage_reports, tmp_path, monkeypatch):
    import huggingface_hub

    api = mock.Mock()
    factory = mock.Mock(return_value=api)
    monkeypatch.setattr(huggingface_hub, "HfApi", factory)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    result = CliRunner().invoke(main, ["publish", str(tmp_path / "site"), "--reports",
                                       str(stage_reports), "--hub-repo", "org/lm-reports"])
    assert result.exit_code == 0, result.output
    assert "pushed to https://huggingface.co/spaces/org/lm-reports" in result.output
    factory.assert_called_once_with(token="hf_test")
    assert api.upload_folder.call_args.kwargs["folder_path"] == str(tmp_path / "site")


def test_push_without_token_or_with_hub_error_says_what_to_do(site, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(PublishError, match="set HF_TOKEN or run `hf auth login`"):
        push_to_hub(site, "org/lm-reports")
    api = mock.Mock()
    api.upload_folder.side_effect = RuntimeError("403 Forbidden")
    with pytest.raises(PublishError, match="403 Forbidden.*write access"):
        push_to_hub(site, "org/lm-reports", api=api)
    with pytest.raises(PublishError, match="ORG/NAME"):
        push_to_hub(site, "no-slash", api=mock.Mock())


# ------------------------------------------------- sweeps, ladders and spec descriptions


def _specs(root: Path) -> Path:
    """A specs folder describing the fixture's experiments (`base`, `new`) and its `quick`
    report, written from the quickstart's own spec; and an example folder whose spec holds
    a sweep named `toy`."""
    import yaml

    base = yaml.safe_load((REPO / "specs" / "qs-nope.yaml").read_text())
    specs = root / "specs"
    (specs / "examples" / "toy").mkdir(parents=True)
    base["experiment"] = {"name": "base", "description": "the baseline <b>as is</b>"}
    base["report"] = {"name": "quick", "experiments": ["new", "base"], "baseline": "base"}
    (specs / "base.yaml").write_text(yaml.safe_dump(base))
    new = {**base, "experiment": {"name": "new", "description": "the change under test"}}
    del new["report"]
    (specs / "new.yaml").write_text(yaml.safe_dump(new))
    (specs / "broken.yaml").write_text("schema_version: 1\nexperiment: {name: 3}\n")
    return specs


def _with_markdown_reports(stage_reports: Path, root: Path) -> Path:
    """The fixture's reports plus a sweep's and a ladder's report.md folders, as `repro
    sweep` and a fit stage write them."""
    import base64

    reports = root / "reports"
    shutil.copytree(stage_reports, reports)
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
                           "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
    sweep = reports / "sweeps" / "toy"
    sweep.mkdir(parents=True)
    (sweep / "lr.png").write_bytes(png)
    (sweep / "results.json").write_text("{}")
    (sweep / "report.md").write_text(
        "# Sweep toy (base)\n\nRaw <script>alert(1)</script> stays text.\n\n"
        "| rank | experiment |\n| ---: | :--- |\n| 1 | toy-0 |\n\n![loss vs lr](lr.png)\n\n"
        "```\ndvc exp run --name toy-0 -S train.optimizer.lr=0.01 evaluate\n```\n")
    ladder = reports / "ladders" / "small"
    ladder.mkdir(parents=True)
    (ladder / "report.md").write_text("# Scaling ladder: small\n\nFitted.\n")
    (ladder / "fit.json").write_text("{}")
    return reports


def test_sweep_and_ladder_reports_are_published_with_the_specs_descriptions(
        stage_reports, tmp_path, parse_page, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)  # the specs' workspace (their paths are confined to it)
    specs = _specs(tmp_path)
    toy = yaml.safe_load((REPO / "specs" / "examples" / "lr-sweep" / "qs-lr.yaml").read_text())
    assert "sweep" in toy  # the example sweep spec extends the quickstart's; make it whole
    # it also holds base's report block, as a spec extending base would: base defines it
    (specs / "examples" / "toy" / "toy.yaml").write_text(yaml.safe_dump({
        **yaml.safe_load((specs / "base.yaml").read_text()),
        "experiment": {"name": "toy", "description": "an LR grid"},
        "sweep": {**toy["sweep"], "name": "toy", "parameters": {
            "lr": {"keys": ["train-toy-*.optimizer.lr"], "values": [0.01, 0.02]}}}}))
    reports = _with_markdown_reports(stage_reports, tmp_path)
    site = build_site(reports, tmp_path / "site", specs)
    assert site.reports == 4
    assert any("broken.yaml does not load" in n for n in site.notes)

    index = parse_page(tmp_path / "site" / "index.html")
    rows = {r[0]: r for r in index.tables["Sweeps and scaling ladders"][1:]}
    assert rows["Sweep toy (base)"][1:] == ["report.md, results.json", "toy: an LR grid"]
    assert rows["Scaling ladder: small"][1:] == ["fit.json, report.md", "—"]  # no spec names it
    assert {"reports/sweeps/toy/report.html", "reports/ladders/small/report.html"} <= set(index.hrefs)
    assert index.tables["Reports"][0][-1] == "defined by"
    assert {r[0]: r[-1] for r in index.tables["Reports"][1:]}["quick"] == "base: the baseline <b>as is</b>"
    assert {r[0]: r[-1] for r in index.tables["Experiments"][1:]}["new"] == "the change under test"

    page = (tmp_path / "site/reports/sweeps/toy/report.html").read_text()
    parsed = parse_page(tmp_path / "site/reports/sweeps/toy/report.html")
    assert "<script" not in page and "Raw &lt;script&gt;alert(1)&lt;/script&gt; stays text." in page
    assert parsed.tables["Sweep toy (base)"] == [["rank", "experiment"], ["1", "toy-0"]]
    assert parsed.srcs == ["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
                           "AAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="]
    assert parsed.hrefs == ["../../../index.html"]
    assert "Defined by the spec of toy: an LR grid" in page
    assert "dvc exp run --name toy-0 -S train.optimizer.lr=0.01 evaluate" in page
    assert (tmp_path / "site/reports/sweeps/toy/results.json").exists()

    quick = (tmp_path / "site/reports/quick/report.html").read_text()
    assert "Defined by the spec of base: the baseline &lt;b&gt;as is&lt;/b&gt;" in quick
    assert ": the change under test</li>" in quick
    assert "<p>the change under test</p>" in (tmp_path / "site/experiments/new.html").read_text()
    # the same inputs give the same bytes
    build_site(reports, tmp_path / "again", specs)
    assert _files(tmp_path / "site") == _files(tmp_path / "again")


def test_the_pipelines_specs_describe_their_reports_sweeps_and_ladders(monkeypatch):
    from repro.report.publish import spec_descriptions

    monkeypatch.chdir(REPO)
    found = spec_descriptions(REPO / "specs")
    assert found.notes == ()
    assert found.reports["quickstart"][0] == "qs-nope"
    assert found.reports["sweeps/qs-lr"] == ("qs-lr", found.experiments["qs-lr"])
    ladder, text = found.reports["ladders/qs"]
    assert text == found.experiments[ladder] and "L(N, D)" in text
    assert found.experiments["qs-muon"].startswith("Muon")
