"""The reproducibility certificate: each rebuilt stage's outputs against dvc.lock.

Verdicts, per stage:
- `exact`: every output's hash equals the one dvc.lock recorded.
- `within tolerance`: some outputs differ, and either the two runs' environments differ in
  something that changes float results (named in the certificate) or the stage's metrics
  say its reruns are not bitwise (`reruns_bitwise: false` and the reason, written by a
  train stage run with `training.deterministic: false` on a GPU, repro.train.determinism);
  and every differing file is within the stated tolerance (repro.verify.tolerance).
- `FAIL`: an output differs on an identical environment although the stage claims bitwise
  reruns (the stage is not deterministic), or beyond the tolerance, or in a format without
  a numeric comparison; or the stage did not rebuild; or its inputs were not the ones the
  lock recorded.
Machine records (`*.perf.json` timings, `*.env.json` fingerprints) are not compared by hash:
timings differ by nature, and fingerprints are what the comparison is about.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from repro import paths
from repro.environment import differences
from repro.verify.lockfile import LockedStage
from repro.verify.tolerance import FileComparison, Tolerance, compare_files

EXACT, TOLERANCE, FAIL = "exact", "within tolerance", "FAIL"

# Keys a stage's metrics carry when its reruns cannot be bitwise (repro.train.determinism
# writes them; not imported from there, so verify does not import torch to read a JSON file).
BITWISE_KEY, REASON_KEY = "reruns_bitwise", "reruns_bitwise_reason"
_METRICS_READ_LIMIT = 10 * 2 ** 20  # a metrics file is a few kB; never read a huge output whole


@dataclass
class StageVerdict:
    stage: str
    verdict: str
    reason: str = ""
    outputs_checked: int = 0
    files: list[FileComparison] = field(default_factory=list)
    environment_changes: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Certificate:
    tolerance: str
    environment: dict[str, Any]
    stages: list[StageVerdict]

    @property
    def passed(self) -> bool:
        return all(s.verdict != FAIL for s in self.stages)

    def counts(self) -> dict[str, int]:
        out = {EXACT: 0, TOLERANCE: 0, FAIL: 0}
        for s in self.stages:
            out[s.verdict] += 1
        return out

    def as_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "counts": self.counts(), "tolerance": self.tolerance,
                "environment": self.environment, "stages": [asdict(s) for s in self.stages]}


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(root: Path) -> dict[str, Path]:
    if root.is_file():
        return {root.name: root}
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _read_env(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _not_bitwise(outs, roots: tuple[Path, ...]) -> str | None:
    """Why the stage's reruns are not bitwise, as its JSON metrics (recorded or rebuilt) say;
    None when none of them says so."""
    for rel in sorted(outs):
        if not rel.endswith(".json") or paths.is_machine_record(rel):
            continue
        for root in roots:
            path = root / rel
            try:
                if not path.is_file() or path.stat().st_size > _METRICS_READ_LIMIT:
                    continue
            except OSError:
                continue
            data = _read_env(path)
            if isinstance(data, dict) and data.get(BITWISE_KEY) is False:
                reason = " ".join(str(data.get(REASON_KEY) or "").split())[:300]  # one table cell
                return reason or f"{rel} says {BITWISE_KEY}: false"
    return None


def _compare_output(rel: str, rebuilt: Path, recorded: Path, tol: Tolerance,
                    tolerate: bool) -> list[FileComparison]:
    """File-level comparison of one differing output (file or folder `rel`)."""
    if not recorded.exists():
        return [FileComparison(rel, False,
                               "hash differs from dvc.lock and the recorded output is not in the "
                               "workspace to compare with (run `dvc pull` or `dvc checkout`)")]
    new, old = _files(rebuilt), _files(recorded)
    out = [FileComparison(f"{rel}/{f}", False, "only in the rebuild" if f in new else "missing in the rebuild")
           for f in sorted(set(new) ^ set(old))]
    for f in sorted(set(new) & set(old)):
        if _md5(new[f]) == _md5(old[f]):
            continue
        shown = f"{rel}/{f}" if recorded.is_dir() else rel
        if tolerate:
            c = compare_files(new[f], old[f], tol)
            out.append(FileComparison(shown, c.within, c.detail))
        else:
            out.append(FileComparison(shown, False, "differs (bitwise)"))
    return out


def verify_stage(name: str, recorded: LockedStage | None, rebuilt: LockedStage | None,
                 root: Path, scratch: Path, tol: Tolerance) -> StageVerdict:
    if recorded is None:
        return StageVerdict(name, FAIL, "dvc.lock has no record of this stage: run `dvc repro` "
                                        "and commit dvc.lock before verifying")
    if rebuilt is None or set(rebuilt.outs) != set(recorded.outs):
        return StageVerdict(name, FAIL, "the stage did not rebuild (see the DVC output above)")
    changed_params = sorted(k for k in set(recorded.params) | set(rebuilt.params)
                            if recorded.params.get(k) != rebuilt.params.get(k))
    if changed_params:
        return StageVerdict(name, FAIL, "its settings in params.yaml differ from those dvc.lock "
                            f"recorded: {', '.join(changed_params)} (run `dvc repro` and commit "
                            "the lock, or `repro explain` to see the change)")
    changed_inputs = [p for p, d in recorded.deps.items()
                      if p in rebuilt.deps and rebuilt.deps[p].md5 != d.md5]
    if changed_inputs:
        return StageVerdict(name, FAIL, "its inputs differ from those dvc.lock recorded: "
                            f"{', '.join(changed_inputs)} (the workspace is not what the lock "
                            "describes; `repro explain` says what changed)")
    env_changes: dict[str, list[Any]] = {}
    env_out = next((p for p in recorded.outs if p.endswith(".env.json")), None)
    if env_out:
        old_env, new_env = _read_env(root / env_out), _read_env(scratch / env_out)
        if old_env and new_env:
            env_changes = {k: list(v) for k, v in
                           differences(old_env.get("numerics"), new_env.get("numerics")).items()}
        elif old_env is None:
            env_changes = {"(recorded fingerprint)": ["missing", "present"]}
    differing = [p for p, o in recorded.outs.items()
                 if not paths.is_machine_record(p) and rebuilt.outs[p].md5 != o.md5]
    checked = sum(1 for p in recorded.outs if not paths.is_machine_record(p))
    if not differing:
        return StageVerdict(name, EXACT, "", checked, environment_changes=env_changes)
    not_bitwise = _not_bitwise(recorded.outs, (root, scratch))
    tolerate = bool(env_changes) or not_bitwise is not None
    files: list[FileComparison] = []
    for p in differing:
        files += _compare_output(p, scratch / p, root / p, tol, tolerate)
    if not tolerate:
        return StageVerdict(name, FAIL, "outputs differ on an identical environment: the stage "
                            f"is not deterministic ({', '.join(differing)})", checked, files)
    why = ([f"environment differs in {len(env_changes)} field(s)"] if env_changes else []) + \
          ([f"reruns are not bitwise: {not_bitwise}"] if not_bitwise is not None else [])
    if all(f.within for f in files):
        return StageVerdict(name, TOLERANCE, f"{'; '.join(why)}; outputs agree within {tol}",
                            checked, files, env_changes)
    fix = ("; judge with a looser --rtol/--atol, or train with training.deterministic: true for "
           "bitwise reruns" if not_bitwise is not None else "")
    return StageVerdict(name, FAIL, f"outputs differ beyond {tol} ({'; '.join(why)}){fix}", checked,
                        files, env_changes)


def render_text(cert: Certificate) -> str:
    """The certificate for a terminal and for certificate.md."""
    counts = cert.counts()
    lines = [f"# Reproducibility certificate: {'PASS' if cert.passed else 'FAIL'}", "",
             f"{len(cert.stages)} stage(s) rebuilt: {counts[EXACT]} exact, {counts[TOLERANCE]} "
             f"within tolerance ({cert.tolerance}), {counts[FAIL]} failed.", ""]
    num = cert.environment.get("numerics", {})
    torch = num.get("torch") or {}
    cpu = num.get("cpu", {})
    lines += ["## Environment of this rebuild", "",
              f"- Python {num.get('python')}; CPU {cpu.get('model')} ({cpu.get('arch')}, "
              f"{', '.join(cpu.get('vector_flags', []))}; {cpu.get('usable_cpus')} usable)",
              f"- torch {torch.get('version', num.get('packages', {}).get('torch'))}"
              + (f", kernels {torch.get('cpu_capability')}, {torch.get('num_threads')} threads"
                 if torch else "")
              + (f"; GPU {torch['gpu']['name']}" if torch.get("gpu") else "; no GPU"),
              "- packages: " + ", ".join(f"{k} {v}" for k, v in num.get("packages", {}).items() if v),
              f"- requirements.lock sha256 {num.get('lock_sha256')}; installed vs lock: "
              + (", ".join(f"{k} ({v})" for k, v in num.get("lock_drift", {}).items()) or "no drift"),
              "", "## Stages", "", "| stage | verdict | outputs | note |", "|---|---|---|---|"]
    for s in cert.stages:
        lines.append(f"| {s.stage} | {s.verdict} | {s.outputs_checked} | {s.reason} |")
    detailed = [s for s in cert.stages if s.files or s.environment_changes]
    if detailed:
        lines += ["", "## Differences", ""]
        for s in detailed:
            lines.append(f"- **{s.stage}** ({s.verdict})")
            for key, (old, new) in sorted(s.environment_changes.items()):
                lines.append(f"  - environment `{key}`: {old} → {new}")
            for f in s.files:
                lines.append(f"  - `{f.path}`: {f.detail}")
    return "\n".join(lines) + "\n"
