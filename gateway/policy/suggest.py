"""Helpful messages for policy-file mistakes: the nearest valid name, the misspelt key.

Owns: finding which keys a pydantic model accepts at a location of a document
(nested models, lists and tuples of models, optional and annotated types),
suggesting the closest valid name for an unknown key or an invalid choice,
and pairing a missing required key with an unknown key that looks like its
misspelling. Pure; used by ``gateway.policy.loader.schema_findings``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

_QUOTED = re.compile(r"'([^']*)'")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every BaseModel class an annotation can hold (through Optional, tuple, list, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            out.extend(_models_in(arg))
    return out


def keys_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Keys accepted by the mapping at ``loc`` (list indexes are skipped)."""
    current = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in current:
            info = m.model_fields.get(part)
            if info is not None:
                nxt.extend(_models_in(info.annotation))
        if not nxt:
            return []
        current = nxt
    names: list[str] = []
    for m in current:
        for name, info in m.model_fields.items():
            names.append(info.alias or name)
    return sorted(set(names))


def closest(word: str, choices: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key_hint(model: type[BaseModel], loc: Sequence[int | str]) -> str:
    """``unknown key`` plus the nearest valid key, if one is close."""
    key = str(loc[-1]) if loc else ""
    near = closest(key, keys_at(model, loc[:-1]))
    return f"unknown key {key!r}; did you mean {near!r}?" if near else f"unknown key {key!r}"


def choice_hint(message: str, given: object) -> str:
    """For 'Input should be 'a', 'b' or 'c'': add the nearest of the listed choices."""
    if not isinstance(given, str):
        return message
    options = _QUOTED.findall(message)
    near = closest(given, options) if options else None
    return (
        f"{message}; got {given!r}, did you mean {near!r}?" if near else f"{message}; got {given!r}"
    )


def misspelt_as(missing: str, unknown: Sequence[str]) -> str | None:
    """An unknown key in the same mapping that is probably ``missing`` misspelt."""
    return closest(missing, unknown)
