"""`repro publish --model / --dataset`: a checkpoint or a curated dataset, as a stage wrote it,
to a Hugging Face model or dataset repository.

What is uploaded is the stage's output folder, file for file (a train stage's `checkpoint`
output is a complete Hugging Face model folder with its model card, repro.train.checkpoint;
a curate stage's `docs` output is the dataset as curated). One thing is added on the way, in
the uploaded README.md only, never in the workspace (the stage's bytes stay what DVC
recorded): a "Publication" section with the git revision of the workspace, the stage and, for
a model, the final scores the committed reports hold for that checkpoint. `--license` sets
the card's license (a spec does not choose one). Everything goes in one hub commit
(create_commit), so a repository never shows half a model.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from repro import paths
from repro.model.card import CARD_FILE, join as join_card, split as split_card
from repro.report.publish import HUB_REPO, STDERR, PublishError, find_reports, fmt_number

Kind = Literal["model", "dataset"]

OUTPUT_KEY: dict[Kind, tuple[str, ...]] = {"model": ("checkpoint",), "dataset": ("docs",)}
"""The stage outputs `--model` and `--dataset` publish: a train stage's export, a curate
(or decontaminate) stage's documents."""
NOT_AN_EXPORT = ("optimizer.pt",)
"""Files that mark a folder holding training state, which is not a model to share (a
checkpoint from before exports and state were separate): refused."""


@dataclass(frozen=True)
class Folder:
    path: Path
    stage: str | None
    """The stage whose output it is (None: a folder named by path)."""


def stage_outputs(root: Path = Path(".")) -> dict[str, dict[str, str]]:
    """Stage name -> {output key: path} of every pipeline (dvc.yaml and each example's),
    read from the `--out KEY=PATH` arguments `repro compile` writes into each command."""
    found: dict[str, dict[str, str]] = {}
    files = [root / paths.DVC_YAML, *sorted((root / paths.EXAMPLES_DIR).glob(f"*/{paths.DVC_YAML}"))]
    for f in files:
        if not f.is_file():
            continue
        stages = (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("stages") or {}
        for name, stage in stages.items():
            words = shlex.split(str((stage or {}).get("cmd", "")))
            outs = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--out"]
            found[name] = dict(o.split("=", 1) for o in outs if "=" in o)
    return found


def resolve(what: str, kind: Kind, root: Path = Path(".")) -> Folder:
    """A folder given by path, or the output of the stage named `what` in a dvc.yaml."""
    path = Path(what)
    if path.is_dir():
        return Folder(path, None)
    outputs = stage_outputs(root)
    keys = OUTPUT_KEY[kind]
    if what in outputs:
        out = next((outputs[what][k] for k in keys if k in outputs[what]), None)
        if out is None:
            raise PublishError(f"stage {what} has no {' or '.join(keys)} output: --{kind} takes "
                               f"a {'train' if kind == 'model' else 'curate'} stage",
                               fix=f"name one of: {', '.join(_candidates(outputs, keys)) or '(none)'}")
        if not (root / out).is_dir():
            raise PublishError(f"{out}, the {keys[0]} output of stage {what}, is not built here",
                               fix=f"run `dvc repro {what}` (or `dvc pull`), then publish again")
        return Folder(root / out, what)
    raise PublishError(f"--{kind} {what!r} is neither a folder nor a stage of the pipelines",
                       fix=f"name a folder or one of: {', '.join(_candidates(outputs, keys)) or '(none)'}")


def _candidates(outputs: dict[str, dict[str, str]], keys: tuple[str, ...]) -> list[str]:
    return sorted(n for n, outs in outputs.items() if any(k in outs for k in keys))


def git_revision(root: Path = Path(".")) -> str:
    """`<commit>` of the workspace, `<commit> with uncommitted changes` when git sees any
    (outputs DVC tracks are in .gitignore, so a built pipeline is clean), or why unknown."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} with uncommitted changes" if dirty else head


def _trainer_progress(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def score_lines(folder: Path, reports_dir: Path) -> list[str]:
    """The final scores the committed reports hold for this checkpoint: the report rows of
    its experiment whose final step is the checkpoint's (another checkpoint's scores would be
    misattributed), one line per task metric with its standard error."""
    progress = _trainer_progress(folder)
    experiment, step = progress.get("experiment"), progress.get("global_step")
    if not isinstance(experiment, str):
        return [f"No scores: {folder}/trainer_state.json names no experiment."]
    try:
        sources = find_reports(reports_dir)
    except PublishError:
        return [f"No scores: no reports under {reports_dir}."]
    lines = []
    for src in sources:
        row = src.row(experiment)
        if row is None:
            continue
        if row.get("step_end") != step:
            lines.append(f"Report `{src.title}` scores step {row.get('step_end')} of "
                         f"{experiment}, not this checkpoint (step {step}).")
            continue
        lines.append(f"Report `{src.title}` (`{src.folder}/summary.json`):")
        lines.append("")
        lines.append("| task | metric | value | stderr |")
        lines.append("| :--- | :--- | ---: | ---: |")
        for m in src.get("metrics", list) or []:
            if not isinstance(m, dict) or not isinstance(m.get("column"), str):
                continue
            col = m["column"]
            task = m.get("task") or ("(training)" if col == "final_train_loss" else "—")
            lines.append(f"| {task} | {m.get('metric', col)} | {fmt_number(row.get(col))} | "
                         f"{fmt_number(row.get(col + STDERR))} |")
        lines.append("")
    return lines or [f"No report under {reports_dir} scores experiment {experiment}."]


def publication_card(card: str, *, revision: str, stage: str | None, scores: list[str],
                     license: str | None) -> str:
    """The card with `license` set (when given) and a Publication section appended. A card
    without YAML front matter (a dataset's may have none) keeps none unless a license is set."""
    try:
        meta, body = split_card(card)
    except ValueError:
        meta, body = {}, card
    if license:
        meta = {**meta, "license": license}
    section = ["", "## Publication", "",
               f"- git revision of the workspace: {revision}",
               f"- stage: `{stage}`" if stage else "- uploaded from a folder (no stage named)"]
    if scores:
        section += ["", "### Final scores", "", *scores]
    text = body.rstrip("\n") + "\n" + "\n".join(section).rstrip("\n") + "\n"
    return join_card(meta, text) if meta else text


def push_folder(folder: Folder, repo_id: str, kind: Kind, *, reports_dir: Path = paths.REPORTS_DIR,
                license: str | None = None, root: Path = Path("."), api: Any = None) -> str:
    """Upload `folder` to the hub repository `repo_id` of type `kind` (created if missing)
    in one commit; returns its URL. `api` replaces HfApi in tests."""
    if not HUB_REPO.match(repo_id):
        raise PublishError(f"--hub-repo {repo_id!r} is not of the form ORG/NAME")
    files = sorted(p for p in folder.path.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in
                                              p.relative_to(folder.path).parts))
    names = {p.relative_to(folder.path).as_posix() for p in files}
    if kind == "model":
        held = sorted(names & set(NOT_AN_EXPORT))
        if held:
            raise PublishError(f"{folder.path} holds training state ({', '.join(held)}), so it is "
                               "not an export to share",
                               fix="publish a train stage's `checkpoint` output (rebuilt by "
                                   "`dvc repro` since exports and state are separate)")
        if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
            raise PublishError(f"{folder.path} is not a model folder (no config.json and "
                               "safetensors weights)", fix="name a train stage or its checkpoint folder")
    card = None
    if CARD_FILE in names:
        card = publication_card(
            (folder.path / CARD_FILE).read_text(encoding="utf-8"), revision=git_revision(root),
            stage=folder.stage, license=license,
            scores=score_lines(folder.path, reports_dir) if kind == "model" else [])
    elif license:
        raise PublishError(f"--license needs a card to set it in; {folder.path} has no {CARD_FILE}")
    if api is None:
        from huggingface_hub import HfApi, get_token  # network client: this verb only

        token = get_token()
        if token is None:
            raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, "
                               "then publish again")
        api = HfApi(token=token)
    from huggingface_hub import CommitOperationAdd  # network client: this verb only

    operations = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=(
        card.encode("utf-8") if n == CARD_FILE and card is not None else str(folder.path / n)))
        for n in sorted(names)]
    what = f"stage {folder.stage}" if folder.stage else str(folder.path)
    try:
        api.create_repo(repo_id, repo_type=kind, exist_ok=True)
        api.create_commit(repo_id=repo_id, repo_type=kind, operations=operations,
                          commit_message=f"repro publish --{kind} {what}")
    except Exception as e:  # network, auth and hub errors alike: the user fixes and reruns
        raise PublishError(f"pushing {folder.path} to the {kind} repository {repo_id} failed: "
                           f"{e}. Check the token's write access and that HF_HUB_OFFLINE is "
                           "not set.") from e
    prefix = "datasets/" if kind == "dataset" else ""
    return f"https://huggingface.co/{prefix}{repo_id}"
