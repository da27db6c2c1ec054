"""`repro probe`: pick the probed settings from the params files, run the probe, compare."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from repro import paths, yamlio
from repro.errors import ReproError
from repro.spec.load import SpecError, validation_issues
from repro.stages import kind as stage_kind
from repro.stages.configs import TokenizerConfig, TrainConfig

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ProbeSettings:
    adamw: TrainConfig
    """The first first-phase train stage with AdamW, in params.yaml's order."""
    muon: TrainConfig | None
    """The first first-phase train stage with Muon, if the pipeline has one."""
    vocab_size: int
    """The pipeline's tokenizer vocabulary (the model's embedding and head size)."""
    stages: tuple[str, ...]
    """The stages (names) the settings come from (for the output)."""

    def as_dict(self) -> dict[str, Any]:
        """What the probe computes from: each config without its execution-only fields (the
        checkpoint interval, the launcher), which change neither a stage's id nor a number
        the probe hashes, so a reference stays valid across them."""
        exclude = stage_kind("train").identity_exclude()
        return {"adamw": self.adamw.model_dump(mode="json", exclude=exclude),
                "muon": self.muon.model_dump(mode="json", exclude=exclude) if self.muon else None,
                "vocab_size": self.vocab_size}


def _sections(params: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    # sections are stage names, `<kind>-<label>` (repro.compile.graph), in the compiler's order
    return [(sid, sec) for sid, sec in params.items()
            if sid.split("-", 1)[0] == kind and isinstance(sec, dict)]


def _validated(model: type[M], sid: str, section: dict[str, Any], display: str) -> M:
    """A params.yaml section checked with its stage's model, errors located as `repro stage`
    reports them (an `-S` override may have broken it)."""
    try:
        return model.model_validate(section)
    except ValidationError as e:
        raise SpecError([ReproError(i.message, fix=i.fix, file=i.file, line=i.line,
                                    field=f"{sid}.{i.field}" if i.field else sid)
                         for i in validation_issues(e, section, {}, display, model)]) from None


def _read(params_file: Path) -> dict[str, Any]:
    display = str(params_file)
    try:
        params = yamlio.safe_load(params_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ReproError(f"cannot read params: {e}", file=display, fix="run `repro compile`") from None
    if not isinstance(params, dict):
        raise ReproError("is not a mapping of stage names to their settings", file=display,
                         fix="run `repro compile` to rewrite it")
    return params


def probe_settings(params_file: Path, vocab_size: int | None = None) -> ProbeSettings:
    """The settings of the pipeline whose params.yaml is `params_file`: its train stages
    there, its tokenizer in params.data.yaml beside it (the data stages' file, repro.paths),
    or in `params_file` itself where that holds one."""
    display = str(params_file)
    params = _read(params_file)
    data_file = params_file.with_name(paths.DATA_PARAMS_YAML.name)
    data = _read(data_file) if data_file != params_file and data_file.is_file() else {}
    trains = [(sid, _validated(TrainConfig, sid, sec, display))
              for sid, sec in _sections(params, "train")]
    first = [(sid, c) for sid, c in trains if c.step_start == 0]
    adamw = next(((s, c) for s, c in first if c.optimizer.kind == "adamw"), None)
    muon = next(((s, c) for s, c in first if c.optimizer.kind == "muon"), None)
    tokenizers = [(sid, sec, display) for sid, sec in _sections(params, "tokenizer")] + [
        (sid, sec, str(data_file)) for sid, sec in _sections(data, "tokenizer")]
    if adamw is None or not tokenizers:
        raise ReproError(f"{params_file} has no first-phase AdamW train stage, or it and "
                         f"{data_file.name} beside it no tokenizer, to probe", file=str(params_file),
                         fix="run `repro compile` (the quickstart's params.yaml and "
                             "params.data.yaml have both), or pass --params of a pipeline "
                             "that trains with AdamW")
    tokenizer = _validated(TokenizerConfig, *tokenizers[0]).tokenizer
    vocab = vocab_size or getattr(tokenizer, "vocab_size", None)
    if vocab is None:
        raise ReproError(f"{tokenizers[0][0]} loads a pretrained tokenizer: its vocabulary size "
                         "is not in its settings", file=tokenizers[0][2],
                         fix="pass --vocab-size with the tokenizer's size")
    return ProbeSettings(adamw[1], muon[1] if muon else None, vocab,
                         tuple(s for s, _ in (adamw, muon) if s))
