"""A YAML file of supervision's (the hazard policy, the inspection checklist) as a pydantic
model: the operator's copy or the shipped one, and a broken one refused naming its field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(cls: type[M], path: Path | None, shipped: str, error: type[ValueError]) -> M:
    """`cls` from the YAML at `path`, or from supervision's shipped file `shipped`; `error`
    with the file, the field and what is wrong when it cannot be read or does not hold."""
    where = str(path) if path is not None else f"the shipped {shipped}"
    try:
        text = (
            path.read_text(encoding="utf-8")
            if path is not None
            else resources.files("supervision").joinpath(shipped).read_text("utf-8")
        )
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{where}: cannot read it: {exc}") from None
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise error(f"{where}: {field}: {first['msg']}") from None
