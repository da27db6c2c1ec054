"""`repro publish`: every committed report and every experiment in them, as a static site.

Layout of the site (relative links only, so it works from file:// and under any sub-path):

    index.html                      every report and every experiment, linked
    reports/<folder>/report.html    the report's own self-contained page, with links added
    reports/<folder>/<file>         the report's other files (summary.json, loss.png...)
    reports/sweeps/<name>/...       a sweep's report.md (`repro sweep`) as a page, its files
    reports/ladders/<name>/...      a scaling ladder's report.md (its fit stage), likewise
    experiments/<slug>.html         one experiment: stages, final scores, every checkpoint

Pages are rendered with repro.report.render (inline CSS, no scripts, no external
resources). The inputs are each comparison report's summary.json (plus report.html when
present), read through its stable top-level keys, every other report.md under the reports
folder (sweeps and ladders, rendered with markdown-it, raw HTML off, images inlined), and,
when a specs folder is given, each spec's `experiment.description`, shown on the pages of
its experiment and of the report, sweep or ladder it defines. What is missing is said on the
page, not guessed. The same inputs give a byte-identical site: nothing depends on time or
file-system order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping
from urllib.parse import quote

from repro import paths
from repro.errors import ReproError
from repro.report.render import (Block, Bullets, Heading, Link, Paragraph, Table, Text,
                                 html_page, to_html, to_html_body)
from repro.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from repro.spec.load import load_spec

INDEX = "index.html"
REPORT_PAGE = "report.html"
REPORTS = "reports"
EXPERIMENTS = "experiments"
# Written into every site; its presence is what allows a rebuild to replace the folder.
MARKER = ".repro-publish"
MARKER_TEXT = "Written by `repro publish`, which replaces this whole folder on every run.\n"
MISSING = "—"
STDERR = "_stderr"
# What a report page or experiment page cannot show without each summary.json key.
NEEDS = {
    "experiments": "its experiment list is taken from the other keys",
    "baseline": "its baseline is not named",
    "rows": "final scores, final stage and tokens are not shown",
    "metrics": "final scores are not shown (no metric list)",
    "stages": "training stages are not shown",
    "evaluations": "scores per checkpoint are not shown",
}
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_SAFE_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HUB_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PublishError(ReproError):
    """The site cannot be built or pushed; the message says why and what to do."""


# ---------------------------------------------------------------------------- inputs


@dataclass
class ReportSource:
    """One report folder and what its summary.json holds (absent keys stay absent)."""

    folder: Path
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.folder.name

    @property
    def title(self) -> str:
        name = self.summary.get("report")
        return name if isinstance(name, str) and name else self.slug

    def get(self, key: str, kind: type) -> Any:
        """summary[key] if it has the expected JSON type, else None (noted once on the report)."""
        value = self.summary.get(key)
        if isinstance(value, kind):
            return value
        problem = "has no" if value is None else "has a malformed"
        note = f"{self.folder / 'summary.json'} {problem} `{key}`: {NEEDS.get(key, 'ignored')}"
        if note not in self.notes:
            self.notes.append(note)
        return None

    def experiments(self) -> list[str]:
        """Experiment names in the report's display order, from whichever keys hold them."""
        listed = self.get("experiments", list)
        if listed is not None:
            return [e for e in listed if isinstance(e, str)]
        found: list[str] = []
        for row in self.get("rows", list) or []:
            if isinstance(row, dict) and isinstance(row.get("experiment"), str):
                found.append(row["experiment"])
        for key in ("stages", "evaluations"):
            found += sorted(self.get(key, dict) or {})
        return list(dict.fromkeys(found))

    def of(self, key: str, experiment: str, kind: type) -> Any:
        """summary[key][experiment] (`stages`, `evaluations`) if it has the expected type."""
        value = (self.get(key, dict) or {}).get(experiment)
        return value if isinstance(value, kind) else None

    def row(self, experiment: str) -> dict | None:
        rows = self.get("rows", list) or []
        return next((r for r in rows if isinstance(r, dict) and r.get("experiment") == experiment),
                    None)


def find_reports(reports_dir: Path, required: bool = True) -> list[ReportSource]:
    """Every `<reports_dir>/*/summary.json`, by folder name. Hidden folders are skipped: the
    report stage builds into a hidden sibling before renaming it into place. None found is
    a PublishError when `required`."""
    files = sorted(p for p in reports_dir.glob("*/summary.json")
                   if not p.parent.name.startswith(".") and p.is_file())
    if not files and required:
        raise PublishError(
            f"no reports found: looked for {reports_dir}/*/summary.json. Reports are written "
            "by the pipeline's report stages: run `dvc repro`, or pass --reports with the "
            "folder that holds them.")
    sources = []
    for path in files:
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PublishError(f"cannot read {path}: {e}. Rebuild it with `dvc repro`.") from e
        if not isinstance(summary, dict):
            raise PublishError(f"{path} is not a JSON object. Rebuild it with `dvc repro`.")
        sources.append(ReportSource(path.parent, summary))
    return sources


@dataclass(frozen=True)
class MarkdownReport:
    """A report written as report.md alone (a sweep's, a ladder's), at `parts` under the
    reports folder (`sweeps/qs-lr`)."""

    folder: Path
    parts: tuple[str, ...]
    title: str

    @property
    def key(self) -> str:
        return "/".join(self.parts)


def find_markdown_reports(reports_dir: Path) -> list[MarkdownReport]:
    """Every report.md under `reports_dir` in a folder without summary.json (those are
    comparison reports, found by find_reports), hidden folders skipped, by path."""
    found = []
    for md in sorted(reports_dir.rglob("report.md")):
        folder = md.parent
        parts = folder.relative_to(reports_dir).parts
        if not parts or any(p.startswith(".") for p in parts) or (folder / "summary.json").exists():
            continue
        text = md.read_text(encoding="utf-8")
        title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")),
                     "/".join(parts))
        found.append(MarkdownReport(folder, parts, title))
    return found


# ------------------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class Descriptions:
    """What the specs say they test (`experiment.description`): per experiment, and per
    report folder (relative to the reports folder: `quickstart`, `sweeps/qs-lr`,
    `ladders/qs`) the (experiment, description) of the spec that defines that report."""

    experiments: Mapping[str, str] = field(default_factory=dict)
    reports: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def spec_descriptions(specs_dir: Path) -> Descriptions:
    """The descriptions of the pipelines' specs: `<specs_dir>/*.yaml` and each example's
    `<specs_dir>/examples/<name>/*.yaml`. A spec that does not load is noted and skipped
    (publishing shows what was built; `repro validate` is where a spec is fixed)."""
    files = sorted(specs_dir.glob("*.yaml")) + sorted(
        specs_dir.glob(f"{paths.EXAMPLE_SPECS}/*/*.yaml"))
    experiments: dict[str, str] = {}
    reports: dict[str, tuple[str, str]] = {}
    notes = []
    sweeps = PurePosixPath(paths.SWEEP_REPORTS_DIR).relative_to(paths.REPORTS_DIR)
    ladders = PurePosixPath(paths.LADDER_REPORTS_DIR).relative_to(paths.REPORTS_DIR)
    for f in files:
        try:
            spec = load_spec(f)
        except ReproError as e:
            notes.append(f"{f} does not load ({str(e).splitlines()[0]}): its description is "
                         "not shown; `repro validate` says why")
            continue
        name, text = spec.experiment.name, spec.experiment.description
        experiments[name] = text
        # the first spec naming a report defines it (the root's before the examples'): one
        # that `extends` it inherits the block without defining another report
        if spec.report is not None:
            reports.setdefault(spec.report.name, (name, text))
        if spec.sweep is not None:
            reports.setdefault(str(sweeps / spec.sweep.name), (name, text))
        if spec.ladder is not None:
            reports.setdefault(str(ladders / spec.ladder.name), (name, text))
    return Descriptions(experiments, reports, tuple(notes))


def _description(descriptions: Descriptions, report_key: str) -> list[Block]:
    """`What it tests` of the spec defining a report, or a line saying none says."""
    owner = descriptions.reports.get(report_key)
    if owner is None:
        return []
    experiment, text = owner
    return [Paragraph(f"Defined by the spec of {experiment}: {text}" if text else
                      f"Defined by the spec of {experiment}, which has no description.")]


# -------------------------------------------------------------------------- site paths


def experiment_slug(name: str) -> str:
    """A file name for the experiment's page. Spec names are already safe; any other name
    gets its unsafe characters replaced and a hash, so two names never share a page."""
    if _SAFE_SLUG.match(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:48] + "-" + digest


def _href(*parts: str) -> str:
    return "/".join(quote(p, safe="") if p != ".." else p for p in parts)


def report_href(src: ReportSource, up: int) -> str:
    """Link to the report page from a page `up` folders below the site root."""
    return _href(*[".."] * up, REPORTS, src.slug, REPORT_PAGE)


def experiment_href(name: str, up: int) -> str:
    return _href(*[".."] * up, EXPERIMENTS, experiment_slug(name) + ".html")


# ------------------------------------------------------------------------------ values


def fmt_number(value: Any) -> str:
    """Scores keep six significant digits (summary.json has them all); counts are exact."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _links(items: list[tuple[str, str]]) -> Text:
    """`href, text` pairs as one comma-separated run of links."""
    out: list[str | Link] = []
    for i, (href, text) in enumerate(items):
        out += ([", "] if i else []) + [Link(href, text)]
    return tuple(out) if out else MISSING


# ---------------------------------------------------------------------------- experiments


@dataclass
class Experiment:
    """An experiment as the published reports show it. Numbers come from the first report
    (by folder name) that lists it; `disagree` names reports whose numbers differ."""

    name: str
    reports: list[ReportSource]
    disagree: list[str] = field(default_factory=list)

    @property
    def source(self) -> ReportSource:
        return self.reports[0]


def collect_experiments(sources: list[ReportSource]) -> list[Experiment]:
    found: dict[str, Experiment] = {}
    for src in sources:
        for name in src.experiments():
            found.setdefault(name, Experiment(name, [])).reports.append(src)
    for exp in found.values():
        first = _measured(exp.source, exp.name)
        exp.disagree = [s.slug for s in exp.reports[1:] if _measured(s, exp.name) != first]
    return [found[n] for n in sorted(found)]


def _measured(src: ReportSource, name: str) -> tuple:
    """What a report measured of an experiment, independent of its baseline (deltas are not)."""
    return src.of("stages", name, list), src.of("evaluations", name, dict)


def _stages_blocks(exp: Experiment) -> list[Block]:
    stages = exp.source.of("stages", exp.name, list)
    if not stages:
        return [Paragraph(f"Not shown: {exp.source.folder / 'summary.json'} has no training "
                          "stages for this experiment.")]
    rows = tuple((str(s.get("stage", MISSING)), fmt_number(s.get("step_end")),
                  fmt_number(s.get("tokens")), fmt_number(s.get("tokens_total")),
                  fmt_number(s.get("final_loss")))
                 for s in stages if isinstance(s, dict))
    return [Table(("stage", "step end", "tokens", "tokens total", "final train loss"), rows,
                  ("left", "right", "right", "right", "right"))]


def _final_blocks(exp: Experiment) -> list[Block]:
    row, metrics = exp.source.row(exp.name), exp.source.get("metrics", list)
    where = exp.source.folder / "summary.json"
    if row is None or metrics is None:
        return [Paragraph(f"Not shown: {where} has no "
                          f"{'row' if row is None else 'metric list'} for this experiment.")]
    intro = Paragraph(f"At the end of stage {row.get('final_stage', MISSING)} (step "
                      f"{fmt_number(row.get('step_end'))}, {fmt_number(row.get('tokens'))} "
                      "tokens).")
    body = []
    for m in metrics:
        if not isinstance(m, dict) or not isinstance(m.get("column"), str):
            continue
        col = m["column"]
        task = m.get("task") or ("(training)" if col == "final_train_loss" else MISSING)
        body.append((task, str(m.get("metric", col)),
                     m.get("better") or MISSING, fmt_number(row.get(col)),
                     fmt_number(row.get(col + STDERR))))
    return [intro, Table(("task", "metric", "better", "value", "stderr"), tuple(body),
                         ("left", "left", "left", "right", "right"))]


def checkpoint_order(exp: Experiment) -> list[str]:
    """Evaluated checkpoints in training order: by tokens seen, ties (and checkpoints without a
    count) in the order of the training stages they end, then by name."""
    evals = exp.source.of("evaluations", exp.name, dict) or {}
    stages = exp.source.of("stages", exp.name, list) or []
    rank = {s.get("stage"): i for i, s in enumerate(stages) if isinstance(s, dict)}

    def key(ckpt: str) -> tuple:
        ev = evals[ckpt] if isinstance(evals[ckpt], dict) else {}
        seen = ev.get("tokens_seen")
        return (seen if isinstance(seen, int) else float("inf"), rank.get(ckpt, len(rank)), ckpt)

    return sorted(evals, key=key)


def checkpoint_rows(exp: Experiment) -> list[tuple[str, ...]]:
    """One row per checkpoint, task and metric (stderr and chance level beside the value)."""
    evals = exp.source.of("evaluations", exp.name, dict) or {}
    rows = []
    for ckpt in checkpoint_order(exp):
        ev = evals[ckpt] if isinstance(evals[ckpt], dict) else {}
        tasks, randoms = ev.get("tasks"), ev.get("random_baseline")
        randoms = randoms if isinstance(randoms, dict) else {}
        for task, metrics in sorted(tasks.items() if isinstance(tasks, dict) else []):
            if not isinstance(metrics, dict):
                continue
            for metric in sorted(m for m in metrics if not m.endswith(STDERR)):
                rows.append((ckpt, fmt_number(ev.get("tokens_seen")), task, metric,
                             fmt_number(metrics[metric]), fmt_number(metrics.get(metric + STDERR)),
                             fmt_number((randoms.get(task) or {}).get(metric))))
    return rows


def _checkpoint_blocks(exp: Experiment) -> list[Block]:
    rows = checkpoint_rows(exp)
    if not rows:
        return [Paragraph(f"Not shown: {exp.source.folder / 'summary.json'} has no evaluations "
                          "for this experiment.")]
    return [Table(("checkpoint", "tokens seen", "task", "metric", "value", "stderr",
                   "random baseline"), tuple(rows),
                  ("left", "right", "left", "left", "right", "right", "right"))]


def experiment_page(exp: Experiment, descriptions: Descriptions = Descriptions()) -> str:
    reports = []
    for src in exp.reports:
        role = " (baseline)" if src.summary.get("baseline") == exp.name else ""
        reports.append((Link(report_href(src, 1), src.title), role))
    source = Paragraph(f"Numbers from {exp.source.slug}/summary.json.")
    blocks: list[Block] = [
        Paragraph(Link(_href("..", INDEX), "← all reports and experiments")),
        Heading(1, f"Experiment: {exp.name}"),
        *([Paragraph(descriptions.experiments[exp.name])]
          if descriptions.experiments.get(exp.name) else []),
        Heading(2, "In reports"), Bullets(tuple(reports)), source,
    ]
    if exp.disagree:
        blocks.append(Paragraph(f"Reports {', '.join(exp.disagree)} hold different numbers for "
                                "this experiment: one of them is stale; `dvc repro` updates it."))
    blocks += [Heading(2, "Training stages"), *_stages_blocks(exp),
               Heading(2, "Final scores"), *_final_blocks(exp),
               Heading(2, "Scores at every evaluated checkpoint"), *_checkpoint_blocks(exp)]
    return to_html(blocks, f"Experiment: {exp.name}", {})


# ------------------------------------------------------------------------------ reports


def _report_nav(src: ReportSource, descriptions: Descriptions = Descriptions()) -> list[Block]:
    exps = [(experiment_href(e, 2), e) for e in src.experiments()]
    blocks: list[Block] = [Paragraph((Link(_href("..", "..", INDEX), "← all reports and experiments"),
                                      " · experiments: ", _links(exps)))]
    blocks += _description(descriptions, src.slug)
    described = [(Link(experiment_href(e, 2), e), f": {descriptions.experiments[e]}")
                 for e in src.experiments() if descriptions.experiments.get(e)]
    if described:
        blocks.append(Bullets(tuple(described)))
    return blocks


def _fallback_report_page(src: ReportSource, why: str,
                          descriptions: Descriptions = Descriptions()) -> str:
    """Built from summary.json alone, when the report's own page cannot be used."""
    head = ["experiment", "final stage", "tokens", "final train loss"]
    cols = [m["column"] for m in src.get("metrics", list) or []
            if isinstance(m, dict) and isinstance(m.get("column"), str)
            and m["column"] != "final_train_loss"]
    rows = []
    for name in src.experiments():
        row = src.row(name) or {}
        rows.append((Link(experiment_href(name, 2), name), str(row.get("final_stage", MISSING)),
                     fmt_number(row.get("tokens")), fmt_number(row.get("final_train_loss")),
                     *(fmt_number(row.get(c)) for c in cols)))
    blocks = [*_report_nav(src, descriptions), Heading(1, f"Report: {src.title}"),
              Paragraph(f"{why} This page shows summary.json's final scores only; `dvc repro` "
                        "writes the full report."),
              Table(tuple(head + cols), tuple(rows),
                    ("left",) + ("right",) * (len(head) + len(cols) - 1))]
    return to_html(blocks, f"Report: {src.title}", {})


def report_page(src: ReportSource, descriptions: Descriptions = Descriptions()) -> str:
    """The report's own report.html with a navigation line (and the specs' descriptions)
    added at the top of its body."""
    path = src.folder / REPORT_PAGE
    if not path.is_file():
        src.notes.append(f"{path} is missing: its page is built from summary.json only")
        return _fallback_report_page(src, f"{path} is missing.", descriptions)
    page = path.read_text(encoding="utf-8")
    body = _BODY_OPEN.search(page)
    if body is None:
        src.notes.append(f"{path} has no <body>: its page is built from summary.json only")
        return _fallback_report_page(src, f"{path} has no <body> to add links to.", descriptions)
    nav = to_html_body(_report_nav(src, descriptions), {})
    return page[:body.end()] + "\n" + nav + page[body.end():]


_IMG_SRC = re.compile(r'<img src="([^"]*)"')


def markdown_html(folder: Path) -> str:
    """`folder`/report.md as an HTML fragment: CommonMark with tables (markdown-it-py, the
    renderer rich already brings), raw HTML in the Markdown escaped, not passed through, and
    images that are PNG files of the folder inlined as data URIs (the page stands alone, as
    the comparison reports' pages do)."""
    from markdown_it import MarkdownIt  # third party; only publishing renders Markdown

    text = (folder / "report.md").read_text(encoding="utf-8")
    rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    names = {f.name for f in folder.iterdir() if f.is_file() and f.suffix == ".png"}

    def inline(m: re.Match) -> str:
        src = m.group(1)
        if src not in names:
            return m.group(0)
        data = base64.b64encode((folder / src).read_bytes()).decode("ascii")
        return f'<img src="data:image/png;base64,{data}"'

    return _IMG_SRC.sub(inline, rendered).rstrip("\n")


def markdown_report_page(rep: MarkdownReport, descriptions: Descriptions = Descriptions()) -> str:
    up = ["..", *[".."] * len(rep.parts)]
    nav = [Paragraph(Link(_href(*up, INDEX), "← all reports and experiments")),
           *_description(descriptions, rep.key)]
    return html_page(rep.title, to_html_body(nav, {}) + "\n" + markdown_html(rep.folder))


def _copy_report_files(src: ReportSource | MarkdownReport, dest: Path) -> list[str]:
    """The report's other files, so links inside report.html/report.md keep resolving."""
    copied = []
    for f in sorted(src.folder.iterdir()):
        hidden_or_page = f.name == REPORT_PAGE or f.name.startswith(".")
        if not hidden_or_page and f.is_file() and not f.is_symlink():
            shutil.copyfile(f, dest / f.name)
            copied.append(f.name)
    return copied


# -------------------------------------------------------------------------------- index


def _downloads(parts: tuple[str, ...], names: list[str]) -> Text:
    return _links([(_href(REPORTS, *parts, f), f) for f in names
                   if f.endswith((".json", ".csv", ".md"))])


def _owner_text(owner: tuple[str, str] | None) -> str:
    """`<experiment>: <description>` of the spec defining a report (whose description is its
    experiment's, so the experiment is named), or MISSING."""
    return f"{owner[0]}: {owner[1]}" if owner and owner[1] else MISSING


def index_page(sources: list[ReportSource], experiments: list[Experiment],
               files: dict[str, list[str]], markdown: list[MarkdownReport] = (),
               descriptions: Descriptions = Descriptions()) -> str:
    reports = []
    for src in sources:
        baseline = src.summary.get("baseline")
        owner = descriptions.reports.get(src.slug)
        reports.append((Link(report_href(src, 0), src.title),
                        Link(experiment_href(baseline, 0), baseline)
                        if isinstance(baseline, str) else MISSING,
                        str(len(src.experiments())), _downloads((src.slug,), files[src.slug]),
                        _owner_text(owner)))
    exps = []
    for exp in experiments:
        row = exp.source.row(exp.name) or {}
        exps.append((Link(experiment_href(exp.name, 0), exp.name),
                     str(row.get("final_stage", MISSING)), fmt_number(row.get("tokens")),
                     fmt_number(row.get("final_train_loss")),
                     _links([(report_href(s, 0), s.title) for s in exp.reports]),
                     descriptions.experiments.get(exp.name) or MISSING))
    blocks: list[Block] = [
        Heading(1, "Reports and experiments"),
        Heading(2, "Reports"),
        Table(("report", "baseline", "experiments", "files", "defined by"), tuple(reports),
              ("left", "left", "right", "left", "left")),
    ]
    if markdown:
        rows = []
        for rep in markdown:
            owner = descriptions.reports.get(rep.key)
            rows.append((Link(_href(REPORTS, *rep.parts, REPORT_PAGE), rep.title),
                         _downloads(rep.parts, files[rep.key]), _owner_text(owner)))
        blocks += [Heading(2, "Sweeps and scaling ladders"),
                   Table(("report", "files", "defined by"), tuple(rows),
                         ("left", "left", "left"))]
    blocks += [
        Heading(2, "Experiments"),
        Table(("experiment", "final stage", "tokens", "final train loss", "reports",
               "description"), tuple(exps), ("left", "left", "right", "right", "left", "left")),
    ]
    notes = [n for src in sources for n in src.notes] + list(descriptions.notes)
    if notes:
        blocks += [Heading(2, "Missing from the reports"), Bullets(tuple(notes))]
    return to_html(blocks, "Reports and experiments", {})


# --------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class Site:
    path: Path
    reports: int
    experiments: int
    notes: tuple[str, ...]


def _check_replaceable(site_dir: Path, reports_dir: Path) -> None:
    """Publishing replaces the whole folder, so only a new or empty one, or a site an earlier
    `repro publish` wrote (it holds MARKER), may go; never a link (its target would go), the
    workspace or a folder holding it, or one holding the reports being published."""
    fix = "choose a new or empty folder, e.g. site/"
    if site_dir.is_symlink():
        raise PublishError(f"{site_dir} is a symbolic link; `repro publish` replaces the whole "
                           "folder, so it does not follow links (nothing was removed)", fix=fix)
    here, target = Path.cwd().resolve(), site_dir.resolve()
    if target == here or target in here.parents or target == reports_dir.resolve() \
            or target in reports_dir.resolve().parents:
        raise PublishError(f"{site_dir} holds the workspace or the reports being published; "
                           "`repro publish` replaces the whole folder (nothing was removed)",
                           fix=fix)
    if site_dir.exists() and (not site_dir.is_dir() or (any(site_dir.iterdir())
                                                        and not (site_dir / MARKER).is_file())):
        raise PublishError(f"{site_dir} exists and was not written by `repro publish`, which "
                           "replaces the whole folder (nothing was removed)", fix=fix)


def build_site(reports_dir: Path, site_dir: Path, specs_dir: Path | None = None) -> Site:
    """Write the site into a temporary sibling of `site_dir`, then rename it into place.
    `specs_dir`: where the specs whose descriptions the pages show are (None: none shown)."""
    markdown = find_markdown_reports(reports_dir) if reports_dir.is_dir() else []
    sources = find_reports(reports_dir, required=not markdown)
    _check_replaceable(site_dir, reports_dir)
    experiments = collect_experiments(sources)
    descriptions = spec_descriptions(specs_dir) if specs_dir is not None else Descriptions()
    with atomic_dir(site_dir) as out:
        files: dict[str, list[str]] = {}
        for src in sources:
            dest = out / REPORTS / src.slug
            dest.mkdir(parents=True)
            files[src.slug] = _copy_report_files(src, dest)
            atomic_write_text(dest / REPORT_PAGE, report_page(src, descriptions))
        for rep in markdown:
            dest = out / REPORTS / Path(*rep.parts)
            dest.mkdir(parents=True)
            files[rep.key] = _copy_report_files(rep, dest)
            atomic_write_text(dest / REPORT_PAGE, markdown_report_page(rep, descriptions))
        (out / EXPERIMENTS).mkdir()
        for exp in experiments:
            atomic_write_text(out / EXPERIMENTS / f"{experiment_slug(exp.name)}.html",
                              experiment_page(exp, descriptions))
        atomic_write_text(out / INDEX, index_page(sources, experiments, files, markdown,
                                                  descriptions))
        atomic_write_bytes(out / MARKER, MARKER_TEXT.encode("utf-8"))
    return Site(site_dir, len(sources) + len(markdown), len(experiments),
                tuple(n for src in sources for n in src.notes) + descriptions.notes)


# ----------------------------------------------------------------------------------- hub


def push_to_hub(site_dir: Path, repo_id: str, api: Any = None) -> str:
    """Upload the site to a Hugging Face static Space (created if needed); returns its URL.
    The token is HF_TOKEN or the one `hf auth login` stored; `api` replaces HfApi in tests."""
    if not HUB_REPO.match(repo_id):
        raise PublishError(f"--hub-repo {repo_id!r} is not of the form ORG/NAME")
    if api is None:
        from huggingface_hub import HfApi, get_token

        token = get_token()
        if token is None:
            raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, "
                               f"then publish again (the site is already built in {site_dir}).")
        api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="static", exist_ok=True)
        api.upload_folder(folder_path=str(site_dir), repo_id=repo_id, repo_type="space",
                          commit_message="repro publish")
    except Exception as e:  # network, auth and hub errors alike: the user fixes and reruns
        raise PublishError(f"pushing {site_dir} to the Space {repo_id} failed: {e}. Check the "
                           "token's write access and that HF_HUB_OFFLINE is not set.") from e
    return f"https://huggingface.co/spaces/{repo_id}"
