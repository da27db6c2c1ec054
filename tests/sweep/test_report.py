"""The report: what it says, and the same bytes (PNGs included) on every render."""

from __future__ import annotations

import json
from pathlib import Path

from repro.sweep.report import write_report
from repro.sweep.results import TrialResult
from tests.sweep.toy import make_plan, make_sweep, toy_value

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _results() -> list[TrialResult]:
    out = [TrialResult(f"sw-{i}", i, {"lr": lr, "wd": wd}, "completed", toy_value(lr, wd))
           for i, (lr, wd) in enumerate([(0.001, 0.0), (0.001, 0.5), (0.01, 0.0), (0.01, 0.5)])]
    return out + [TrialResult("sw-4", 4, {"lr": 0.1, "wd": 0.0}, "failed", error="diverged")]


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_report_renders_identically_twice(tmp_path):
    plan = make_plan()
    write_report(plan, _results(), 1.2, tmp_path / "a")
    write_report(plan, _results(), 1.2, tmp_path / "b")
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(first) == ["lr.png", "report.md", "results.json", "wd.png"]
    assert first == second
    assert first["lr.png"].startswith(PNG_MAGIC) and b"matplotlib" not in first["lr.png"].lower()
    assert first["lr.png"] != first["wd.png"]


def test_report_names_the_best_its_margin_the_baseline_and_how_to_apply_it(tmp_path):
    write_report(make_plan(), _results(), 1.2, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "sw-2: lr = 0.01, wd = 0; bits_per_byte 0." in md
    assert "Margin over the runner-up sw-3 (0.5): 0.5, 100.00%." in md
    assert "Baseline run (the workspace's params.yaml): 1.2; the best trial is 1.2 better" in md
    assert "\ndvc exp apply sw-2\n" in md and "- train-toy-stable.optimizer.lr = 0.01" in md
    assert "| lr | 1 | " in md and "0.001: 1.25 (n=2); 0.01: 0.25 (n=2)" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "sw-" in line]
    assert [row.split(" | ")[1] for row in rows] == ["sw-2", "sw-3", "sw-0", "sw-1", "sw-4"]
    assert "failed: diverged" in rows[-1]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["best"]["name"] == "sw-2" and data["best"]["margin_relative"] == 1.0
    assert data["baseline"] == {"value": 1.2, "point": {"lr": 0.003, "wd": 0.1}}
    assert data["sensitivity"]["lr"]["main_effect"] == 1.0
    assert data["sensitivity"]["lr"]["importance"] > data["sensitivity"]["wd"]["importance"]
    assert [t["status"] for t in data["trials"]].count("failed") == 1


def test_figures_of_dropped_parameters_are_removed_and_nothing_completed_still_renders(tmp_path):
    (tmp_path / "old.png").write_bytes(PNG_MAGIC)
    failed = [TrialResult("sw-0", 0, {"lr": 0.1, "wd": 0.0}, "failed", error="boom")]
    analysis = write_report(make_plan(), failed, None, tmp_path)
    assert analysis.best is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.png", "report.md", "results.json",
                                                          "wd.png"]
    assert "No trial completed" in (tmp_path / "report.md").read_text()


def test_categorical_and_log_range_parameters_plot(tmp_path):
    sweep = make_sweep(strategy="random", trials=4, parameters={
        "lr": {"keys": ["train-toy-*.optimizer.lr"], "low": 1e-4, "high": 1e-1, "log": True},
        "wd": {"keys": ["train-toy-*.optimizer.weight_decay"], "values": ["none", "some"]}})
    results = [TrialResult(f"sw-{i}", i, {"lr": 10 ** (-4 + i), "wd": ["none", "some"][i % 2]},
                           "completed", float(i)) for i in range(4)]
    write_report(make_plan(sweep), results, None, tmp_path)
    assert (tmp_path / "lr.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "wd.png").read_bytes().startswith(PNG_MAGIC)


def test_each_trial_has_the_command_that_reruns_it_in_a_fresh_clone(tmp_path):
    """Issue 22: DVC's experiment refs are not cloned, so `dvc exp apply <trial>` fails in a
    clone; the report records each trial's `dvc exp run -S ...` instead. DVC's own override
    parser applied to the baseline params file gives exactly the trial's values, for the
    root params file and for an example's (`<file>:<key>`)."""
    import copy
    import shlex

    import yaml
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides

    from tests.sweep.toy import TOY_PARAMS

    for params_file in ("params.yaml", "examples/toy/params.yaml"):
        plan = make_plan()
        if params_file != "params.yaml":
            plan = type(plan)(**{**plan.__dict__, "target": "examples/toy/dvc.yaml:evaluate-toy",
                                 "params_files": {"train-toy-stable": params_file}})
        out = tmp_path / params_file.replace("/", "_")
        write_report(plan, _results(), 1.2, out)
        trials = json.loads((out / "results.json").read_text())["trials"]
        md = (out / "report.md").read_text()
        assert md.index("## Reproduce a trial from a fresh clone") < md.index(trials[0]["command"])
        for trial in trials:
            assert f"\n{trial['command']}\n" in md
            words = shlex.split(trial["command"])
            assert words[:5] == ["dvc", "exp", "run", "--name", trial["name"]]
            assert words[-1] == plan.target and "--queue" not in words
            sets = [words[i + 1] for i, w in enumerate(words) if w == "-S"]
            (ws := tmp_path / "clone" / trial["name"] / params_file).parent.mkdir(parents=True)
            ws.write_text(yaml.safe_dump(copy.deepcopy(TOY_PARAMS)))
            for path, overrides in to_path_overrides(sets).items():
                assert path == params_file
                apply_overrides(ws.parent / Path(path).name, overrides)
            applied = yaml.safe_load(ws.read_text())["train-toy-stable"]["optimizer"]
            assert (applied["lr"], applied["weight_decay"]) == (trial["point"]["lr"], trial["point"]["wd"])
            assert type(applied["weight_decay"]) is type(trial["point"]["wd"])  # 0.0 stays a float
