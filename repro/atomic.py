"""Writing outputs atomically: a temporary sibling, then a rename.

A stage's (or a report's, or a checkpoint's) output appears whole or not at all, so a
failure leaves nothing partial behind for DVC to cache, and a killed writer's temporaries
are removed by the next attempt (remove_stale_temporaries). The lowest layer of the package:
it imports nothing of ours but the error base, so the training loop, the report and the
stages share one implementation (issue 18: helpers live in the lowest layer that needs them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Iterator

from repro.errors import ReproError


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
    None where /proc cannot tell (another OS). A process that ended since the caller saw it
    (a zombie reaped in between: this machine's init reaps orphans a second or so late) is
    ("X", 0.0), dead: it used to be None, which the caller takes for alive, so that the
    killed writer's temporary was kept."""
    try:
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return "X", 0.0
    except OSError:
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


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells (/proc/self/status,
    `Umask:`), else by the set-and-restore that is the only portable way."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def normal_modes(root: Path) -> None:
    """Give every file and folder under `root` (itself included) the permissions a plain
    `open(path, "w")` or `mkdir` would have given it under this process's umask: 0o666
    (0o777 for folders and executables) less the umask, so 0644/0755 under the usual 022.

    Why: some writers create their files through a private temporary and rename it, which
    keeps the temporary's 0600: safetensors 0.8's `save_file` (and so transformers'
    `save_pretrained`) does, since its writes go through Rust's tempfile
    (safetensors/safetensors#782, fix pending in #789), as do Python's mkstemp and mkdtemp.
    An output that is published (a checkpoint uploaded, a site served, a DVC cache shared
    with a team) must be readable by others as every other file is. Only the permission bits are touched;
    links are left alone (their target is not ours to change)."""
    mask = _umask()
    for folder, dirs, files in os.walk(root):
        entries = [(Path(folder), True)] if folder == str(root) else []
        entries += [(Path(folder) / d, True) for d in dirs]
        entries += [(Path(folder) / f, False) for f in files]
        for path, is_dir in entries:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            executable = is_dir or bool(st.st_mode & 0o111)
            want = (0o777 if executable else 0o666) & ~mask
            if stat.S_IMODE(st.st_mode) != want:
                os.chmod(path, want)


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
    """Yield a temporary directory that replaces `path` only if the block succeeds, its
    files and folders with the permissions of ordinary ones (normal_modes)."""
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
    normal_modes(tmp)
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
