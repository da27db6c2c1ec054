"""What DVC's own commands show of the compiled default pipeline (issue 22, "metrics people
can read"): `dvc metrics show` lists scores, not machine records, with one small headline
file per report experiment; `dvc plots show` draws a handful of plots titled in words, the
feature-learning monitor one metric per plot and one line per layer; the README's
`dvc exp show` invocation keeps a terminal's worth of columns.

The workspace is the compiled dvc.yaml with the committed metrics and plot files; the
headline files (outputs of the report stage) are made from the committed reports'
summary.json by the function the stage uses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from repro import paths
from repro.compile.render import BY_LAYER_TEMPLATE, render_dvc_yaml
from repro.compile.specs import compile_files
from repro.report.compare import Column
from repro.report.tables import headline_records
from repro.stages.train import LIVE_PLOTS, MONITOR_METRICS
from tests.conftest import tool_env

REPO = Path(__file__).resolve().parents[2]
EXP_SHOW_KEEP = "Experiment|Created|metrics/reports/quickstart/.*:(final_train_loss|aggregate)$"
"""The README's `dvc exp show --drop '.*' --keep ...` pattern (kept in step by the test)."""

pytestmark = pytest.mark.slow  # several dvc commands over a 1,800-line dvc.yaml: ~15 s


def _dvc(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["dvc", *args], cwd=cwd, env=tool_env(), text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _headline_file(report: str, experiment: str) -> dict:
    """The report stage's headline record of `experiment`, from the committed summary.json."""
    summary = json.loads((REPO / paths.report_dir(report) / "summary.json").read_text())
    columns = [Column(m["task"], m["metric"]) for m in summary["metrics"] if m["task"]
               and m["task"] != "aggregate"]
    table = SimpleNamespace(to_dicts=lambda: summary["rows"])
    return headline_records(table, SimpleNamespace(columns=columns))[experiment]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict]:
    graph = compile_files(sorted((REPO / "specs").glob("*.yaml")), REPO / "specs", REPO)
    root = tmp_path_factory.mktemp("views")
    text = render_dvc_yaml(graph)
    (root / "dvc.yaml").write_text(text)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    template = paths.PLOT_TEMPLATES_DIR / f"{BY_LAYER_TEMPLATE}.json"
    dvc = yaml.safe_load(text)
    files = {next(iter(m)) if isinstance(m, dict) else m
             for s in dvc["stages"].values() for m in s.get("metrics", []) + s.get("outs", [])}
    files |= {f for p in dvc["plots"] for d in p.values() for f in d["y"]}
    for rel in sorted(files):
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / rel)
    for s in graph.stages.values():
        if s.kind == "report":
            for e in s.config.experiments:
                out = root / paths.report_headline(s.config.name, e)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(_headline_file(s.config.name, e)))
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(args, cwd=root, check=True, env=tool_env())
    (root / template).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / template, root / template)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   cwd=root, check=True)
    return root, dvc


def _columns(data: dict) -> set[str]:
    def flat(prefix: str, node) -> set[str]:
        if isinstance(node, dict):
            return set().union(*(flat(f"{prefix}.{k}" if prefix else k, v)
                                 for k, v in node.items()))
        return {prefix}
    return set().union(*(flat("", f.get("data", {})) for f in data.values()))


def _title(content: dict) -> str:
    """A Vega-Lite title: a string (our template) or {"text": ...} (DVC's own)."""
    title = content["title"]
    return title["text"] if isinstance(title, dict) else title


def test_metrics_show_lists_scores_not_machine_records(workspace):
    root, dvc = workspace
    shown = json.loads(_dvc(["metrics", "show", "--json"], root))
    [files] = [rev["data"] for rev in shown.values()]
    # the live summaries (the train stages' progress, `live/`) are the only files under a
    # machine-record path: they hold loss, LR and grad norm, not the measured tokens/s
    assert files and not [f for f in files if (paths.is_machine_record(f) and not f.startswith("live/"))
                          or f.endswith(".ledger.json")]
    declared = {next(iter(m)) for s in dvc["stages"].values() for m in s.get("metrics", [])}
    assert set(files) == declared
    # one headline file per experiment of the report: a table of two rows and a dozen columns
    shown = json.loads(_dvc(["metrics", "show", "--json", "metrics/reports"], root))
    [files] = [rev["data"] for rev in shown.values()]
    assert sorted(files) == ["metrics/reports/quickstart/qs-muon.json",
                             "metrics/reports/quickstart/qs-nope.json"]
    columns = _columns(files)
    assert {"tokens", "replicas", "final_train_loss", "aggregate", "aggregate_stderr",
            "repro_cloze_web.acc_norm", "repro_bpb_web.bits_per_byte_stderr"} <= columns
    assert len(columns) <= 16, sorted(columns)


def test_plots_show_draws_titled_plots_the_monitor_per_metric_and_layer(workspace):
    root, dvc = workspace
    shown = json.loads(_dvc(["plots", "show", "--json"], root))
    assert not shown.get("errors"), shown["errors"]
    ids = [k for p in dvc["plots"] for k in p]
    assert sorted(shown["data"]) == sorted(ids)  # no stage-level plot named by its path
    experiments = ("qs-nope", "qs-muon")
    # per experiment: the loss, each monitor metric, the live curves; + 5 score curves
    assert len(ids) == len(experiments) * (1 + len(MONITOR_METRICS) + len(LIVE_PLOTS)) + 5
    titles = {k: d["title"] for p in dvc["plots"] for k, d in p.items()}
    for plot_id, [plot] in shown["data"].items():
        content = plot["content"]
        assert _title(content) == titles[plot_id] and "/" not in titles[plot_id]
        assert content["data"]["values"], plot_id
    for exp in experiments:
        assert _title(shown["data"][f"{exp}: training loss"][0]["content"]) == \
            f"{exp}: training loss vs tokens"
        for metric in MONITOR_METRICS:
            [plot] = shown["data"][f"{exp}: {metric} per layer"]
            content = plot["content"]
            assert _title(content) == f"{exp}: {metric.replace('_', ' ')} per layer vs tokens"
            assert content["transform"] == [{"filter": f"datum.metric == '{metric}'"}]
            assert content["encoding"]["color"]["field"] == "layer"
            assert content["encoding"]["y"]["title"] == metric
            rows = [r for r in content["data"]["values"] if r["metric"] == metric]
            layers = {r["layer"] for r in rows}
            assert rows and {"0", "1"} <= layers, (metric, layers)


def test_readme_exp_show_invocation_keeps_a_terminals_worth_of_columns(workspace):
    root, _ = workspace
    readme = (REPO / "README.md").read_text()
    assert f"dvc exp show --only-changed --drop '.*' --keep '{EXP_SHOW_KEEP}'" in readme
    everything = _dvc(["exp", "show", "--csv"], root).splitlines()[0].split(",")
    shown = _dvc(["exp", "show", "--csv", "--only-changed", "--drop", ".*", "--keep",
                  EXP_SHOW_KEEP], root).splitlines()[0].split(",")
    assert len(everything) > 1000  # every param and metric: unreadable
    # two headline numbers per experiment of the report (DVC prefixes a key several files
    # share with its file), even where no row differs (--keep protects them)
    assert shown == ["Experiment", "Created"] + [
        f"metrics/reports/quickstart/{e}.json:{k}"
        for e in ("qs-nope", "qs-muon") for k in ("final_train_loss", "aggregate")]
    assert all(re.match(EXP_SHOW_KEEP, c) for c in shown)
