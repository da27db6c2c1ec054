"""The model card (README.md) of an exported checkpoint, as the Hugging Face hub reads it: YAML
front matter (library_name, license, datasets, tags, pipeline_tag: the hub's model-card
metadata, https://huggingface.co/docs/hub/model-cards#model-card-metadata) and a Markdown
body saying what the model is, what it was trained on and how, and where it came from.

Written by the train stage into every checkpoint it exports, from the stage's own settings,
so the same settings give the same bytes (no time, no git revision: a stage output that
changed with every commit would never be reproduced exactly; `repro publish --model` adds the
revision and the scores when it uploads, `publication_section`). Scores do not exist yet when
a checkpoint is written: the card says where they will be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

CARD_FILE = "README.md"
LICENSE_UNSET = "unknown"
"""The hub's value for a license nobody chose: a spec does not choose one (the weights derive
from the training data, whose licenses the spec's sources carry), so the publisher does
(`repro publish --license`)."""
TAGS = ("repro", "smollm3", "pretraining", "text-generation")


@dataclass(frozen=True)
class CardFacts:
    """What the card states, as plain values (the train stage fills it from its config)."""

    stage_id: str
    experiment: str
    phase: str
    architecture: Mapping[str, Any]
    """The model spec (hidden size, layers, heads, NoPE interval, RoPE theta, ...)."""
    params_total: int
    params_non_embedding: int
    mixture: Mapping[str, float]
    """Dataset -> sampling weight in this phase."""
    tokens_phase: int
    tokens_total: int
    global_step: int
    steps: int
    seq_len: int
    batch_tokens: int
    optimizer: Mapping[str, Any]
    schedule: Mapping[str, Any]
    seed: int
    data_seed: int
    precision: str
    state_path: str
    """Where the optimizer and trainer state to continue from lie (the train stage's `state`
    output), relative to the export folder; "" for a snapshot, which is never continued."""
    snapshot: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Further `key: value` facts for the Training section (MTP, distillation...)."""


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _facts(items: Mapping[str, Any]) -> list[str]:
    return [f"- {k}: {_value(v)}" for k, v in items.items() if v is not None]


def front_matter(facts: CardFacts, license: str = LICENSE_UNSET) -> dict[str, Any]:
    return {"library_name": "transformers", "license": license,
            "datasets": sorted(facts.mixture), "tags": list(TAGS),
            "pipeline_tag": "text-generation"}


def render(facts: CardFacts, license: str = LICENSE_UNSET) -> str:
    """README.md text: front matter, then the body. Deterministic in `facts`."""
    meta = yaml.safe_dump(front_matter(facts, license), sort_keys=True, default_flow_style=False)
    what = "a snapshot taken during" if facts.snapshot else "the checkpoint at the end of"
    arch = dict(facts.architecture)
    schedule = dict(facts.schedule)
    lines = [
        "---", meta.rstrip("\n"), "---", "",
        f"# {facts.experiment} ({facts.phase}, step {facts.global_step:,})", "",
        f"A SmolLM3-architecture causal language model trained from scratch by repro: {what} "
        f"training phase `{facts.phase}` of experiment `{facts.experiment}`. Load it with "
        "`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` "
        "(transformers' SmolLM3ForCausalLM; no custom code).", "",
        "## Architecture", "",
        f"- parameters: {facts.params_total:,} ({facts.params_non_embedding:,} without embeddings)",
        *_facts(arch), "",
        "## Data", "",
        f"Sampling weights of this phase's mixture (dataset names as the spec gives them; their "
        f"sources and curation steps are in the spec and in the curate stages' metrics):", "",
        *(f"- {name}: {weight:g}" for name, weight in sorted(facts.mixture.items())), "",
        "## Training", "",
        f"- tokens trained: {facts.tokens_total:,} in all, {facts.tokens_phase:,} in this phase "
        f"({facts.steps:,} steps of {facts.batch_tokens:,} tokens)",
        f"- context: {facts.seq_len:,} tokens (the tokenizer's model_max_length)",
        f"- global step: {facts.global_step:,}",
        f"- seed: {facts.seed} (data order seed {facts.data_seed})",
        f"- precision: {facts.precision}",
        "- optimizer: " + ", ".join(f"{k} {_value(v)}" for k, v in facts.optimizer.items()),
        "- schedule (multiplies the optimizer's LR): "
        + ", ".join(f"{k} {_value(v)}" for k, v in schedule.items()),
        *_facts(facts.extra), "",
        "## Scores", "",
        "Not known when this checkpoint was written. The evaluate stage of this run scores it "
        "with lm-eval into `results/eval/<evaluate stage>/` (per-item samples and provenance) "
        "and `metrics/<evaluate stage>/` (DVC metrics); the report comparing the experiments "
        "is under `reports/`. `repro publish --model` adds the reports' final scores here when "
        "it uploads the checkpoint.", "",
        "## Provenance", "",
        f"- stage: `{facts.stage_id}` (its settings are the `{facts.stage_id}` section of the "
        "pipeline's params.yaml; `dvc.lock` holds the hashes of its inputs and of this folder)",
        f"- spec: the experiment `{facts.experiment}` under `specs/`, compiled by `repro compile`",
        "- git revision: added by `repro publish --model` (a stage output holds none, so that "
        "it is reproduced byte for byte)",
        ("- optimizer and trainer state (to continue training): the stage's `state` output, "
         f"`{facts.state_path}/` relative to this folder, not part of it" if facts.state_path else
         "- a snapshot: no optimizer state is kept for it"),
    ]
    return "\n".join(lines) + "\n"


def split(text: str) -> tuple[dict[str, Any], str]:
    """(front matter, body) of a card; ValueError if it has no YAML front matter."""
    if not text.startswith("---\n"):
        raise ValueError("the card does not start with YAML front matter (---)")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise ValueError("the card's YAML front matter is not closed (---)")
    meta = yaml.safe_load(text[4:end + 1]) or {}
    if not isinstance(meta, dict):
        raise ValueError("the card's YAML front matter is not a mapping")
    return meta, text[end + len("\n---\n"):]


def join(meta: Mapping[str, Any], body: str) -> str:
    return "---\n" + yaml.safe_dump(dict(meta), sort_keys=True, default_flow_style=False) \
        + "---\n" + body
