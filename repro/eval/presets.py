"""Named suites of standard lm-eval tasks (`evaluation.presets`).

A preset is data: lm-eval task names, checked against the installed lm-eval's task registry
(`lm_eval/tasks/**.yaml`, lm-eval 0.4.13), plus the per-task sample cap of the recipe it
copies. The recipes ran lighteval; lm-eval's nearest tasks are used, and where lm-eval's
prompt differs from the recipe's (see the notes) the scores are not comparable to the
published ones, only between our own runs.

This module imports nothing from repro, so the spec schema can validate preset names with it.
Spec validation accepts a preset's task names without reading lm-eval's task index
(repro.eval.registry): tests/eval/test_presets.py checks them against it once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    tasks: tuple[str, ...]
    """lm-eval task or group names, in display order."""
    max_samples: int | None
    """At most this many documents per (leaf) task; None: all."""
    source: str
    """Where the suite comes from (FACTS section)."""


# MMLU in cloze form ("Question: ...\nAnswer:" scored over the full answer texts): both
# recipes use cloze formulations, and lm-eval's letter-choice `mmlu` stays at chance for
# models this small. lm-eval's `commonsense_qa` exists only in the letter-choice form.
_MMLU_CLOZE = "mmlu_continuation"

PRESETS: dict[str, Preset] = {
    # FACTS 4.3: FineWeb early-signal tasks: CommonSense QA, HellaSwag, OpenBook QA, PIQA,
    # SIQA (lm-eval: `social_iqa`), WinoGrande, ARC (easy + challenge), MMLU; "max 1000
    # samples each".
    "fineweb_early_signal": Preset(
        tasks=("commonsense_qa", "hellaswag", "openbookqa", "piqa", "social_iqa", "winogrande",
               "arc_easy", "arc_challenge", _MMLU_CLOZE),
        max_samples=1000,
        source="FACTS 4.3 (FineWeb paper section 3.1, App. C)"),
    # FACTS 4.5: SmolLM3 base suite, its 0-shot cloze part available in lm-eval. Left out:
    # mmlu_pro (lm-eval's is 5-shot generative CoT), gsm8k and math (few-shot generation),
    # belebele, global_mmlu, flores200 (multilingual).
    "smollm3_base": Preset(
        tasks=("hellaswag", "arc_easy", "arc_challenge", _MMLU_CLOZE, "boolq", "commonsense_qa",
               "winogrande", "openbookqa", "piqa"),
        max_samples=None,
        source="FACTS 4.5 (smollm text/evaluation/smollm3/smollm3_base.txt)"),
}


def unknown_presets(names: list[str]) -> list[str]:
    """The names among `names` that are not presets."""
    return [n for n in names if n not in PRESETS]
