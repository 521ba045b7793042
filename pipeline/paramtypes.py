"""The building blocks of every params model, the core's (pipeline/config.py) and each environment's
(pipeline/envs/): strict models that name the offending key, and reals that accept YAML 1.1's "1e-6". No torch."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError


def _number(v):
    # YAML 1.1 reads "1e-6" (no dot) as a string; accept numeric strings for real-valued keys only.
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


# Strict mode: `true` is not an int, `"yes"` is not a bool, 2.5 is not an int; reals accept ints and "1e-6" but
# not NaN or infinity (YAML's .nan and .inf), which no setting here can mean.
Real = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def resolve(cls, params=None, overrides: dict | None = None):
    """``params`` (an instance of the pydantic model ``cls``; default: its defaults, which are params.yaml's) with
    single keys overridden, validated: how environments take their settings."""
    if not overrides:
        return params if params is not None else cls()
    try:
        return cls.model_validate({**(params if params is not None else cls()).model_dump(), **overrides})
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
