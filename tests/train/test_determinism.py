"""Determinism settings of a train stage (repro.train.determinism).

The CUDA settings are process-wide switches and environment variables, not kernels: they are
set and checked here on any machine (and restored after each test). That two GPU runs give
identical weights, and that a nondeterministic CUDA op is refused by name, runs on a GPU."""

from __future__ import annotations

import pytest
import torch
from torch._prims_common import alert_not_deterministic

from repro.errors import ReproError
from repro.train import determinism
from repro.train.determinism import (
    BITWISE_KEY,
    REASON_KEY,
    NondeterministicOpError,
    configure,
    describe,
    explain_nondeterminism,
)

CUDA, CPU = torch.device("cuda", 0), torch.device("cpu")


@pytest.fixture(autouse=True)
def restore_torch(monkeypatch):
    """Put back every switch configure touches (monkeypatch restores the variables)."""
    for var in ("CUBLAS_WORKSPACE_CONFIG", "FLASH_ATTENTION_DETERMINISTIC"):
        monkeypatch.delenv(var, raising=False)
    from torch._inductor import config as inductor

    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             {n: getattr(inductor, n) for n in ("deterministic", "fallback_random") if hasattr(inductor, n)})
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
    for n, v in saved[4].items():
        setattr(inductor, n, v)


@pytest.mark.parametrize("deterministic", [True, False])
def test_cpu_keeps_deterministic_kernels_that_warn_whatever_the_setting(deterministic):
    outcome = configure(deterministic, CPU)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()  # as before this module
    assert outcome.bitwise and outcome.metrics() == {}  # CPU metrics gain no key
    import os

    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_cpu_setup_leaves_inductor_unloaded_until_something_compiles():
    """A CPU stage that never compiles does not pay for importing Inductor (~1.2 s) to set its
    flag; the first torch.compile (repro.stages.train.compile_trunk, the flex kernel) sets it
    as torch.use_deterministic_algorithms would have. In a fresh process: this one has
    Inductor loaded already."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from repro.train import determinism\n"
            "determinism.setup_torch()\n"
            "assert torch.are_deterministic_algorithms_enabled()\n"
            "assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
            "assert 'torch._inductor' not in sys.modules, 'Inductor was imported'\n"
            "determinism.inductor_follows_torch()\n"
            "from torch._inductor import config\n"
            "assert config.deterministic is True\n"
            "torch.use_deterministic_algorithms(False)\n"
            "determinism.inductor_follows_torch()\n"
            "assert config.deterministic is False\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_cuda_deterministic_sets_what_cuda_needs():
    import os

    from torch._inductor import config as inductor

    outcome = configure(True, CUDA)  # switches only: no GPU work, so it runs anywhere
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert os.environ["FLASH_ATTENTION_DETERMINISTIC"] == "1"  # transformers' flash path reads it
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()  # errors, not warnings
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert inductor.deterministic and inductor.fallback_random
    assert outcome.bitwise and outcome.metrics() == {}
    assert any("CUBLAS_WORKSPACE_CONFIG" in s for s in outcome.settings)


def test_a_users_deterministic_workspace_choice_is_kept(monkeypatch):
    import os

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    configure(True, CUDA)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")  # not one torch accepts as deterministic
    configure(True, CUDA)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_cuda_not_deterministic_runs_the_fastest_kernels_and_says_so():
    from torch._inductor import config as inductor

    outcome = configure(False, CUDA)
    assert not torch.are_deterministic_algorithms_enabled() and not inductor.deterministic
    assert not outcome.bitwise
    metrics = outcome.metrics()
    assert metrics[BITWISE_KEY] is False and "training.deterministic is false" in metrics[REASON_KEY]
    assert describe(False, CUDA) == outcome and describe(True, CUDA).bitwise
    assert describe(False, CPU).bitwise  # CPU kernels are deterministic either way


def test_an_op_without_a_deterministic_kernel_is_named_with_the_fix():
    torch.use_deterministic_algorithms(True)
    with pytest.raises(NondeterministicOpError) as e:
        with explain_nondeterminism():
            alert_not_deterministic("median CUDA with indices output")  # torch's own alert
    err = e.value
    assert isinstance(err, ReproError) and err.field == "training.deterministic"
    assert "`median CUDA with indices output` has no deterministic CUDA kernel" in str(err)
    assert "training.deterministic: false" in err.fix and "training.attention" in err.fix
    assert isinstance(err.__cause__, RuntimeError)


def test_the_op_is_found_through_torch_compiles_wrapping():
    torch.use_deterministic_algorithms(True)
    with pytest.raises(NondeterministicOpError, match="`_histc_cuda with floating point input`"):
        with explain_nondeterminism():
            try:
                alert_not_deterministic("_histc_cuda with floating point input")
            except RuntimeError as inner:
                # what dynamo raises: the original error quoted after the backend's name
                raise RuntimeError(f"backend='inductor' raised:\nRuntimeError: {inner}") from inner


def test_the_cublas_workspace_error_says_how_to_start_the_process():
    message = ("Deterministic behavior was enabled with either `torch.use_deterministic_algorithms(True)` "
               "or `at::Context::setDeterministicAlgorithms(true)`, but this operation is not "
               "deterministic because it uses CuBLAS and you have CUDA >= 10.2. To enable "
               "deterministic behavior in this case, you must set an environment variable before "
               "running your PyTorch application: CUBLAS_WORKSPACE_CONFIG=:4096:8 or "
               "CUBLAS_WORKSPACE_CONFIG=:16:8.")
    with pytest.raises(NondeterministicOpError, match="start the process with CUBLAS_WORKSPACE_CONFIG=:4096:8"):
        with explain_nondeterminism():
            raise RuntimeError(message)


def test_other_errors_pass_through_unchanged():
    with pytest.raises(ValueError, match="^unrelated$"):
        with explain_nondeterminism():
            raise ValueError("unrelated")


# ------------------------------------------------------------------------------ GPU


def _train_tiny(steps: int = 3) -> dict[str, torch.Tensor]:
    from repro.model.build import TokenIds, build_model
    from repro.spec.schema import ModelSpec

    spec = ModelSpec(hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=512,
                     max_position_embeddings=256)
    model = build_model(spec, TokenIds(vocab_size=1024, bos=0, eos=0, pad=1), 0).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        ids = torch.randint(2, 1024, (4, 128), generator=gen).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_two_gpu_runs_give_identical_weights():
    configure(True, CUDA)
    with explain_nondeterminism():
        first, second = _train_tiny(), _train_tiny()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_nondeterministic_cuda_op_is_refused_by_name():
    configure(True, CUDA)
    with pytest.raises(NondeterministicOpError, match="histc"):
        with explain_nondeterminism():
            torch.histc(torch.rand(100, device="cuda"), bins=10)


def test_module_records_the_keys_verify_reads():
    from repro.verify import certificate

    assert determinism.BITWISE_KEY == certificate.BITWISE_KEY
