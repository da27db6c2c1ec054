"""`repro verify`: rebuild stages in a scratch copy of the workspace and certify that their
outputs are the ones dvc.lock records (see certificate.py for the verdicts)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from repro import paths
from repro.environment import fingerprint
from repro.errors import ReproError
from repro.verify.certificate import Certificate, verify_stage
from repro.verify.lockfile import check_workspace_files, load_mapping, parse_lock, stage_entries
from repro.verify.scratch import make_scratch, new_folder, run_dvc_repro, upstream_inputs
from repro.verify.tolerance import Tolerance


def verify(root: Path, stages: list[str], tol: Tolerance, scratch: Path | None = None,
           keep: bool = False) -> tuple[Certificate, Path]:
    """Rebuild `stages` (all when empty) in a scratch copy; return the certificate and the
    scratch folder (removed unless `keep`)."""
    import torch  # noqa: F401  (so the fingerprint describes the torch build the stages use)

    dvc_yaml, lock_path = root / str(paths.DVC_YAML), root / str(paths.DVC_LOCK)
    if not dvc_yaml.is_file():
        raise ReproError(f"no {dvc_yaml}: run `repro compile` first")
    if not lock_path.is_file():
        raise ReproError(f"no {lock_path}: nothing recorded to verify against; run `dvc repro` first")
    check_workspace_files(root)
    dvc_stages = stage_entries(load_mapping(dvc_yaml.read_text(encoding="utf-8"), "dvc.yaml"),
                               "dvc.yaml")
    unknown = [s for s in stages if s not in dvc_stages]
    if unknown:
        raise ReproError(f"no such stage(s) in dvc.yaml: {', '.join(unknown)}; "
                         "`dvc stage list` names them")
    targets = [s for s in dvc_stages if s in stages] if stages else list(dvc_stages)
    recorded = parse_lock(lock_path.read_text(encoding="utf-8"))
    # only what this run created is removed afterwards: its own temporary folder, or the
    # --scratch folder (and the parents it had to make), never a folder that was there before
    if scratch is None:
        created = Path(tempfile.mkdtemp(prefix="repro-verify-"))
        scratch = created / "ws"
    else:
        created = new_folder(Path(scratch))
    try:
        make_scratch(root, scratch, upstream_inputs(targets, dvc_stages) if stages else [])
        run_dvc_repro(scratch, targets if stages else None)
        rebuilt_lock = scratch / str(paths.DVC_LOCK)
        rebuilt = (parse_lock(rebuilt_lock.read_text(encoding="utf-8"), str(rebuilt_lock))
                   if rebuilt_lock.is_file() else {})
        verdicts = [verify_stage(s, recorded.get(s), rebuilt.get(s), root, scratch, tol)
                    for s in targets]
        return Certificate(str(tol), fingerprint(), verdicts), scratch
    finally:
        if not keep:
            shutil.rmtree(created, ignore_errors=True)
