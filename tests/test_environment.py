"""The environment fingerprint and the pinned lock (issue 6: a certificate can only name a
difference between two machines if every stage records what it ran on, and the lock pins
what was installed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from repro.environment import differences, fingerprint, installed_versions, lock_drift, locked_versions
from repro.verify.lockfile import declared_stage_id

REPO = Path(__file__).resolve().parents[1]


def test_lock_pins_every_requirement_exactly():
    lines = [ln.split("#", 1)[0].strip() for ln in (REPO / "requirements.lock").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^=<>~!*\s]+", r) for r in reqs), \
        [r for r in reqs if "==" not in r or any(c in r for c in "<>~*")]
    pins = locked_versions(REPO / "requirements.lock")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    for dep in declared:
        name = re.split(r"[\[<>=~!; ]", dep, maxsplit=1)[0]
        if name in ("pytesseract",):  # optional OCR extra: needs a system binary, not installed by make
            continue
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, f"{name} is declared but not pinned in requirements.lock"


def test_installed_environment_matches_the_lock():
    """What `make install` built is what the lock says: nothing installed by hand, no
    version drift (a local build tag like torch's `+cpu` is not drift)."""
    import setuptools  # noqa: F401  puts its vendored packages on sys.path: not installed ones

    assert lock_drift() == {}, "installed packages differ from requirements.lock: " + json.dumps(lock_drift())


def test_installed_versions_read_from_headers_equal_importlibs_full_parse():
    """The header-only reader gives what importlib.metadata's full parse gives, for every
    distribution in site-packages."""
    import sysconfig
    from importlib import metadata

    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    full: dict[str, str] = {}
    for dist in metadata.distributions(path=site):
        full.setdefault(re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(), dist.version)
    fast = installed_versions()
    assert len(fast) > 100 and fast == full
    assert fast["torch"].startswith("2.") and fast["pydantic"] == metadata.version("pydantic")


def test_drift_is_reported_for_other_versions(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# comment\nclick==0.0.1\n")
    drift = lock_drift(lock)
    assert drift["click"].startswith("installed ") and drift["click"].endswith("locked 0.0.1")
    assert any(v.endswith("not pinned") for v in drift.values())


def test_fingerprint_is_deterministic_and_holds_no_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("HF_TOKEN", "hf_s3cr3t")
    import torch  # noqa: F401  the torch section appears once torch is imported

    first, second = fingerprint(), fingerprint()
    assert first == second
    text = json.dumps(first)
    assert "s3cr3t" not in text
    num = first["numerics"]
    assert num["torch"]["num_threads"] >= 1 and num["torch"]["cpu_capability"]
    assert num["packages"]["torch"].startswith("2.13.0")
    assert set(num["env"]) >= {"MKL_CBWR", "REPRO_NUM_THREADS"}


def test_fingerprint_of_a_process_without_torch_leaves_torch_out():
    code = ("import json, sys; from repro.environment import fingerprint; f = fingerprint(); "
            "print(json.dumps([f['numerics']['torch'], 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [None, False]


def test_differences_name_leaf_paths():
    old = {"cpu": {"vector_flags": ["avx2"]}, "torch": {"num_threads": 2}}
    new = {"cpu": {"vector_flags": ["avx2", "avx512f"]}, "torch": {"num_threads": 4}}
    assert differences(old, new) == {"cpu.vector_flags": (["avx2"], ["avx2", "avx512f"]),
                                     "torch.num_threads": (2, 4)}
    assert differences(old, old) == {}


def test_every_stage_declares_its_fingerprint():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, entry in stages.items():
        # the record is named by the stage id (its settings hash), as its other outputs are
        stage_id = declared_stage_id(entry)
        assert stage_id.startswith(name.split("-")[0] + "-"), (name, stage_id)
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in entry.get("outs", [])]
        assert f"metrics/{stage_id}.env.json" in outs, name
        assert f"--out env=metrics/{stage_id}.env.json" in entry["cmd"], name
