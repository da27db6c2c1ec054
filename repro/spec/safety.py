"""What a spec may point at and run: the safety rules its validation applies.

A spec is data, and it may come from someone else (a shared ablation, a pull request). So
validation refuses what would let it reach outside the project, leak a secret or run code:

- **Local paths stay in the workspace.** A relative path may not climb out with `..`; an
  absolute one (also `file://...` or `~/...`) must lie under the workspace; and the real
  location of a path (symlinks followed) must be under it too. Remote URLs (`s3://`,
  `gs://`, `hf://`, `https://`... any `scheme://` except `file://`) are left to their
  filesystem and its credentials.
- **URLs carry no credentials.** A `user:password@` part or a secret query parameter
  (`?token=`, `X-Amz-Signature=`, `sig=`...) is refused: specs and params.yaml are
  committed and paths are logged. Credentials come from the environment (AWS_*, HF_TOKEN,
  GOOGLE_APPLICATION_CREDENTIALS...) or the filesystem's own credential files.
- **Names are not code.** Every kind, backend and task is a name looked up in an explicit
  registry (the schema's `Literal`s and discriminated unions, `repro.eval.presets`,
  `repro.data.pdf.OCR_BACKENDS`, `repro.stages.kind`); lm-eval task names may not
  be file paths (lm-eval would load such a YAML, whose `!function` tags import Python); a
  Slurm `env_command` is one of a few known shell forms, not free shell.

The workspace is the directory repro runs in: `repro validate`, `repro compile` and every
DVC stage (`dvc repro` runs each stage's command in the project root) run there, and
relative paths are resolved from it at run time. `ExperimentSpec` validation sets it (to
the validation context's `workspace`, else the current directory) for the checks of every
field below it, so a spec loaded from a file is checked in full. A model built on its own
in Python code (a test, a library caller), or a stage config read back from params.yaml,
gets the checks that need no workspace (`..`, credentials, names); the curate stage checks
its source's real location again before reading (`repro.data.source_check`).
"""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from repro.spec.base import FieldError
from repro.spec.redact import CREDENTIALS_FIX, redact_text, redact_url, secret_params

_WORKSPACE: ContextVar[Path | None] = ContextVar("repro_workspace", default=None)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")

LOCAL_FIX = ("keep local data inside the workspace (the project directory repro runs in, "
             "e.g. under data/external/) and give its path relative to it, or name a remote "
             "URL (s3://, gs://, hf://, https://...)")

# ---------------------------------------------------------------------------- workspace


@contextlib.contextmanager
def workspace(root: Path | str) -> Iterator[Path]:
    """Validate with `root` as the workspace inside this block."""
    path = Path(os.path.abspath(root))
    token = _WORKSPACE.set(path)
    try:
        yield path
    finally:
        _WORKSPACE.reset(token)


def current_workspace() -> Path | None:
    """The workspace of the validation in progress, if one is known."""
    return _WORKSPACE.get()


# ------------------------------------------------------------------------ classification


def is_remote(ref: str) -> bool:
    """Whether `ref` is a URL of a remote filesystem (`scheme://`, except `file://`)."""
    m = _SCHEME.match(ref)
    return bool(m) and m.group(1).lower() != "file"


def _local_part(ref: str) -> str:
    return ref[len("file://"):] if ref[:7].lower() == "file://" else ref


# ------------------------------------------------------------------------------ checks


def check_location(ref: str) -> str:
    """Check a source path, hub id or model reference; returns it unchanged or raises
    FieldError(problem, fix). Remote URLs: no credentials; anything else is a local
    path (a hub id such as `org/name` is a relative path without `..`, and passes)."""
    if is_remote(ref):
        if breaks_line(ref):
            raise FieldError(f"URL {redact_url(ref)!r} holds a line break or control character",
                             "remove it")
        check_url(ref)
    else:
        check_local(ref)
    return ref


def check_local(ref: str) -> None:
    """A local path must stay in the workspace (see the module docstring)."""
    raw = _local_part(ref)
    if breaks_line(raw):  # a path is an argument of a stage command in dvc.yaml
        raise FieldError(f"path {ref!r} holds a line break or control character, which "
                         "DVC would run as a separate command", "remove it")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(f"path {ref!r} is not valid text (it holds a lone surrogate)",
                         "write the path in UTF-8") from None
    path = os.path.expanduser(raw) if raw.startswith("~") else raw
    root = current_workspace()
    where = f"the workspace {str(root)!r}" if root else "the workspace"
    if not os.path.isabs(path):
        norm = os.path.normpath(path)
        if norm == os.pardir or norm.startswith(os.pardir + os.sep):
            raise FieldError(f"path {ref!r} climbs out of {where} with `..`", LOCAL_FIX)
        if root is None:
            return
        target = root / path
    elif root is None:
        return
    else:
        target = Path(path)
    root_real = Path(os.path.realpath(root))
    lexical = Path(os.path.abspath(target))
    if not (lexical.is_relative_to(root) or lexical.is_relative_to(root_real)):
        raise FieldError(f"path {ref!r} is outside {where}", LOCAL_FIX)
    real = Path(os.path.realpath(target))
    if not real.is_relative_to(root_real):
        raise FieldError(
            f"path {ref!r} leads through a symlink to {str(real)!r}, outside {where}",
            "copy the data into the workspace (or `dvc import-url` it) instead of linking to it, "
            "or name a remote URL (s3://, gs://, hf://, https://...)")


def _userinfo(url: str) -> bool:
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return "@" in url.split("://", 1)[-1].split("/", 1)[0]


def check_url(url: str) -> str:
    """A remote URL may not carry credentials (see the module docstring); returns it."""
    shown = redact_url(url)
    if _userinfo(url):
        raise FieldError(f"URL {shown!r} carries credentials (a `user:password@` part)",
                         CREDENTIALS_FIX)
    params = secret_params(url)
    if params:
        raise FieldError(f"URL {shown!r} carries credentials in its query "
                         f"({', '.join(params)})", CREDENTIALS_FIX)
    return url


def check_glob(pattern: str) -> str:
    """A glob is relative to its source's path: no absolute pattern, no `..`."""
    parts = re.split(r"[/\\]", pattern)
    if pattern.startswith(("/", "\\", "~")) or ".." in parts:
        raise FieldError(f"glob {pattern!r} reaches outside the source folder", "write it "
                         "relative to `path` without `..` (e.g. '**/*.jsonl')")
    return pattern


_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*")


def check_revision(revision: str) -> str:
    """A hub revision (branch, tag, `refs/pr/N` or commit): a name, never a path."""
    if not _REVISION.fullmatch(revision) or ".." in revision.split("/"):
        raise FieldError(f"revision {revision!r} is not a hub branch, tag or commit", "use a "
                         "commit hash (best: it pins the files) or a branch/tag name")
    return revision


def breaks_line(text: str) -> bool:
    """Whether `text` holds a control character (Unicode `Cc`: C0, DEL, C1) or any other
    character `str.splitlines` breaks at (U+2028, U+2029...). DVC runs each line of a stage's
    `cmd` as a command of its own (it splits with `splitlines`), and a job script's line
    ends there too, so no quoting keeps such a character inside one argument."""
    return len(f"x{text}x".splitlines()) > 1 or any(
        unicodedata.category(c) == "Cc" for c in text)


def check_no_control(value: str) -> str:
    """A value written into a generated script (an `#SBATCH` line) must stay on its line."""
    if breaks_line(value):
        raise FieldError(f"{value!r} holds a line break or control character, which would "
                         "start a new line of the generated job script", "remove it")
    return value


_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.()\-]*")
_FILE_SUFFIXES = (".yaml", ".yml", ".json", ".py")


def check_task_name(name: str) -> str:
    """An lm-eval task, group or tag name, never a path: lm-eval loads a task string that
    is not a registered name as a YAML file, whose `!function` tags import Python code."""
    if not _TASK_NAME.fullmatch(name) or name.lower().endswith(_FILE_SUFFIXES):
        raise FieldError(
            f"evaluation task {name!r} is not an lm-eval task name (letters, digits and "
            "`_ . - ( )`; no paths or files: a task YAML may import Python code)", "use a "
            "registered lm-eval task, group or tag name (`lm_eval ls tasks`), or a task "
            "built from your data (evaluation.local_tasks)")
    return name


# ------------------------------------------------------------------------- env_command

_TOKEN = re.compile(r"[A-Za-z0-9_./~+@%:=,-]+")

ENV_COMMAND_FORMS: dict[tuple[str, ...], tuple[int, int | None]] = {
    ("source",): (1, 1),
    (".",): (1, 1),
    ("conda", "activate"): (1, 1),
    ("mamba", "activate"): (1, 1),
    ("micromamba", "activate"): (1, 1),
    ("module", "load"): (1, None),
    ("module", "purge"): (0, 0),
    ("ml",): (1, None),
    ("spack", "load"): (1, None),
}
"""The commands a Slurm `env_command` may chain with ` && ` (command words -> (min, max)
arguments): activating an environment, nothing else. Arguments are plain words (no quotes,
`$`, `;`, `|`, `&`, redirections or globs)."""


def check_env_command(command: str) -> str:
    """A Slurm `env_command` runs at the top of every job script: only the forms in
    `ENV_COMMAND_FORMS`, so a spec cannot run arbitrary shell on the cluster."""
    forms = ", ".join(f"`{' '.join(words)}{' ARG' * lo}{' ...' if hi is None else ''}`"
                      for words, (lo, hi) in ENV_COMMAND_FORMS.items())
    fix = (f"write the environment set-up as commands of the forms {forms}, joined by "
           "` && ` (anything else belongs in the environment the job inherits, or in a "
           "script you `source`)")
    if "\n" in command or "\r" in command:
        raise FieldError(f"env_command {command!r} spans several lines", fix)
    for part in command.split("&&"):
        words = part.split()
        bad = [w for w in words if not _TOKEN.fullmatch(w)]
        if bad:
            raise FieldError(f"env_command {command!r}: {bad[0]!r} is not a plain word "
                             "(shell syntax is not allowed)", fix)
        for head, (lo, hi) in ENV_COMMAND_FORMS.items():
            if tuple(words[:len(head)]) == head:
                n = len(words) - len(head)
                if n >= lo and (hi is None or n <= hi):
                    break
        else:
            raise FieldError(f"env_command {command!r}: {' '.join(words) or '(empty)'!r} is "
                             "not an allowed command", fix)
    return command
