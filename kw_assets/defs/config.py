"""Run config generated from the core's dataclasses, so every default is written once (in model/)."""

import dataclasses
import typing

import dagster as dg
import pydantic


def run_config_from(name: str, *classes: type, exclude: tuple[str, ...] = (), base: type = dg.Config,
                    **extra: tuple[type, object]) -> type:
    """A ``dagster.Config`` (or ``base``, e.g. a resource) with the fields (types, defaults and the
    ``description`` in each field's metadata) of the given dataclasses, plus ``extra``."""
    fields: dict[str, tuple[type, object]] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in exclude:
                fields[f.name] = (hints[f.name], pydantic.Field(default=f.default, description=f.metadata.get("description")))
    fields.update(extra)
    doc = " ".join(f"{c.__module__}.{c.__name__}" for c in classes)
    return pydantic.create_model(name, __base__=base, __doc__=f"Fields from {doc}.", **fields)


def build(cls: type, config: dg.Config, **overrides):
    """The dataclass ``cls`` from the run config's matching fields."""
    values = config.model_dump()
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}, **overrides)
