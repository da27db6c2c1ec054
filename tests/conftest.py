"""Shared test helpers. Fixtures are made by the tests themselves; nothing touches the network."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One torch thread in every test and every stage a test runs: the two pytest-xdist workers
# already fill the two cores (two threads each only contend), and float reductions depend on
# the thread count, so the shared tiny workspace's build, `repro verify`'s rebuild and the
# fault tests' reruns compute the same bytes.
os.environ.setdefault("REPRO_NUM_THREADS", "1")
from repro.numerics import pin_numerics_env  # noqa: E402

pin_numerics_env()  # before any test imports torch: reruns compare bitwise


@pytest.fixture
def repo_root() -> Path:
    return REPO


# ------------------------------------------------------------ raw-input builders (data tests)


def _write_warc(path: Path, records: list[tuple[str, bytes, str]], gz: bool = False) -> Path:
    """A WARC file of `response` records (url, body, MIME type); gzipped per record if `gz`.
    Dates and record ids are fixed, so the same records give the same bytes."""
    from io import BytesIO

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from repro.data.warc import WARC_DATE, record_id

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=gz)
        for url, body, mime in records:
            http = StatusAndHeaders("200 OK", [("Content-Type", mime),
                                               ("Content-Length", str(len(body)))],
                                    protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                url, "response", payload=BytesIO(body), http_headers=http,
                warc_headers_dict={"WARC-Date": WARC_DATE, "WARC-Record-ID": record_id(url),
                                   "WARC-Identified-Payload-Type": mime}))
    return path


def _make_pdf(text: str) -> bytes:
    """A one-page PDF whose text layer holds `text` (fpdf2, core font)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def _html_page(i: int, words: int = 120) -> bytes:
    body = " ".join(f"Sentence number {i} part {j} tells the reader something new." for j in
                    range(words // 8))
    return (f"<html><head><title>Page {i}</title></head><body><article><h1>Page {i}</h1>"
            f"<p>{body}</p><p>{body[::-1]}</p></article></body></html>").encode("utf-8")


@pytest.fixture(scope="session")
def write_warc():
    """`write_warc(path, [(url, body, mime), ...], gz=False) -> path`."""
    return _write_warc


@pytest.fixture(scope="session")
def make_pdf():
    """`make_pdf(text) -> bytes` of a one-page PDF with a text layer."""
    return _make_pdf


@pytest.fixture(scope="session")
def html_page():
    """`html_page(i) -> bytes`: a distinct, extractable HTML page per `i`."""
    return _html_page


# ------------------------------------------------- scratch DVC workspaces (end-to-end tests)


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for `dvc`/`repro` commands: this interpreter's bin first on PATH."""
    import sys

    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", **extra)


def _make_workspace(root: Path, specs: str = "specs/ci") -> Path:
    """A scratch copy of the repository in `root` (tracked and not-ignored files; generated
    outputs removed), compiled from `specs` and committed to a fresh git repository, ready
    for `dvc repro` (`dvc exp run` needs a commit)."""
    import shutil
    import subprocess
    import sys

    def run(args: list[str]) -> None:
        proc = subprocess.run(args, cwd=root, env=tool_env(), text=True, capture_output=True)
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           text=True, capture_output=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    for generated in ("dvc.lock", "metrics", "plots", "reports"):
        target = root / generated
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    run([sys.executable, "-m", "repro.cli", "compile", "--specs", specs])
    run(["git", "init", "-q"])
    run(["git", "add", "-A"])
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"])
    return root


@pytest.fixture(scope="session")
def make_workspace():
    """`make_workspace(root, specs="specs/ci") -> root`: see `_make_workspace`."""
    return _make_workspace


# ------------------------------------- the tiny pipeline, built once per test run (issue 19)


@dataclass(frozen=True)
class BuiltWorkspace:
    """A workspace compiled from specs/ci and built by `dvc repro`, its outputs committed to
    git and DVC's cache (`dvc exp run` needs the committed run). Shared by every test of the
    run and never changed by one: a test works on its own `copy`."""

    root: Path
    repro_stdout: str
    """What the building `dvc repro` printed (the stages it ran)."""

    def copy(self, dest: Path) -> Path:
        """A private copy at `dest` (a few MB: cheap), without DVC's state folder .dvc/tmp
        (locks, and hashes keyed by inode, which a copy does not keep): DVC re-hashes the
        copied files on first use, as in a fresh clone with a filled cache."""
        shutil.copytree(self.root, dest, symlinks=True,
                        ignore=lambda d, names: ["tmp"] if Path(d).name == ".dvc" else [])
        return dest


def _build_tiny_workspace(shared: Path) -> BuiltWorkspace:
    """Build the tiny workspace under `shared` unless a process of this run already did.

    pytest-xdist workers are separate processes sharing the run's base temporary folder; an
    exclusive lock on a file there makes the first one build while the others wait, and a
    marker file tells them it is done (or that it failed: they fail at once, with its log,
    rather than build again)."""
    root, log = shared / "tiny-workspace", shared / "tiny-workspace.repro.log"
    done, failed = shared / "tiny-workspace.done", shared / "tiny-workspace.failed"
    with open(shared / "tiny-workspace.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the holder dies
        if failed.exists():
            pytest.fail(f"building the tiny workspace failed:\n{failed.read_text()}")
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # a worker killed while building it
            root.mkdir(parents=True)
            try:
                _make_workspace(root)
                proc = subprocess.run(["dvc", "repro"], cwd=root, env=tool_env(), text=True,
                                      capture_output=True, timeout=1800)
                assert proc.returncode == 0, f"dvc repro failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
                for args in (["git", "add", "-A"],
                             ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"]):
                    subprocess.run(args, cwd=root, check=True, capture_output=True)
            except BaseException as e:
                failed.write_text(str(e))
                raise
            log.write_text(proc.stdout)
            done.touch()
    return BuiltWorkspace(root, log.read_text())


def _lock_objects(root: Path, entry: dict) -> set[Path]:
    """The files in DVC's cache holding the outputs of a dvc.lock entry (a folder's `.dir`
    listing and the objects it lists)."""
    import json

    files = root / ".dvc" / "cache" / "files" / "md5"
    found = set()
    for out in entry.get("outs", []):
        md5 = out.get("md5")
        if not md5:
            continue
        obj = files / md5[:2] / md5[2:]
        found.add(obj)
        if md5.endswith(".dir") and obj.exists():
            found |= {files / f["md5"][:2] / f["md5"][2:] for f in json.loads(obj.read_text())}
    return found


def forget_stage(root: Path, stage: str) -> None:
    """Return `stage` of the workspace at `root` to never having run: its declared outputs,
    its dvc.lock entry, the cache objects no other stage's outputs hold and DVC's run cache
    (which would restore the outputs instead of running the stage) are removed. The stages
    it reads stay built; the next `dvc repro` runs it for real."""
    import yaml

    from repro.yamlio import safe_load  # libyaml: a fault test forgets stages several times

    lock = safe_load((root / "dvc.lock").read_text())
    entry = lock["stages"].pop(stage)
    declared = safe_load((root / "dvc.yaml").read_text())["stages"][stage]
    for key in ("outs", "metrics", "plots"):
        for out in declared.get(key, []):
            path = root / (out if isinstance(out, str) else next(iter(out)))
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    kept = set().union(*(_lock_objects(root, e) for e in lock["stages"].values()))
    for obj in _lock_objects(root, entry) - kept:
        obj.unlink(missing_ok=True)
    shutil.rmtree(root / ".dvc" / "cache" / "runs", ignore_errors=True)
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


@pytest.fixture(scope="session")
def forget():
    """`forget(root, stage)`: see `forget_stage`."""
    return forget_stage


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory) -> BuiltWorkspace:
    """The tiny pipeline (specs/ci) built once per run, for every process of it: under
    pytest-xdist each worker has its own base temporary folder, all inside the run's."""
    base = tmp_path_factory.getbasetemp()
    return _build_tiny_workspace(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


# ------------------------------------------------------ the order modules run in (xdist)


def pytest_collection_modifyitems(session, config, items) -> None:
    """Run the expensive modules first, so that the run ends on many small ones and both
    workers finish together (longest first: `make test` runs `--dist loadscope
    --no-loadscope-reorder`, which hands whole modules to whichever worker is free, in this
    order; xdist's own reordering puts modules with many tests first, which left the
    one-test end-to-end modules for last and one worker idle for minutes).

    1. the first module that needs the tiny workspace and has slow tests: its worker builds
       the workspace (about 100 s), every other module that needs it waits for that build;
    2. the other modules with slow tests that do not need it, for the other worker meanwhile;
    3. the remaining modules that need the workspace, built by then;
    4. everything else, in collection order."""
    def module(item) -> str:
        return item.nodeid.split("::", 1)[0]

    slow, tiny, order = set(), set(), []
    for item in items:
        name = module(item)
        if name not in order:
            order.append(name)
        if item.get_closest_marker("slow"):
            slow.add(name)
        if "tiny_workspace" in getattr(item, "fixturenames", ()):
            tiny.add(name)
    builder = next((m for m in order if m in tiny and m in slow), None)

    def rank(name: str) -> int:
        if name == builder:
            return 0
        if name in slow and name not in tiny:
            return 1
        return 2 if name in tiny else 3

    position = {name: (rank(name), i) for i, name in enumerate(order)}
    items.sort(key=lambda item: position[module(item)])  # stable: tests keep their order


# ----------------------------------------- CPU seconds per test (next to --durations, issue 19)
#
# Wall durations on a shared 2-core machine say as much about the neighbours as about the
# test; CPU seconds (this process and the children it waited for: stage subprocesses, dvc,
# torchrun) do not, so the run ends with the tests that cost the most CPU and the total,
# which is what `make test`'s wall time on 2 cores follows. Daemons a test starts and does not
# wait for (DVC queue workers, a Ray head) are not counted: the wall durations show those.

CPU_TOP = 20


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed_phase(item) -> object:
    start = _cpu_seconds()
    try:
        return (yield)
    finally:
        item.stash[_CPU_KEY] = _cpu_seconds() - start


_CPU_KEY = pytest.StashKey[float]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _timed_phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _timed_phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _timed_phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    spent = item.stash.get(_CPU_KEY, None)
    if spent is not None:  # user_properties travel from an xdist worker to the controller
        report.user_properties.append(("cpu_seconds", round(spent, 3)))
        del item.stash[_CPU_KEY]
    return report


class _CpuSecondsReport:
    """Sums each test's CPU seconds (setup, call and teardown; sent by the workers as report
    properties) in the process that prints the summary, and prints the costliest."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        spent = dict(report.user_properties).get("cpu_seconds")
        if spent is not None:
            self.totals[report.nodeid] = self.totals.get(report.nodeid, 0.0) + spent

    @pytest.hookimpl(trylast=True)  # after --durations: the last lines of a CI log
    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.totals:
            return
        if os.environ.get("REPRO_TEST_CPU_JSON"):  # every test's CPU seconds, to see where a run goes
            Path(os.environ["REPRO_TEST_CPU_JSON"]).write_text(json.dumps(self.totals, indent=1))
        top = sorted(self.totals.items(), key=lambda kv: -kv[1])[:CPU_TOP]
        terminalreporter.write_sep("=", f"{len(top)} tests with the most CPU seconds (all "
                                        f"{len(self.totals)}: {sum(self.totals.values()):.0f} CPU s)")
        for nodeid, spent in top:
            terminalreporter.write_line(f"{spent:8.1f}s cpu  {nodeid}")


def pytest_configure(config) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: the controller, or a plain run
        config.pluginmanager.register(_CpuSecondsReport(), "repro-cpu-seconds")
