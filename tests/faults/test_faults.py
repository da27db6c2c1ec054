"""Faults (issue 6, item 4): stages killed or starved of disk mid-run, then `dvc repro` again.

The module works on its own copy of the tiny pipeline's workspace, built once per test run
(tests/conftest.py `tiny_workspace`). Each end-to-end test first returns its stage to never
having run (`Workspace.forget`: outputs, dvc.lock entry, the cache objects only it made and
DVC's run cache, which would otherwise restore the outputs instead of running the stage),
so that the run it interrupts is the stage's *first*, with every input already built. Each
then checks what the workspace and DVC hold after the fault (no declared output, no
dvc.lock entry, no new cache object), that a plain `dvc repro` completes, and that it gives
the bytes of an uninterrupted run: a forced `dvc repro -f -s <stage>` afterwards (force
skips the run cache, so the stage really runs).

Processes are killed as a whole process group (DVC, the stage and its workers), as a
preempted job or the OOM killer of a container would, at a moment observed from outside:
partial files in the stage's temporary output, a resumable training state on disk, rows in
lm-eval's response cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Callable

import pytest
import yaml

from repro.paths import LIVE_DIR, is_machine_record
from repro.stages.base import OutputWriteError, atomic_dir, atomic_write_text, remove_stale_temporaries
from repro.verify.lockfile import declared_stage_id
from repro.yamlio import safe_load  # libyaml: these tests read dvc.yaml and dvc.lock often

POLL_S = 0.005
FSIZE_LIMIT = 4096
"""Bytes a process under the simulated full disk may write to one file: the stage starts
(it writes nothing that large before its outputs) and fails writing its token shards."""


# ----------------------------------------------------------------------------- helpers


def _group(pgid: int) -> dict[int, tuple[int, str]]:
    """Live (non-zombie) processes of process group `pgid`: pid -> (parent pid, command)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found[int(proc.name)] = (int(ppid), cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def _files(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder` (or of `folder` if a file)."""
    if folder.is_file():
        return {folder.name: hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Workspace:
    """The scratch repository, with the DVC views the tests check."""

    def __init__(self, root: Path, tmp: Path, lm_cache: Path, forget: Callable[[Path, str], None]):
        self.root = root
        self._forget = forget
        self.tmp = tmp  # TMPDIR of every command: stage scratch stays inside the test's folder
        self.lm_cache = lm_cache
        # one torch thread: float reductions depend on the count, and the machine is shared
        self.env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                        TMPDIR=str(tmp), REPRO_NUM_THREADS="1",
                        REPRO_LM_EVAL_CACHE=str(self.lm_cache))

    # ---------------------------------------------------------------- reading state
    def stages(self) -> dict:
        return safe_load((self.root / "dvc.yaml").read_text())["stages"]

    def stage(self, prefix: str) -> str:
        [name] = [s for s in self.stages() if s.startswith(prefix)]
        return name

    def stage_id(self, name: str) -> str:
        """The stage's id (its settings hash, the command's `--id`): what names its outputs
        and the state it keeps outside DVC (.repro/resume/<id>)."""
        return declared_stage_id(self.stages()[name])

    def lock_entry(self, stage: str) -> dict | None:
        lock = self.root / "dvc.lock"
        if not lock.exists():
            return None
        return (safe_load(lock.read_text()).get("stages") or {}).get(stage)

    def outputs(self, stage: str, stages: dict | None = None) -> list[Path]:
        """Every path the stage declares to DVC (outs, metrics, plots)."""
        spec = (stages or self.stages())[stage]
        entries = [e for key in ("outs", "metrics", "plots") for e in spec.get(key, [])]
        return [self.root / (e if isinstance(e, str) else next(iter(e))) for e in entries]

    def producers(self, stage: str) -> list[str]:
        """The stages whose outputs `stage` depends on."""
        stages = self.stages()  # read once: dvc.yaml has thousands of lines
        made_by = {str(p.relative_to(self.root)): s for s in stages for p in self.outputs(s, stages)}
        return sorted({made_by[d] for d in stages[stage].get("deps", []) if d in made_by})

    def cache(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in (self.root / ".dvc" / "cache").rglob("*")
                if p.is_file()}

    def temporaries(self, stage: str) -> list[Path]:
        """Temporaries (`.<name>.tmp-<pid>`, repro.stages.base) next to the stage's outputs."""
        return sorted(t for out in self.outputs(stage) for t in out.parent.glob(f".{out.name}.tmp-*"))

    def stale(self) -> set[str]:
        return set(json.loads(self.dvc("status", "--json").stdout or "{}"))

    def digest(self, stage: str) -> tuple[list, dict]:
        """(dvc.lock outs, sha256 of every output file) of a completed stage, without the
        outputs measured rather than computed (repro.paths.is_machine_record: perf.json's
        tokens/s, env.json's wall seconds, a train stage's live DVCLive folder)."""
        entry = self.lock_entry(stage)
        assert entry is not None, f"{stage} has no dvc.lock entry"
        outs = [o for o in entry["outs"] if not is_machine_record(o["path"])]
        files = {str(p.relative_to(self.root)): _files(p) for p in self.outputs(stage)
                 if not is_machine_record(p.relative_to(self.root))}
        return outs, files

    # ------------------------------------------------------------------ commands
    def dvc(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(["dvc", *args], cwd=self.root, env=self.env | env, text=True,
                              capture_output=True, timeout=900)
        if check:
            assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return proc

    def repro(self, stage: str, **env: str) -> subprocess.CompletedProcess:
        """`dvc repro <stage>` (and what it is missing); asserts the stage itself ran."""
        proc = self.dvc("repro", stage, **env)
        assert f"Running stage '{stage}'" in proc.stdout, proc.stdout[-4000:]
        return proc

    def forget(self, stage: str) -> None:
        """Return `stage` to never having run (tests/conftest.py `forget_stage`)."""
        self._forget(self.root, stage)
        assert self.lock_entry(stage) is None and stage in self.stale()

    def build_inputs(self, stage: str) -> None:
        """Run everything `stage` needs, but not `stage`."""
        self.dvc("repro", *self.producers(stage))

    def kill_during(self, stage: str, ready: Callable[[], bool], what: str,
                    timeout_s: float = 600) -> dict[int, tuple[int, str]]:
        """Start `dvc repro <stage>` in its own process group, wait until `ready()`, then
        SIGKILL the whole group; returns the group's processes at that moment.

        The group is frozen (SIGSTOP) the moment `ready()` holds, and listed and killed
        frozen: a writer cannot go on between what the test saw and the kill. Listing the
        group first (a /proc walk, tens of ms on a busy machine) let the curate stage go on
        writing: the kill then found a shard still under its `.jsonl.tmp` name, or the
        output already renamed into place (issue 19)."""
        log = self.tmp / f"{stage}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(["dvc", "repro", stage], cwd=self.root, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        try:
            while not ready():
                assert proc.poll() is None, f"{stage} ended before {what}:\n{log.read_text()[-4000:]}"
                assert time.monotonic() < deadline, f"no {what} after {timeout_s} s"
                time.sleep(POLL_S)
            os.killpg(proc.pid, signal.SIGSTOP)
            group = _group(proc.pid)  # stopped processes (state T) are listed as live
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        # nothing of the group survives to keep writing (a worker outside it would)
        deadline = time.monotonic() + 30
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group(proc.pid), _group(proc.pid)
        assert proc.returncode != 0, log.read_text()[-4000:]
        return group

    def assert_nothing_recorded(self, stage: str, cache_before: set[str]) -> None:
        """After a failed run: no declared output, no dvc.lock entry, no new cache object,
        and DVC still sees the stage as to be run. The live record (live/<id>/, DVCLive's
        folder) is the exception: written in place as the stage trains, it shows how far a
        killed run got; DVC deletes it before the rerun, which logs it again whole."""
        live = PurePosixPath(LIVE_DIR)
        assert [p for p in self.outputs(stage) if p.exists()
                and PurePosixPath(p.relative_to(self.root).as_posix()).parts[:1] != live.parts] == []
        assert self.lock_entry(stage) is None
        assert self.cache() == cache_before
        assert stage in self.stale()


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_workspace, forget) -> Workspace:
    w = Workspace(tiny_workspace.copy(tmp_path_factory.mktemp("faults-repo") / "ws"),
                  tmp_path_factory.mktemp("faults-tmp"), tmp_path_factory.mktemp("faults-lm-eval-cache"),
                  forget)
    root = w.root
    # an in-stage checkpoint after every update of the first training stage, so the
    # SIGKILL below lands between two of them (execution-only: not a DVC param, the stage's
    # identity and outputs are unchanged; repro.stages.train.config_fingerprint excludes it)
    params_path = root / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    train = w.stage("train-ci-tiny-stable")
    params[train]["checkpoint_every_steps"] = 1
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    return w


# ------------------------------------------------------------------- unit: temporaries


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    """A SIGKILLed writer leaves `.<name>.tmp-<pid>`; the next atomic write of that output
    removes it, and leaves alone the temporary of a writer that is still alive."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f".out.tmp-{dead.pid}").mkdir()
        (tmp_path / f".out.tmp-{dead.pid}" / "part.jsonl").write_text("{")
        (tmp_path / f".out.tmp-{alive.pid}").mkdir()
        (tmp_path / f".m.json.tmp-{dead.pid}").write_text("{")
        (tmp_path / ".other.tmp-1").mkdir()  # another output's: not ours to judge
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a").write_text("a")
        atomic_write_text(tmp_path / "m.json", "{}")
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            ".other.tmp-1", f".out.tmp-{alive.pid}", "m.json", "out"]
        remove_stale_temporaries(tmp_path / "missing" / "x")  # no parent: nothing to do
    finally:
        alive.kill()
        alive.wait()


def test_temporaries_of_zombies_and_reused_pids_are_stale(tmp_path):
    """A writer killed but not yet reaped (a zombie: `kill -0` still succeeds, and a
    container's init may reap it seconds later) and a pid now held by a process that started
    after the temporary was last written (pid reuse) are not alive writers: both temporaries
    go, as does a dead run's `.work-<pid>` scratch; only this output's names are touched."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)  # ended, not yet waited for
        for pid in (zombie.pid, later.pid):
            (tmp_path / f".out.tmp-{pid}").mkdir()
            (tmp_path / f".out.tmp-{pid}" / "part.jsonl").write_text("{")
        (tmp_path / f".out.work-{zombie.pid}").mkdir()
        (tmp_path / f".other.tmp-{zombie.pid}").mkdir()  # another output's
        (tmp_path / "sentinel.txt").write_text("keep")
        hour_ago = time.time() - 3600  # written long before `later` started
        os.utime(tmp_path / f".out.tmp-{later.pid}", (hour_ago, hour_ago))
        remove_stale_temporaries(tmp_path / "out")
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            f".other.tmp-{zombie.pid}", "sentinel.txt"]
    finally:
        later.kill()
        later.wait()
        zombie.wait()


def test_full_disk_is_a_one_line_error_and_leaves_nothing(tmp_path):
    """ENOSPC/EFBIG inside an atomic output becomes an error naming the output and the fix
    (the CLI prints it without a traceback); other errors pass through unchanged."""
    import errno

    with pytest.raises(OutputWriteError, match=r"out was not written: \[Errno 28\] No space"):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "part").write_text("x")
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PermissionError):
        with atomic_dir(tmp_path / "out"):
            raise PermissionError(errno.EACCES, "denied")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------- end to end through DVC


@pytest.mark.slow
def test_sigkill_during_curation_then_repro_is_identical(ws: Workspace):
    """curate-pdf (2 datatrove tasks on 2 worker processes) is killed, with DVC and all its
    workers, once its temporary output holds files; the rerun matches an uninterrupted run
    (the shared build's: curation's bytes do not depend on threads or processes)."""
    curate = ws.stage("curate-pdf")
    uninterrupted = ws.digest(curate)
    ws.forget(curate)  # the run killed below is the stage's first
    params = yaml.safe_load((ws.root / "params.data.yaml").read_text())[curate]
    assert params["executor"]["tasks"] >= 2 and params["executor"]["workers"] >= 2
    ws.build_inputs(curate)
    cache_before = ws.cache()
    [docs] = [p for p in ws.outputs(curate) if p.parent.name == "curated"]

    def partial_output() -> bool:
        # a whole shard renamed into the temporary (Canonicalize writes `<n>.jsonl.tmp`
        # first): some output is complete, the rest is not
        try:
            return any(f.is_file() for t in docs.parent.glob(f".{docs.name}.tmp-*")
                       for f in t.rglob("*.jsonl"))
        except FileNotFoundError:  # the temporary was renamed into place while walked
            return False

    group = ws.kill_during(curate, partial_output, "partial curated files")
    # DVC, the stage and the workers of datatrove's process pool (children of its
    # multiprocess forkserver) died together
    stage_procs = [pid for pid, (_, cmd) in group.items() if f"repro stage curate {curate}" in cmd
                   and "forkserver" not in cmd]
    workers = [pid for pid, (ppid, _) in group.items() if "forkserver" in group.get(ppid, (0, ""))[1]]
    assert stage_procs and len(workers) >= 2, group
    # the kill hit mid-output: a partial copy sits in the temporary, never at the output
    [partial] = ws.temporaries(curate)
    assert any(partial.rglob("*.jsonl"))
    ws.assert_nothing_recorded(curate, cache_before)

    ws.repro(curate)
    # the rerun removed the dead run's temporary (it would hold a partial dataset on disk
    # for good and be committed by `git add -A`)
    assert ws.temporaries(curate) == []
    untracked = subprocess.run(["git", "status", "--porcelain", "-uall"], cwd=ws.root, text=True,
                               capture_output=True, check=True).stdout
    assert ".tmp-" not in untracked, untracked
    assert ws.digest(curate) == uninterrupted


@pytest.mark.slow
def test_full_disk_fails_cleanly_and_dvc_caches_nothing(ws: Workspace, tmp_path: Path):
    """tokenize-web with a file-size limit (writes past 4 KiB fail with EFBIG, as on a full
    disk): alone, it exits 2 with a one-line error and leaves nothing at or next to its
    outputs; under `dvc repro` (the limit on the stage's shell only), DVC records and caches
    nothing for it; without the limit the rerun gives the shared build's bytes."""
    tokenize = ws.stage("tokenize-web")
    uninterrupted = ws.digest(tokenize)
    ws.forget(tokenize)
    ws.build_inputs(tokenize)
    [tokens] = [p for p in ws.outputs(tokenize) if p.parent.name == "tokens"]
    cmd = ws.stages()[tokenize]["cmd"]

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death by signal
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))

    alone = subprocess.run(cmd, shell=True, cwd=ws.root, env=ws.env, text=True,
                           capture_output=True, preexec_fn=limited, timeout=600)
    assert alone.returncode == 2, alone.stderr[-4000:]
    assert (f"error: stage {tokenize}: output {tokens.relative_to(ws.root)} was not written: "
            "[Errno 27] File too large") in alone.stderr, alone.stderr[-4000:]
    assert "Free space and rerun `dvc repro`" in alone.stderr
    assert "Traceback" not in alone.stderr
    assert [p for p in ws.outputs(tokenize) if p.exists()] == []
    assert ws.temporaries(tokenize) == []

    # DVC runs stage commands with $SHELL -c: a shell that lowers the limit first confines
    # it to the stage (DVC itself would fail on its own state files under it)
    shell = tmp_path / "fsize-limited-sh"
    shell.write_text(f"#!{sys.executable}\n"
                     "import os, resource, signal, sys\n"
                     "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                     f"resource.setrlimit(resource.RLIMIT_FSIZE, ({FSIZE_LIMIT}, {FSIZE_LIMIT}))\n"
                     "os.execv('/bin/sh', ['/bin/sh', *sys.argv[1:]])\n")
    shell.chmod(0o755)
    cache_before = ws.cache()
    failed = ws.dvc("repro", tokenize, check=False, SHELL=str(shell))
    assert failed.returncode != 0
    assert f"Running stage '{tokenize}'" in failed.stdout
    assert "File too large" in failed.stdout + failed.stderr
    assert f"failed to reproduce '{tokenize}'" in failed.stdout + failed.stderr
    ws.assert_nothing_recorded(tokenize, cache_before)
    assert ws.temporaries(tokenize) == []

    ws.repro(tokenize)
    assert ws.digest(tokenize) == uninterrupted


@pytest.mark.slow
def test_sigkill_during_training_resumes_bitwise_through_dvc(ws: Workspace):
    """The first training stage is killed after an in-stage checkpoint; `dvc repro` resumes
    from it (not from step 0) and the checkpoint, snapshot, loss and metrics are the bytes
    of an uninterrupted run. (tests/stages/test_train.py kills the stage's own process
    and checks more files; this goes through DVC: nothing partial recorded, the staged
    snapshot survives DVC deleting the failed stage's outputs.)"""
    train = ws.stage("train-ci-tiny-stable")
    uninterrupted = ws.digest(train)  # the shared build's run, from step 0, one thread as here
    ws.forget(train)
    ws.build_inputs(train)
    cache_before = ws.cache()
    state = ws.root / ".repro" / "resume" / ws.stage_id(train) / "state.pt"

    ws.kill_during(train, state.exists, "an in-stage checkpoint")
    assert state.exists()
    ws.assert_nothing_recorded(train, cache_before)

    ws.repro(train)
    perf_path = next(p for p in ws.outputs(train) if p.name.endswith(".perf.json"))
    resumed = json.loads(perf_path.read_text())["resumed_from_step"]
    params = yaml.safe_load((ws.root / "params.yaml").read_text())[train]
    assert resumed is not None and 1 <= resumed <= params["steps"], resumed
    assert not state.exists()  # cleared once the stage completed
    rerun = ws.digest(train)
    assert any(p.endswith("model.safetensors") for files in rerun[1].values() for p in files)
    assert rerun == uninterrupted


def _cached_rows(cache_root: Path) -> int:
    """Rows in lm-eval's sqlite response caches under `cache_root` (0 while none exists)."""
    rows = 0
    for db in cache_root.rglob("*.db"):
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05)
            try:
                rows += con.execute("SELECT COUNT(*) FROM unnamed").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:  # being created or written right now
            continue
    return rows


@pytest.mark.slow
def test_sigkill_during_evaluation_then_repro_is_identical(ws: Workspace):
    """A run's evaluate stage (it scores every checkpoint of the run) is killed once lm-eval
    has cached some responses; each cache stays a valid database, the rerun reuses exactly
    the entries that were committed, and its results equal those of an uninterrupted run
    with cold caches: the shared build's, whose caches the workspace copy holds."""
    evaluate = ws.stage("evaluate-ci-tiny")
    uninterrupted = ws.digest(evaluate)
    cold_rows = _cached_rows(ws.root / ".repro" / "cache" / "lm_eval")
    assert cold_rows > 0
    ws.forget(evaluate)
    ws.build_inputs(evaluate)
    cache_before = ws.cache()

    ws.kill_during(evaluate, lambda: _cached_rows(ws.lm_cache) > 0, "cached lm-eval responses")
    ws.assert_nothing_recorded(evaluate, cache_before)
    committed: dict[Path, dict] = {}
    for db in ws.lm_cache.rglob("responses_rank0.db"):  # one per checkpoint scored so far
        con = sqlite3.connect(db)  # a read-write open rolls back a transaction the kill cut off
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            committed[db] = dict(con.execute("SELECT key, rowid FROM unnamed"))
            if not committed[db]:
                continue
            # sqlitedict writes with REPLACE INTO, which gives a rewritten entry a new rowid
            # (max + 1): a marker row above them all makes that new rowid differ from the
            # old one in every case. lm-eval's keys are sha256 digests: the marker is never
            # looked up.
            con.execute("INSERT INTO unnamed (rowid, key, value) VALUES (?, ?, ?)",
                        (max(committed[db].values()) + 1_000_000, "faults-marker", b""))
            con.commit()
        finally:
            con.close()
    markers = sum(1 for rows in committed.values() if rows)
    assert markers

    ws.repro(evaluate)
    for db, rows in committed.items():
        con = sqlite3.connect(db)
        try:
            after = dict(con.execute("SELECT key, rowid FROM unnamed"))
        finally:
            con.close()
        # the committed responses were reused as they were, the rest computed and added
        assert {k: after.get(k) for k in rows} == rows
    # every response exactly once: what an uninterrupted run with cold caches holds
    assert _cached_rows(ws.lm_cache) - markers == cold_rows
    assert ws.digest(evaluate) == uninterrupted
