"""What an AppState starts from: a model (its defaults) or a value of one."""

from __future__ import annotations

from typing import Any

import pydantic

from ..errors import ConfigurationError
from ._node import Node
from ._shape import ModelShape, compile_shape


def model_shape(model: type[pydantic.BaseModel]) -> ModelShape:
    shape = compile_shape(model)
    assert isinstance(shape, ModelShape)
    return shape


def initial_value(initial: Any) -> tuple[type[pydantic.BaseModel], Any]:
    if isinstance(initial, type) and issubclass(initial, pydantic.BaseModel):
        try:
            return initial, initial()
        except pydantic.ValidationError as exc:
            raise ConfigurationError(
                f"{initial.__name__}() needs values: pass an instance to start from"
            ) from exc
    if isinstance(initial, pydantic.BaseModel):
        return type(initial), initial
    if isinstance(initial, Node):
        return initial._model, initial
    raise ConfigurationError(
        f"an AppState starts from a pydantic model or an instance of one, not {initial!r}"
    )
