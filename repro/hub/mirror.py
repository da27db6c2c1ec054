"""`repro mirror SPEC... DIR`: fetch every hub asset the specs need, on a connected machine,
into a folder an offline cluster then reads.

Stages always run offline (repro.stages.base.set_offline_env), so anything they take from the
hub must already be in a Hugging Face cache. The mirror IS such a cache: DIR is an `HF_HOME`
(`DIR/hub`: huggingface_hub's cache of repo files; `DIR/datasets`: the `datasets` cache,
which `load_dataset` reads offline), plus `DIR/repro-mirror.json`, the manifest of what was
fetched and for which spec. Using the libraries' own cache layout rather than a format of
ours means the offline side is the libraries' documented offline mode (`HF_HUB_OFFLINE=1`,
`HF_HOME`), with no code of ours between a stage and its data.

Offline, `REPRO_HUB_MIRROR=DIR` makes every stage read it (set_offline_env points HF_HOME,
HF_HUB_CACHE and HF_DATASETS_CACHE there); exporting `HF_HOME=DIR` does the same by hand.
The variable is execution-only: it says where the same bytes are read from, never what is
computed, so it is not part of any stage's identity.

Assets (from validated specs):
- evaluation tasks: every standard lm-eval task of `evaluation.tasks` and `evaluation.presets`.
  Each is fetched by loading it with lm-eval itself (TaskManager.load): the datasets cached
  are exactly the ones, configs and splits the evaluate stage then loads, groups (mmlu) with
  all their subtasks, and no task-to-dataset table of ours can drift from lm-eval's YAMLs;
- a hub tokenizer (`tokenizer.kind: pretrained` with a hub name): its tokenizer files;
- a hub distillation teacher (`training.distillation.teacher` naming a hub model): its
  config, weights (safetensors) and tokenizer files.
Not covered: `hf_dataset` sources, which the source stage streams (streaming reads the hub,
not a cache); point such a source at a local copy of the files instead.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from repro.errors import ReproError
from repro.jsonio import read_json, write_json

MIRROR_ENV = "REPRO_HUB_MIRROR"
"""Environment variable naming a mirror folder that stages read offline."""

MANIFEST = "repro-mirror.json"
FORMAT = 1

# What AutoTokenizer reads; no code files (a hub tokenizer's code is never run).
TOKENIZER_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken"]
# What AutoModelForCausalLM reads: safetensors only (pickled .bin weights are never loaded).
MODEL_FILES = TOKENIZER_FILES + ["*.safetensors"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


class MirrorError(ReproError):
    """An asset could not be fetched into the mirror, or a mirror cannot be used."""


@dataclass(frozen=True)
class Asset:
    """One thing to fetch from the hub."""

    kind: str
    """`eval_task` (an lm-eval task or group name), `tokenizer` or `teacher` (model repos)."""
    name: str
    revision: str | None
    used_by: tuple[str, ...]
    """The experiments that need it."""

    @property
    def label(self) -> str:
        what = {"eval_task": "lm-eval task", "tokenizer": "tokenizer", "teacher": "teacher model"}
        rev = f"@{self.revision}" if self.revision else ""
        return f"{what[self.kind]} {self.name}{rev}"


def is_hub_name(ref: str) -> bool:
    """Whether a model reference names a hub repo (`name` or `org/name`) rather than a local
    folder (`/...`, `./...`, `../...`, or anything that is not a repo id)."""
    return not ref.startswith(("/", ".", "~")) and "\\" not in ref and bool(_HUB_ID.match(ref)) \
        and not Path(ref).exists()


def hub_assets(specs: Iterable[Any]) -> list[Asset]:
    """The hub assets validated ExperimentSpecs need, each once (in first-use order), with
    the experiments needing it. Reads nothing but the specs, and whether a tokenizer or
    teacher name is a local folder (as the tokenizer stage decides)."""
    found: dict[tuple[str, str, str | None], list[str]] = {}

    def add(kind: str, name: str, revision: str | None, experiment: str) -> None:
        users = found.setdefault((kind, name, revision), [])
        if experiment not in users:
            users.append(experiment)

    for spec in specs:
        for task in spec.evaluation.standard_tasks:
            add("eval_task", task, None, spec.name)
        tok = spec.tokenizer
        if tok.kind == "pretrained" and is_hub_name(tok.name_or_path):
            add("tokenizer", tok.name_or_path, tok.revision, spec.name)
        distill = spec.training.distillation
        if distill is not None and not distill.teacher.startswith("experiment:") \
                and is_hub_name(distill.teacher):
            add("teacher", distill.teacher, None, spec.name)
    return [Asset(k, n, r, tuple(u)) for (k, n, r), u in found.items()]


# ----------------------------------------------------------------------- environment


def cache_env(folder: Path) -> dict[str, str]:
    """The Hugging Face cache variables that make the libraries use `folder` as HF_HOME."""
    folder = Path(folder).resolve()
    return {"HF_HOME": str(folder), "HF_HUB_CACHE": str(folder / "hub"),
            "HF_DATASETS_CACHE": str(folder / "datasets")}


def mirror_offline_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The cache variables of the mirror `REPRO_HUB_MIRROR` names ({} when unset), after
    checking it is one `repro mirror` wrote."""
    environ = os.environ if environ is None else environ
    folder = environ.get(MIRROR_ENV)
    if not folder:
        return {}
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        raise MirrorError(
            f"{MIRROR_ENV}={folder} is not a hub mirror (it holds no {MANIFEST})",
            fix=f"create it with `repro mirror SPEC {folder}` on a machine that reaches the "
                f"hub and copy it here, or unset {MIRROR_ENV}")
    return cache_env(Path(folder))


def read_manifest(folder: Path) -> dict[str, Any]:
    return read_json(Path(folder) / MANIFEST)


# --------------------------------------------------------------------------- fetching


def _hub_endpoint() -> str:
    from huggingface_hub import constants  # heavy: only `repro mirror` fetches

    return constants.ENDPOINT


def check_online_env(folder: Path) -> None:
    """Before any Hugging Face library is imported: the process must be allowed to reach
    the hub, and the libraries' caches must point into `folder` (they read the variables
    once, at import)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE"):
            raise MirrorError(f"{var} is set: `repro mirror` downloads from the hub",
                              fix=f"unset {var} (run `repro mirror` where the hub is "
                                  "reachable; the offline cluster then reads the mirror)")
    loaded = [m for m in ("huggingface_hub", "datasets", "transformers") if m in sys.modules]
    if loaded:  # a programming error, not the user's
        raise RuntimeError(f"{', '.join(loaded)} imported before the mirror's cache was set")
    os.environ.update(cache_env(folder))


def _classify(asset: Asset, error: BaseException) -> MirrorError:
    """The error of a failed fetch, saying which asset and what to do."""
    chain: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    names = {b.__name__ for x in chain for b in type(x).__mro__}
    text = " ".join(str(x) for x in chain)
    endpoint = _hub_endpoint()
    used = f" (needed by {', '.join(asset.used_by)})"
    if "GatedRepoError" in names:
        return MirrorError(f"{asset.label}{used}: a gated repo on {endpoint}",
                           fix="accept its terms on the hub page, then log in "
                               "(`hf auth login` or HF_TOKEN) and rerun `repro mirror`")
    if names & {"DatasetNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError",
                "EntryNotFoundError", "DataFilesNotFoundError"} or (
            asset.kind == "eval_task" and "not found" in text.lower()):
        return MirrorError(f"{asset.label}{used}: not found on {endpoint}: {_first_line(error)}",
                           fix="check the name (and revision) in the spec; a private repo "
                               "needs `hf auth login` or HF_TOKEN")
    if names & {"ConnectionError", "ConnectError", "TimeoutException", "OfflineModeIsEnabled",
                "LocalEntryNotFoundError"}:
        return MirrorError(f"{asset.label}{used}: cannot reach the hub at {endpoint}: "
                           f"{_first_line(error)}",
                           fix="run `repro mirror` on a machine with network access to the "
                               "hub (or set HF_ENDPOINT to a reachable hub mirror), then copy "
                               "the folder to the offline cluster")
    return MirrorError(f"{asset.label}{used}: {type(error).__name__}: {_first_line(error)}",
                       fix="see the message above; rerun `repro mirror` once it is fixed "
                           "(assets already fetched are kept)")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _fetch_tasks(assets: list[Asset], echo: Callable[[str], None],
                 position: Callable[[], str]) -> list[dict[str, Any]]:
    from lm_eval.tasks import TaskManager  # heavy: only `repro mirror` fetches

    echo("indexing lm-eval's tasks")
    manager = TaskManager()
    registered = set(manager.all_tasks)
    out = []
    for asset in assets:
        echo(f"{position()} {asset.label}")
        if asset.name not in registered:
            raise MirrorError(f"{asset.label} (needed by {', '.join(asset.used_by)}): lm-eval "
                              "has no task, group or tag of that name",
                              fix="check evaluation.tasks (`lm_eval ls tasks` lists them)")
        try:
            loaded = manager.load([asset.name])
        except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError...)
            raise _classify(asset, e) from e
        leaves = []
        for task_name, task in sorted(loaded["tasks"].items()):
            config = task.config
            leaves.append({"task": task_name, "dataset_path": config.dataset_path,
                           "dataset_name": config.dataset_name,
                           "splits": {s: len(task.dataset[s]) for s in sorted(task.dataset)}})
        datasets = sorted({(leaf["dataset_path"], leaf["dataset_name"] or "") for leaf in leaves})
        echo(f"    {len(leaves)} task(s) from {len(datasets)} dataset config(s): " + ", ".join(
            f"{p}{':' + n if n else ''}" for p, n in datasets[:4]) + (
            f" and {len(datasets) - 4} more" if len(datasets) > 4 else ""))
        out.append({"kind": asset.kind, "name": asset.name, "used_by": list(asset.used_by),
                    "tasks": leaves})
    return out


def _fetch_model(asset: Asset, echo: Callable[[str], None], position: str) -> dict[str, Any]:
    from huggingface_hub import snapshot_download  # heavy: only `repro mirror` fetches

    echo(f"{position} {asset.label}")
    patterns = TOKENIZER_FILES if asset.kind == "tokenizer" else MODEL_FILES
    try:
        path = Path(snapshot_download(asset.name, revision=asset.revision, repo_type="model",
                                      allow_patterns=patterns))
    except Exception as e:  # huggingface_hub's errors (RepositoryNotFoundError, ConnectError...)
        raise _classify(asset, e) from e
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    if not files:
        raise MirrorError(f"{asset.label}: the repo holds none of {patterns}",
                          fix="check that it is a transformers model/tokenizer repo")
    echo(f"    {len(files)} file(s) at commit {path.name}")
    return {"kind": asset.kind, "name": asset.name, "revision": asset.revision,
            "commit": path.name, "used_by": list(asset.used_by), "files": files}


def mirror(assets: list[Asset], folder: Path, echo: Callable[[str], None]) -> dict[str, Any]:
    """Fetch `assets` into `folder` (an HF_HOME; check_online_env must have run first) and
    write its manifest last, so a folder with a manifest holds everything it lists."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, len(assets) + 1))

    def position() -> str:
        return f"[{next(counter)}/{len(assets)}]"

    tasks = [a for a in assets if a.kind == "eval_task"]
    entries = _fetch_tasks(tasks, echo, position) if tasks else []
    entries += [_fetch_model(a, echo, position()) for a in assets if a.kind != "eval_task"]
    manifest = {"format": FORMAT, "endpoint": _hub_endpoint(), "assets": entries}
    write_json(folder / MANIFEST, manifest)
    return manifest
