"""Base of every spec model and the shared field types (repro.spec.schema, repro.spec.search)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class FieldError(ValueError):
    """A validator's error with the problem and the fix kept apart, so a user's value that
    holds `; ` cannot split the message at the wrong place (repro.spec.load renders them as
    the issue's message and its `fix:` line). `str()` joins them for plain ValueError users."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


class Model(BaseModel):
    """Base of every spec model: closed, frozen, described. A rejected value is left out of
    the text of a ValidationError (it could be a credential); located spec errors
    (repro.spec.load) say what is wrong without echoing it either."""

    # allow_inf_nan=False: `.inf`/`.nan` are valid YAML floats, but no setting means
    # anything at infinity (`lr: .inf` passed `gt=0`)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True,
                              hide_input_in_errors=True, allow_inf_nan=False)
