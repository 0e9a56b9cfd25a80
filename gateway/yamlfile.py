"""Load a YAML file into a pydantic model with errors that name file, line and field.

Owns: safe YAML parsing (``yaml.SafeLoader`` only; duplicate keys refused),
mapping pydantic validation errors back to source lines. Does not own: any
particular schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gateway.errors import PolicyFileError
from gateway.limits import DEFAULT_LIMITS, Limits

M = TypeVar("M", bound=BaseModel)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records each mapping key's line and refuses duplicate keys."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    return _Mapping(result, lines)


class _Mapping(dict[Any, Any]):
    """A dict that remembers the source line of each key."""

    def __init__(self, data: dict[Any, Any], lines: dict[Any, int]) -> None:
        super().__init__(data)
        self.lines = lines


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _construct_timestamp(loader: _LineLoader, node: yaml.ScalarNode) -> Any:
    """A date YAML cannot build (2028-13-45) stays text, so schema validation
    reports it with its field and line alongside every other error in the
    file, instead of the whole file failing to parse."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError:
        return str(node.value)


_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML safely; raise PolicyFileError naming source and line."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyFileError(f"{source}{line}: YAML error: {problem}") from exc


def line_of(doc: Any, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort source line for a pydantic error location."""
    node = doc
    line: int | None = None
    for part in loc:
        if isinstance(node, _Mapping) and part in node:
            line = node.lines.get(part, line)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            break
    return line


def validate_doc(doc: Any, model: type[M], source: str) -> M:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        line = line_of(doc, loc)
        where = f"{source}:{line}" if line else source
        field = ".".join(str(p) for p in loc) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PolicyFileError(f"{where}: field {field}: {first['msg']}{more}") from exc


def load_model(path: Path, model: type[M], limits: Limits = DEFAULT_LIMITS) -> M:
    """Read ``path`` (at most ``limits.max_policy_file_bytes``) and validate it as ``model``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(raw) > limits.max_policy_file_bytes:
        raise PolicyFileError(
            f"{path}: file is {len(raw)} bytes, limit {limits.max_policy_file_bytes}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"{path}: not UTF-8") from exc
    return validate_doc(parse_yaml(text, str(path)), model, str(path))
