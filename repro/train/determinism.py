"""Deterministic kernels for a train stage, so a rerun on the same machine gives the same bytes.

On a CPU torch's kernels are deterministic for a fixed thread count (repro.numerics pins
MKL's code path); `use_deterministic_algorithms(True, warn_only=True)` has always been set
there and stays as it is, so CPU outputs do not change.

On CUDA three things can make two runs of the same stage differ (torch's notes on
randomness/reproducibility; issue 17 item 5):
- cuBLAS picks reduction strategies by the workspace it has; a fixed workspace config
  (CUBLAS_WORKSPACE_CONFIG=:4096:8) makes it deterministic. torch parses the variable when
  it first creates a cuBLAS workspace, so it must be in the environment before the first
  matmul: `configure` runs at the start of the stage, before the model moves to the GPU.
  Ranks started by torchrun (repro.train.distributed) run the same stage code, so each sets
  it itself; they also inherit the parent's environment.
- kernels with atomics (index_add, scatter, some attention backward passes): with
  `use_deterministic_algorithms(True)` (not warn_only, which only warns on CUDA) torch
  takes the deterministic variant where one exists and raises where none does.
  `explain_nondeterminism` turns that error into one naming the op and the fix.
- flash-attn's backward (its own flag: transformers reads FLASH_ATTENTION_DETERMINISTIC at
  each call), cuDNN's algorithm search (benchmark) and Inductor's autotuning by on-device
  timing (torch._inductor.config.deterministic; fallback_random for RNG ops in compiled
  graphs).
`training.deterministic: false` keeps the fastest kernels; the stage then records in its
metrics that reruns are not bitwise and why, and `repro verify` judges such a stage's
rerun within its tolerance instead of failing it for a differing byte.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass

import torch

from repro.errors import ReproError

CUBLAS_WORKSPACE = ":4096:8"  # torch's documented deterministic choice (":16:8" is the small one)
_DETERMINISTIC_WORKSPACES = (":4096:8", ":16:8")

# Keys the train stage writes into its metrics when reruns may differ (read by repro.verify).
BITWISE_KEY, REASON_KEY = "reruns_bitwise", "reruns_bitwise_reason"


class NondeterministicOpError(ReproError):
    """An op without a deterministic CUDA kernel ran while the stage asked for determinism."""


@dataclass(frozen=True)
class Determinism:
    """What `configure` set, and whether a rerun can reproduce the stage's bytes."""

    bitwise: bool
    reason: str  # why reruns are not bitwise ("" when they are)
    settings: tuple[str, ...]  # what was set, for the log

    def metrics(self) -> dict:
        """Keys for the stage's metrics: nothing when reruns are bitwise (as before)."""
        return {} if self.bitwise else {BITWISE_KEY: False, REASON_KEY: self.reason}


_NOT_BITWISE = ("training.deterministic is false: the fastest CUDA kernels ran (cuBLAS, the "
                "attention backward and Inductor's autotuning may sum in another order on each run)")


def describe(deterministic: bool, device: torch.device) -> Determinism:
    """Whether a stage set up by `configure(deterministic, device)` reruns bit for bit (no side
    effects: the stage asks again when it writes its metrics)."""
    if device.type != "cuda":
        return Determinism(True, "", ("cpu: deterministic algorithms (warn only)",))
    if not deterministic:
        return Determinism(False, _NOT_BITWISE, ("fastest kernels",))
    return Determinism(True, "", ())


def configure(deterministic: bool, device: torch.device) -> Determinism:
    """Set torch up for `device` before the stage's first CUDA work (see the module doc)."""
    outcome = describe(deterministic, device)
    if device.type != "cuda":
        # unchanged from before: CPU kernels are deterministic for a fixed thread count; a few
        # ops without a deterministic flag only warn
        _deterministic_algorithms(True, warn_only=True)
        return outcome
    if not deterministic:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        _inductor(False)
        return outcome
    settings = []
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in _DETERMINISTIC_WORKSPACES:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        settings.append(f"CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE}"
                        + (" (CUDA was already initialised: a cuBLAS handle made before keeps "
                           "its workspace)" if torch.cuda.is_initialized() else ""))
    os.environ["FLASH_ATTENTION_DETERMINISTIC"] = "1"
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    settings += ["FLASH_ATTENTION_DETERMINISTIC=1", "deterministic algorithms (errors)",
                 "cudnn deterministic, no benchmark"]
    settings += _inductor(True)
    return Determinism(True, "", tuple(settings))


def _deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """torch.use_deterministic_algorithms(mode, warn_only=...), without the import of Inductor
    it makes to set Inductor's own flag: `import torch._inductor.config` loads torch._inductor
    and torch._dynamo, 1.2 s of every CPU train stage (python -X importtime, issue 19), which
    never compiles unless asked. Inductor's flag is then set by `inductor_follows_torch` before
    the stage's first torch.compile, so a compiled CPU run is configured as before."""
    if "torch._inductor.config" in sys.modules:  # loaded already: nothing to save
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


def inductor_follows_torch() -> None:
    """Before a torch.compile: Inductor's `deterministic` flag as torch.use_deterministic_algorithms
    sets it (`_deterministic_algorithms` left it unset where Inductor was not loaded yet)."""
    from torch._inductor import config

    config.deterministic = torch.are_deterministic_algorithms_enabled()


def _inductor(deterministic: bool) -> list[str]:
    """Inductor's switches where this torch has them: `deterministic` skips autotuning that
    benchmarks kernels with different numerics on the device; `fallback_random` runs RNG ops
    as eager does (no dropout here, but a compiled graph must not differ from eager's)."""
    try:
        from torch._inductor import config
    except ImportError:
        return []
    done = []
    for name in ("deterministic", "fallback_random"):
        if hasattr(config, name):
            setattr(config, name, deterministic)
            done.append(f"inductor {name}={deterministic}")
    return done


# torch's alert (ATen's alertNotDeterministic, torch._prims_common.alert_not_deterministic):
# "<op> does not have a deterministic implementation, but you set
# 'torch.use_deterministic_algorithms(True)'. ..."; <op> may hold spaces ("median CUDA with
# indices output"); torch.compile's wrappers put it on a line of its own after "RuntimeError: ".
_OP = re.compile(r"^(?:\w+(?:Error|Exception): )?(?P<op>[^\n]+?) does not have a "
                 r"deterministic implementation", re.M)


def _nondeterminism(exc: BaseException) -> str | None:
    """The op named by torch's "no deterministic implementation" error in `exc` or its causes
    (torch.compile wraps errors); "cuBLAS" for the workspace check; None for anything else."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        m = _OP.search(text)
        if m:
            return m.group("op").strip()
        if "CUBLAS_WORKSPACE_CONFIG" in text and "deterministic" in text:
            return "cuBLAS"
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def explain_nondeterminism():
    """Turn torch's error for an op without a deterministic CUDA kernel into one naming the
    op and the fix (other errors pass through unchanged)."""
    try:
        yield
    except Exception as e:
        op = _nondeterminism(e)
        if op is None:
            raise
        if op == "cuBLAS":
            raise NondeterministicOpError(
                "cuBLAS ran without a fixed workspace while training.deterministic is true: "
                "something used the GPU before the stage set CUBLAS_WORKSPACE_CONFIG",
                field="training.deterministic",
                fix=f"start the process with CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE}, or set "
                    "training.deterministic: false (reruns then match within a tolerance)") from e
        raise NondeterministicOpError(
            f"`{op}` has no deterministic CUDA kernel, and training.deterministic is true",
            field="training.deterministic",
            fix="set training.deterministic: false (the fastest kernels; the stage records that "
                "reruns are not bitwise and `repro verify` compares them within its tolerance), "
                "or choose another training.attention (the op may come from the attention "
                "kernel's backward pass)") from e


def setup_torch(world: int = 1, device: torch.device | None = None, deterministic: bool = True) -> int:
    """Threads and kernels for a stage that runs torch (train, teacherlogits, the benches):
    REPRO_NUM_THREADS, else the CPUs this process may use shared by `world` processes (float
    reductions depend on the count: compare reruns made with the same one), then `configure`.
    Returns the thread count."""
    threads = int(os.environ.get("REPRO_NUM_THREADS") or max(1, len(os.sched_getaffinity(0)) // world))
    torch.set_num_threads(threads)
    # before any CUDA work: cuBLAS reads its workspace config once
    configure(deterministic, device if device is not None else torch.device("cpu"))
    return threads
