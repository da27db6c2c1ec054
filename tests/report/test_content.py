"""The report's words: verdicts with their claim and seed spread, and the legend for them."""

from __future__ import annotations

import pytest

from repro.report.compare import Delta, Settings, compare
from repro.report.content import build, verdict
from repro.report.render import to_markdown

SETTINGS = Settings(iterations=500)


def _acc(*values: float) -> list[dict]:
    return [{"t": {"acc": v, "acc_stderr": 0.01}} for v in values]


def _rows(md: str, experiment: str) -> dict[str, list[str]]:
    """The differences table's rows of one experiment: metric -> cells."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if line.startswith(f"| {experiment} |")]
    return {r[1]: r for r in rows}


def _report(make_run, collected, runs) -> str:
    col = collected(runs, "base")
    return to_markdown(build("r", "base", col, compare(col, SETTINGS), {}))


def test_verdict_words():
    d = Delta(0.1, -0.1, 0.3, False, None, None, "checkpoint", None)
    assert verdict(d, "higher") == "better (this checkpoint only), not significant"
    d = Delta(-0.02, -0.03, -0.01, True, None, None, "method", 0.05)
    assert verdict(d, "higher") == "worse, within seed noise"
    assert verdict(Delta(-0.2, -0.3, -0.1, True, None, None, "method", 0.05), "lower") == "better"


def test_single_seed_verdict_is_about_this_checkpoint_only(make_run, collected):
    md = _report(make_run, collected, [make_run("base", _acc(0.50), loss=3.0),
                                       make_run("solo", _acc(0.80), loss=2.0)])
    header = next(line for line in md.splitlines() if line.startswith("| experiment | metric |"))
    assert "| Δ | seed spread |" in header and "| verdict | claim |" in header
    row = _rows(md, "solo")["t acc ↑"]
    # significant on the items, yet one seed each: no claim about the method
    assert row[7] == "better (this checkpoint only)" and row[8] == "checkpoint (seeds: 1 vs 1)"
    assert row[5] == "—"  # no replicas, no measured seed noise
    loss = _rows(md, "solo")["final train loss ↓"]
    assert loss[7] == "better (this checkpoint only)" and loss[8] == "checkpoint (seeds: 1 vs 1)"
    legend = md[md.index("## How to read"):]
    assert "claim: 'method' when the experiment and the baseline each have at least 2" in legend
    assert "already includes the seed variance" in legend
    assert "seed spread: the noise floor the replicas measured, the pooled standard deviation" \
        in legend and "'within seed noise'" in legend


def test_replicated_pair_reads_as_a_method_claim_with_its_spread(make_run, collected):
    md = _report(make_run, collected, [make_run("base", _acc(0.50, 0.54)),
                                       make_run("new", _acc(0.60, 0.66))])
    row = _rows(md, "new")["t acc ↑"]
    # sqrt(((0.50-0.52)² + (0.54-0.52)² + (0.60-0.63)² + (0.66-0.63)²) / 2) = 0.036056
    assert row[4] == "+0.1100" and row[5] == "0.0361"
    assert row[7] == "better" and row[8] == "method (seeds: 2 vs 2)"


def test_an_effect_inside_the_seed_noise_is_flagged(make_run, collected):
    md = _report(make_run, collected, [make_run("base", _acc(0.50, 0.60)),
                                       make_run("new", _acc(0.56, 0.58))])
    row = _rows(md, "new")["t acc ↑"]
    # spread sqrt((0.0025 + 0.0025 + 0.0001 + 0.0001) / 2) = 0.0510 > |Δ| = 0.02
    assert row[4] == "+0.0200" and row[5] == "0.0510"
    assert row[7].startswith("better") and row[7].endswith(", within seed noise")
    assert row[8] == "method (seeds: 2 vs 2)"


def test_a_task_without_spread_reads_no_signal(make_run, collected):
    """Issue 22: every model scored exactly 0.37 on a cloze task (answered by length), and
    the report printed an interval of [+0.0000, +0.0000] as if it were a result. A task
    whose every replica of every experiment scores the same is marked instead; a task that
    moves is not."""
    from repro.report.compare import NO_SIGNAL
    from repro.report.tables import deltas_table

    def reps(*bpb: float) -> list[dict]:
        return [{"cloze": {"acc": 0.37, "acc_stderr": 0.048},
                 "web": {"bits_per_byte": b, "bits_per_byte_stderr": 0.01}} for b in bpb]

    runs = [make_run("base", reps(2.31, 2.33)), make_run("muon", reps(2.20, 2.23)),
            make_run("nope", reps(2.35, 2.34))]
    col = collected(runs, "base")
    cmp = compare(col, SETTINGS)
    assert cmp.no_signal("cloze.acc") and not cmp.no_signal("web.bits_per_byte")
    flat, moving = cmp.signals["cloze.acc"], cmp.signals["web.bits_per_byte"]
    assert flat.signal == 0 and flat.noise == 0 and flat.snr is None and flat.scores == 6
    # signal: range of the means 2.345 - 2.215; noise: pooled seed spread of the 3 pairs
    assert moving.signal == pytest.approx(0.13)
    assert moving.noise == pytest.approx(((0.01**2 * 2 + 0.015**2 * 2 + 0.005**2 * 2) / 3) ** 0.5)
    assert moving.snr == pytest.approx(moving.signal / moving.noise)

    md = to_markdown(build("r", "base", col, cmp, {}))
    for name in ("muon", "nope"):
        row = _rows(md, name)["cloze acc ↑"]
        assert row[6] == NO_SIGNAL and row[7] == NO_SIGNAL  # no interval, no verdict
        assert "0.0000]" not in " ".join(row)
        moves = _rows(md, name)["web bits_per_byte ↓"]
        assert moves[6].endswith("]") and NO_SIGNAL not in moves[7]  # an interval, a verdict
    assert "### Signal and noise" in md
    assert ("No signal at this scale: cloze acc ↑ (every replica of every experiment scores "
            "0.3700)") in md
    assert "'no signal at this scale': every replica of every experiment scored exactly" in md
    table = deltas_table(col, cmp)
    assert table.filter(table["column"] == "cloze.acc")["no_signal"].to_list() == [True, True]
    assert not any(table.filter(table["column"] != "cloze.acc")["no_signal"].to_list())


def test_one_model_alone_is_not_flagged(make_run, collected):
    """A single score has no spread to measure: not 'no signal'."""
    col = collected([make_run("base", _acc(0.37))], "base")
    cmp = compare(col, SETTINGS)
    assert not cmp.no_signal("t.acc") and cmp.signals["t.acc"].signal is None
