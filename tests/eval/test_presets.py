"""Evaluation presets: names resolve to tasks of the installed lm-eval, validation,
resolution order and per-task caps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from repro.eval.presets import PRESETS
from repro.eval.registry import registered_names
from repro.spec.schema import EvaluationSpec


def test_preset_tasks_exist_in_installed_lm_eval():
    # the committed index of lm-eval's registry, which tests/eval/test_registry.py compares
    # with the installed lm-eval
    known = registered_names()
    for name, preset in PRESETS.items():
        missing = [t for t in preset.tasks if t not in known]
        assert not missing, f"preset {name}: not lm-eval tasks: {missing}"
    # FACTS 4.3 names SIQA: lm-eval calls it social_iqa
    assert "social_iqa" in PRESETS["fineweb_early_signal"].tasks
    assert {"arc_easy", "arc_challenge"} <= set(PRESETS["fineweb_early_signal"].tasks)
    assert PRESETS["fineweb_early_signal"].max_samples == 1000


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValidationError, match=r"unknown evaluation preset.*'fineweb'.*"
                                              r"known: \['fineweb_early_signal', 'smollm3_base'\]"):
        EvaluationSpec(presets=["fineweb"])


def test_resolved_tasks_are_deduplicated_in_order():
    ev = EvaluationSpec(presets=["smollm3_base", "fineweb_early_signal"],
                        tasks=["piqa", "lambada_openai"])
    tasks = ev.standard_tasks
    assert tasks[:9] == list(PRESETS["smollm3_base"].tasks)
    assert tasks[-1] == "lambada_openai" and "social_iqa" in tasks
    assert len(tasks) == len(set(tasks))
    limits = ev.task_limits()
    assert limits["social_iqa"] == 1000 and limits["piqa"] == 1000  # from the FineWeb preset
    assert limits["lambada_openai"] is None
    assert EvaluationSpec(presets=["fineweb_early_signal"], limit=50).task_limits()["piqa"] == 50
    assert EvaluationSpec(presets=["smollm3_base"]).task_limits()["boolq"] is None


def test_presets_alone_are_enough_tasks():
    assert EvaluationSpec(presets=["smollm3_base"]).tasks == []
    with pytest.raises(ValidationError, match="add `tasks`, `presets` or `local_tasks`"):
        EvaluationSpec()


def test_backend_fields_are_validated():
    EvaluationSpec(tasks=["piqa"], backend="accelerate", num_processes=8)
    EvaluationSpec(tasks=["piqa"], backend="vllm", tensor_parallel_size=2,
                   gpu_memory_utilization=0.5)
    with pytest.raises(ValidationError, match="num_processes is 2.*backend: accelerate"):
        EvaluationSpec(tasks=["piqa"], num_processes=2)
    with pytest.raises(ValidationError, match="tensor_parallel_size is set.*backend: vllm"):
        EvaluationSpec(tasks=["piqa"], backend="accelerate", tensor_parallel_size=2)
    with pytest.raises(ValidationError):
        EvaluationSpec(tasks=["piqa"], backend="vllm", tensor_parallel_size=0)
    with pytest.raises(ValidationError):
        EvaluationSpec(tasks=["piqa"], backend="accelerate", num_processes=0)
    with pytest.raises(ValidationError):
        EvaluationSpec(tasks=["piqa"], backend="vllm", gpu_memory_utilization=1.5)
    with pytest.raises(ValidationError):
        EvaluationSpec(tasks=["piqa"], backend="tpu")
    with pytest.raises(ValidationError):
        EvaluationSpec(tasks=["piqa"], on_task_error="ignore")
    defaults = EvaluationSpec(tasks=["piqa"])
    assert (defaults.cache_requests, defaults.backend, defaults.on_task_error) == (True, "hf", "fail")
