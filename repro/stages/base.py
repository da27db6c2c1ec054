"""The stage contract and the chores every stage shares.

A stage is a module in `repro.stages` exposing `run(cfg: <Its>Config, io: StageIO) -> None`.
It imports neither the compiler nor DVC: it gets validated settings and the paths of its
inputs and outputs, and writes every output atomically (temporary path, then rename), so a
failure leaves nothing partial behind for DVC to cache.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from repro.errors import ReproError


class StageIOError(ReproError, KeyError):
    """A stage was run without an --in/--out its kind needs (by hand, or from a dvc.yaml
    older than the code)."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0]) if self.args else ""


_IO_FIX = "run `repro compile`, then the stage through `dvc repro` (its command in dvc.yaml)"


@dataclass(frozen=True)
class StageIO:
    """Where a stage reads and writes. Keys are fixed per stage kind (see repro.paths)."""

    name: str
    inputs: Mapping[str, Path] = field(default_factory=dict)
    outputs: Mapping[str, Path] = field(default_factory=dict)

    def input(self, key: str) -> Path:
        try:
            return self.inputs[key]
        except KeyError:
            raise StageIOError(f"stage {self.name} has no input {key!r} (given: "
                               f"{sorted(self.inputs)})", fix=_IO_FIX) from None

    def output(self, key: str) -> Path:
        try:
            return self.outputs[key]
        except KeyError:
            raise StageIOError(f"stage {self.name} has no output {key!r} (given: "
                               f"{sorted(self.outputs)})", fix=_IO_FIX) from None

    def inputs_with_prefix(self, prefix: str) -> dict[str, Path]:
        """Inputs named `<prefix>:<suffix>`, keyed by suffix, in sorted order."""
        return {k.split(":", 1)[1]: v for k, v in sorted(self.inputs.items())
                if k.startswith(prefix + ":")}


_OUT_OF_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class OutputWriteError(ReproError, OSError):
    """An output could not be written because a disk, quota or file-size limit was hit."""


def _out_of_space(path: Path, e: BaseException) -> BaseException:
    """A full disk as an error the CLI prints in one line (a bare `OSError: [Errno 28]` from
    deep inside a library names neither the output nor the fix), or `e` unchanged."""
    if not isinstance(e, OSError) or isinstance(e, OutputWriteError) or e.errno not in _OUT_OF_SPACE:
        return e
    return OutputWriteError(
        f"output {path} was not written: {e} (a disk or the temporary folder is full, or a "
        "quota or file-size limit was reached); nothing partial was kept. Free space and "
        "rerun `dvc repro`")


_TAGS = ("tmp", "work")
"""Kinds of this process's siblings of an output: `tmp` becomes the output (atomic_dir),
`work` is scratch removed when the stage ends (work_sibling)."""


def _tmp_sibling(path: Path, tag: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}")


def work_sibling(path: Path) -> Path:
    """A new, empty scratch folder next to output `path` (on its filesystem, which workers on
    other machines may share), named so that a later run removes it if this one is killed
    (remove_stale_temporaries); the caller removes it when done."""
    work = _tmp_sibling(Path(path), "work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def _proc_start(pid: int) -> tuple[str, float] | None:
    """(state, start time in seconds since the epoch) of a process, from Linux's /proc;
    None where /proc cannot tell (another OS, or the process just ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
    return fields[0], btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")


_CLOCK_SLACK_S = 2.0  # /proc/stat's boot time is whole seconds


def _writer_alive(pid: int, tmp: Path) -> bool:
    """Whether process `pid` may still be writing the temporary `tmp`.

    A process that no longer exists, a zombie (killed but not yet reaped: a container's init
    may take seconds, and `kill -0` still succeeds on it), or a process that started after
    `tmp` was last modified (the pid was reused: the writer made `tmp` after it started)
    cannot be."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        pass
    proc = _proc_start(pid)
    if proc is None:
        return True
    state, started = proc
    if state in ("Z", "X"):
        return False
    try:
        modified = tmp.lstat().st_mtime
    except OSError:
        return False
    return started <= modified + _CLOCK_SLACK_S


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporaries of `path` left by writers that are no longer alive.

    A killed stage (SIGKILL, the OOM killer, a preempted job) never reaches the cleanup in
    atomic_dir/atomic_write_bytes, so its `.<name>.tmp-<pid>` (and `.<name>.work-<pid>`,
    work_sibling) stays next to the declared output. DVC ignores it, but each crash would keep a partial copy of the output on disk
    (a whole curated dataset), and `git add -A` would commit it (DVC's .gitignore names the
    output, not its temporaries). The next attempt removes them; a temporary whose writer
    is still alive is left alone (tests/faults/test_faults.py kills stages to check this).
    Only names of this exact pattern for `path` are touched.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    prefixes = tuple(f".{path.name}.{tag}-" for tag in _TAGS)
    for sibling in path.parent.iterdir():
        prefix = next((p for p in prefixes if sibling.name.startswith(p)), None)
        pid = sibling.name[len(prefix):] if prefix else ""
        if not pid.isdigit() or _writer_alive(int(pid), sibling):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `path` only if the block succeeds."""
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = _tmp_sibling(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        error = _out_of_space(path, e)
        if error is e:
            raise
        raise error from e
    if path.is_symlink() or path.is_file():  # a link goes, never what it points to
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_sibling(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        error = _out_of_space(path, e)
        if error is e:
            raise
        raise error from e
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def log(stage: str, message: str) -> None:
    """One progress line of a stage on stderr. Redacted: it may quote a dataset's source or a
    setting, which may hold a URL with a credential (repro.spec.safety)."""
    import sys

    from repro.spec.safety import redact_text

    print(redact_text(f"[{stage}] {message}"), file=sys.stderr, flush=True)


def dumps_json(obj: Any) -> str:
    """Canonical JSON for outputs: sorted keys, stable floats, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


OFFLINE_ENV = {
    # Nothing touches the network unless a spec names a remote source.
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline_env(allow_network: bool = False) -> None:
    if not allow_network:
        os.environ.update(OFFLINE_ENV)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (if imported by the stage)."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:
        pass
    import sys

    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
