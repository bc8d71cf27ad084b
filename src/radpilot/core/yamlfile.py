"""Validate a YAML file against a pydantic model and name the line and field at fault.

Hospitals edit manifests and routing rules by hand; "field required" without a place is
no help. The file is composed into PyYAML nodes first, which keep their line numbers, so
that every validation error can point at ``file:line``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from radpilot.core.errors import ManifestError

__all__ = ["load_yaml_model", "parse_yaml_model"]

M = TypeVar("M", bound=BaseModel)


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            match = node.value[key] if 0 <= key < len(node.value) else None
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def parse_yaml_model(text: str, model: type[M], source: str) -> M:
    """Parse ``text`` (YAML) into ``model``.

    Raises
    ------
    ManifestError
        If the YAML is malformed or does not fit ``model``; the message reads
        ``source:line: field: problem`` for the first problems found.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ManifestError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{source}:1: expected a mapping of fields at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:5]:
            loc = [part for part in error["loc"] if isinstance(part, int | str)]
            line = _line_of(node, loc)
            field = ".".join(str(part) for part in loc) or "(top level)"
            problems.append(f"{source}:{line}: {field}: {error['msg']}")
        raise ManifestError("; ".join(problems)) from exc


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read ``path`` and parse it with :func:`parse_yaml_model`.

    Raises
    ------
    ManifestError
        If the file cannot be read or does not validate.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read ({exc})") from exc
    return parse_yaml_model(text, model, str(path))
