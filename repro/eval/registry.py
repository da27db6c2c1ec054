"""Which lm-eval task, group and tag names exist: spec validation refuses any other name in
`evaluation.tasks`, so a typo (`hellaswagg`) is caught before anything runs instead of
when the evaluate stage loads its tasks, hours into a pipeline.

Indexing lm-eval's registry (`TaskManager().all_tasks`, ~15k task YAMLs) takes ~8 s, far
too slow for `repro validate`. The names are therefore read from repro/eval/lm_eval_index.py,
generated from the installed lm-eval and committed, keyed by the lm-eval version it was
generated from. That is preferred to a cache written on first use (e.g. under
~/.cache/repro) because validation then
- is fast the first time too, on every machine, including a fresh clone on a login node;
- writes nothing and depends on no hidden state that could be stale or half-written;
- gives the same answer everywhere: the list is reviewed in git like code, and
  tests/eval/test_registry.py regenerates it from the installed lm-eval and compares, so an
  lm-eval upgrade (pyproject pins `lm-eval==0.4.13`) without regenerating fails the tests.
An installed lm-eval of another version is indexed live instead (correct, ~8 s, once per
process), since its registry may differ from the committed one.

Lookup order keeps validation cheap: the tasks of presets and the names of local tasks
are accepted without loading the index, and lm-eval itself is imported only for a version
mismatch. Regenerate with `python -m repro.eval.registry`.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

from repro.eval.presets import PRESETS
from repro.spec.base import FieldError

log = logging.getLogger(__name__)

INDEX_FILE = Path(__file__).with_name("lm_eval_index.py")

# LocalTaskSpec.task_name: `repro_<kind>_<dataset>`, `-` in the dataset name written `_`.
LOCAL_TASK_NAME = re.compile(r"repro_(?:bpb|cloze|code_cloze)_[a-z0-9][a-z0-9_]*")
LOCAL_KIND = re.compile(r"repro_(?P<kind>code_cloze|cloze|bpb)_(?P<dataset>.+)")

_PRESET_TASKS = frozenset(t for p in PRESETS.values() for t in p.tasks)


def installed_lm_eval_version() -> str | None:
    """The installed lm-eval's version (from its metadata: lm-eval is not imported)."""
    try:
        return importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def index_live() -> list[str]:
    """Every task, group and tag name of the installed lm-eval, sorted (~8 s)."""
    from lm_eval.tasks import TaskManager

    return sorted(TaskManager().all_tasks)


@functools.cache
def registered_names() -> frozenset[str]:
    """The task, group and tag names the evaluate stage can load (lm-eval's built-in
    registry: local tasks are added separately, see `is_known_task`)."""
    from repro.eval import lm_eval_index  # validating a preset or local name never loads the index

    installed = installed_lm_eval_version()
    # Not installed: this machine only validates/compiles; the pipeline runs with the pinned
    # lm-eval, whose names are the committed ones.
    if installed is None or installed == lm_eval_index.LM_EVAL_VERSION:
        return frozenset(lm_eval_index.NAMES.split())
    log.warning("lm-eval %s is installed but repro's task index is of lm-eval %s: indexing "
                "the installed lm-eval's tasks (~8 s); regenerate the index with "
                "`python -m repro.eval.registry`", installed, lm_eval_index.LM_EVAL_VERSION)
    return frozenset(index_live())


def is_local_task_name(name: str) -> bool:
    """Whether `name` has the form of a task built from the user's data
    (evaluation.local_tasks); that such a task is declared is checked by the spec."""
    return LOCAL_TASK_NAME.fullmatch(name) is not None


def is_known_task(name: str) -> bool:
    """A preset's task, a local task's name, or a name in lm-eval's registry (the index is
    read only for names of the last kind)."""
    return name in _PRESET_TASKS or is_local_task_name(name) or name in registered_names()


def check_local_tasks_declared(tasks: list[str], local_task_names: list[str]) -> None:
    """A local task's name in `evaluation.tasks` must be one `evaluation.local_tasks`
    declares: only those are built and registered for the evaluate stage."""
    for name in tasks:
        if is_local_task_name(name) and name not in local_task_names:
            m = LOCAL_KIND.fullmatch(name)
            assert m is not None  # is_local_task_name
            raise FieldError(
                f"evaluation.tasks names local task {name!r}, which evaluation.local_tasks "
                f"does not declare (declared: {sorted(local_task_names)})",
                f"add {{kind: {m['kind']}, dataset: {m['dataset']}}} to evaluation.local_tasks "
                "(a declared local task is evaluated without being listed in tasks), or "
                "remove it from evaluation.tasks", at=("tasks",))


def closest_names(name: str, n: int = 3) -> list[str]:
    """Registered names most like `name` (case-insensitive), best first."""
    by_lower: dict[str, str] = {}
    for known in sorted(registered_names() | _PRESET_TASKS):
        by_lower.setdefault(known.lower(), known)
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), by_lower, n=n,
                                                           cutoff=0.6)]


def check_registered_task(name: str) -> str:
    """A validator for `evaluation.tasks` (after repro.spec.safety.check_task_name): the
    name must be one the evaluate stage can load, else the closest names are suggested."""
    if is_known_task(name):
        return name
    close = closest_names(name)
    hint = (f"did you mean {' or '.join(repr(c) for c in close)}? Otherwise use"
            if close else "use")
    version = installed_lm_eval_version() or _index_version()
    raise FieldError(
        f"evaluation task {name!r} is not a task, group or tag of lm-eval {version}",
        f"{hint} a registered lm-eval name (`lm_eval ls tasks` lists them), a preset "
        "(evaluation.presets), or a task built from your data (evaluation.local_tasks)")


def _index_version() -> str:
    from repro.eval import lm_eval_index  # validating a preset or local name never loads the index

    return lm_eval_index.LM_EVAL_VERSION


# ------------------------------------------------------------------------- generation


def render_index(version: str, names: list[str]) -> str:
    """The text of lm_eval_index.py: one name a line, so an lm-eval upgrade diffs readably.
    A string, not a set literal: it compiles and loads faster."""
    body = "".join(f"{n}\n" for n in names)
    return (
        '"""Task, group and tag names of lm-eval\'s registry (`TaskManager().all_tasks`).\n\n'
        "Generated by `python -m repro.eval.registry` from the installed lm-eval; do not edit.\n"
        "tests/eval/test_registry.py regenerates it and compares.\n"
        '"""\n\n'
        f"LM_EVAL_VERSION = {version!r}\n\n"
        f'NAMES = """\n{body}"""\n')


def write_index(path: Path = INDEX_FILE) -> None:
    """Regenerate the index from the installed lm-eval, atomically (a reader never sees a
    half-written module)."""
    version = installed_lm_eval_version()
    if version is None:
        raise SystemExit("lm-eval is not installed: install the pinned version first")
    names = index_live()
    if any(not n or n != n.strip() or any(c.isspace() or c in '"\\' for c in n) for n in names):
        raise SystemExit("an lm-eval task name holds whitespace, a quote or a backslash; "
                         "the index format (names split on whitespace) cannot hold it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_index(version, names))
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a committed source file private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"wrote {path}: {len(names)} names of lm-eval {version}", file=sys.stderr)


if __name__ == "__main__":
    write_index()
