"""A shared DVC cache (issue 19 item 5): what one clone built and pushed, another clone pulls
instead of rebuilding. The tiny pipeline (specs/ci, built once per test run:
tests/conftest.py `tiny_workspace`) is copied into a git repository; `dvc push` sends its
outputs to a remote (a local folder, then a loopback S3 server); a real `git clone` of that
repository pulls them the way `make quickstart` does (`dvc pull --allow-missing dvc.yaml`),
after which DVC finds every stage up to date and `dvc repro` runs none. An object missing
from the remote does not fail the pull (the quickstart then builds that part)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

PULL = ("pull", "--allow-missing", "dvc.yaml")  # the Makefile's quickstart pull


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", **extra)


def _run(args: list[str], cwd: Path, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=_env(**extra), text=True, capture_output=True,
                          timeout=900)
    if check:
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _git_commit(repo: Path, message: str) -> None:
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], repo)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_workspace) -> Path:
    """The tiny pipeline built and committed (dvc.lock, metrics, reports) in a git
    repository: this module's copy of the run's shared build (tests/conftest.py)."""
    return tiny_workspace.copy(tmp_path_factory.mktemp("origin") / "repo")


def _stages(repo: Path) -> set[str]:
    return set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])


def _stale(repo: Path, **extra: str) -> set[str]:
    return set(json.loads(_run(["dvc", "status", "--json"], repo, **extra).stdout or "{}"))


def _assert_nothing_to_rebuild(clone: Path, **extra: str) -> None:
    """DVC's verdict on the pulled clone: no stage stale, and `dvc repro` skips every stage
    by name and runs none."""
    assert _stale(clone, **extra) == set()
    out = _run(["dvc", "repro"], clone, **extra).stdout
    assert re.findall(r"Running stage '([^']+)'", out) == [], out[-4000:]
    assert set(re.findall(r"Stage '([^']+)' didn't change, skipping", out)) == _stages(clone), out[-4000:]


def test_push_to_a_folder_then_a_fresh_clone_pulls_and_rebuilds_nothing(built: Path, tmp_path: Path):
    remote = tmp_path / "dvc-remote"
    # committed, as a team would: every clone then has the remote as its default
    _run(["dvc", "remote", "add", "-d", "shared", str(remote)], built)
    _git_commit(built, "shared cache")
    pushed = _run(["dvc", "push"], built).stdout
    assert re.search(r"\d+ files? pushed", pushed), pushed
    assert any(remote.rglob("*.dir"))  # folder outputs travel as DVC's listings + files

    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(built), str(clone)], tmp_path)
    assert _stale(clone)  # nothing built in the clone yet: DVC would rerun stages
    _run(["dvc", *PULL], clone)
    _assert_nothing_to_rebuild(clone)

    # One object gone from the remote (a folder output's listing): the quickstart's pull
    # still succeeds and leaves exactly that output to build; a plain pull fails.
    lock = yaml.safe_load((built / "dvc.lock").read_text())["stages"]
    stage, md5 = next((name, o["md5"]) for name, e in lock.items() for o in e["outs"]
                      if o.get("md5", "").endswith(".dir"))
    (remote / "files" / "md5" / md5[:2] / md5[2:]).unlink()
    partial = tmp_path / "partial"
    _run(["git", "clone", "-q", str(built), str(partial)], tmp_path)
    assert _run(["dvc", "pull", "dvc.yaml"], partial, check=False).returncode != 0
    shutil.rmtree(partial)
    _run(["git", "clone", "-q", str(built), str(partial)], tmp_path)
    _run(["dvc", *PULL], partial)
    assert stage in _stale(partial)


@pytest.fixture
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 with an empty bucket (as tests/data/test_s3_source.py
    starts it); yields the environment a user would set (AWS_ENDPOINT_URL and keys)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "AKIAREPROTESTKEY0042", "AWS_SECRET_ACCESS_KEY": "reproTestSecret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    try:
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket="team-cache")
        yield env
    finally:
        server.stop()


def test_push_to_s3_then_a_fresh_clone_pulls_and_rebuilds_nothing(built: Path, tmp_path: Path,
                                                                   s3_endpoint: dict[str, str]):
    # --local: the S3 remote stays out of the committed config (each clone adds it)
    add = ["dvc", "remote", "add", "--local", "-d", "s3cache", "s3://team-cache/repro"]
    _run(add, built)
    try:
        pushed = _run(["dvc", "push", "-r", "s3cache"], built, **s3_endpoint).stdout
        assert re.search(r"\d+ files? pushed", pushed), pushed
        clone = tmp_path / "clone"
        _run(["git", "clone", "-q", str(built), str(clone)], tmp_path)
        _run(add, clone)
        _run(["dvc", *PULL], clone, **s3_endpoint)
        _assert_nothing_to_rebuild(clone, **s3_endpoint)
    finally:
        _run(["dvc", "remote", "remove", "--local", "s3cache"], built)
