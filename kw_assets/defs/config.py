"""Run config generated from the core's dataclasses, so every default is written once (in model/)."""

import dataclasses
import typing

import dagster as dg
import pydantic


def run_config_from(name: str, *classes: type, exclude: tuple[str, ...] = (), **extra: tuple[type, object]) -> type[dg.Config]:
    """A ``dagster.Config`` with the fields (types and defaults) of the given dataclasses, plus ``extra``."""
    fields: dict[str, tuple[type, object]] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in exclude:
                fields[f.name] = (hints[f.name], f.default)
    fields.update(extra)
    doc = " ".join(f"{c.__module__}.{c.__name__}" for c in classes)
    return pydantic.create_model(name, __base__=dg.Config, __doc__=f"Run config; fields from {doc}.", **fields)


def build(cls: type, config: dg.Config, **overrides):
    """The dataclass ``cls`` from the run config's matching fields."""
    values = config.model_dump()
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}, **overrides)
