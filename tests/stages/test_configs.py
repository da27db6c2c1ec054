"""Stage configs read params.yaml, which `dvc exp run -S` edits after the spec was
validated: their fields carry the same limits as the spec's."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from repro.spec.base import MAX_SEED
from repro.stages import STAGE_CONFIGS


def _seed_fields() -> list[tuple[str, type[BaseModel], str]]:
    found = []
    for kind, model in sorted(STAGE_CONFIGS.items()):
        for name in model.model_fields:
            if name.endswith("seed"):
                found.append((kind, model, name))
    return found


SEED_FIELDS = _seed_fields()


def test_stage_configs_have_seeds() -> None:
    assert {kind for kind, _, _ in SEED_FIELDS} >= {"train", "evaluate", "report"}


@pytest.mark.parametrize(("kind", "model", "name"), SEED_FIELDS,
                         ids=[f"{k}.{n}" for k, _, n in SEED_FIELDS])
def test_seed_out_of_range_is_refused_from_params(kind, model, name) -> None:
    # only the seed's own error matters: the other (missing) fields fail too
    for bad in (MAX_SEED + 1, 2**70, -1):
        with pytest.raises(ValidationError) as info:
            model.model_validate({name: bad})
        assert any(err["loc"][:1] == (name,) for err in info.value.errors()), (kind, bad)
    with pytest.raises(ValidationError) as info:
        model.model_validate({name: MAX_SEED})
    assert not any(err["loc"][:1] == (name,) for err in info.value.errors())
