"""`repro probe`: pick the probed settings from params.yaml, run the probe, compare."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro import yamlio
from repro.errors import ReproError
from repro.stages.configs import TokenizerConfig, TrainConfig


@dataclass(frozen=True)
class ProbeSettings:
    adamw: TrainConfig
    """The first first-phase train stage with AdamW, in params.yaml's order."""
    muon: TrainConfig | None
    """The first first-phase train stage with Muon, if the pipeline has one."""
    vocab_size: int
    """The pipeline's tokenizer vocabulary (the model's embedding and head size)."""
    stages: tuple[str, ...]
    """The stage ids the settings come from (for the output)."""

    def as_dict(self) -> dict[str, Any]:
        return {"adamw": self.adamw.model_dump(mode="json"),
                "muon": self.muon.model_dump(mode="json") if self.muon else None,
                "vocab_size": self.vocab_size}


def _sections(params: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    # stage ids are `<kind>-<label>-<hash>` (repro.compile), in the compiler's order
    return [(sid, sec) for sid, sec in params.items()
            if sid.split("-", 1)[0] == kind and isinstance(sec, dict)]


def probe_settings(params_file: Path, vocab_size: int | None = None) -> ProbeSettings:
    params = yamlio.safe_load(params_file.read_text(encoding="utf-8")) or {}
    trains = [(sid, TrainConfig.model_validate(sec)) for sid, sec in _sections(params, "train")]
    first = [(sid, c) for sid, c in trains if c.step_start == 0]
    adamw = next(((s, c) for s, c in first if c.optimizer.kind == "adamw"), None)
    muon = next(((s, c) for s, c in first if c.optimizer.kind == "muon"), None)
    tokenizers = _sections(params, "tokenizer")
    if adamw is None or not tokenizers:
        raise ReproError(f"{params_file} has no first-phase AdamW train stage and tokenizer to "
                         "probe", file=str(params_file),
                         fix="run `repro compile` (the quickstart's params.yaml has both), or "
                             "pass --params of a pipeline that trains with AdamW")
    vocab = vocab_size or getattr(TokenizerConfig.model_validate(tokenizers[0][1]).tokenizer,
                                  "vocab_size", None)
    if vocab is None:
        raise ReproError(f"{tokenizers[0][0]} loads a pretrained tokenizer: its vocabulary size "
                         "is not in params.yaml", file=str(params_file),
                         fix="pass --vocab-size with the tokenizer's size")
    return ProbeSettings(adamw[1], muon[1] if muon else None, vocab,
                         tuple(s for s, _ in (adamw, muon) if s))
