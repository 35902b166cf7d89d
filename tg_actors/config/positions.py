"""Where a field sits in a job's YAML, and what an unknown key most likely meant.

`key_positions(text)` maps each field path (`("source", "paginate", "type")`, list items by
their index as text) to its (line, column), both 1-based, from the YAML's node tree;
`locate(positions, loc)` finds the field of a dotted error path, or the nearest enclosing
one that the file has (a missing field is reported where its parent is). `did_you_mean`
names the closest valid key at that place, read off the job's JSON Schema (jobschema.py),
so every new field is known without a list kept here. Pure: no I/O.
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from tg_actors.jobschema import job_schema

Path = tuple[str, ...]


def key_positions(text: str) -> dict[Path, tuple[int, int]]:
    """{field path: (line, column)} of every key and list item in `text` ({} if not YAML)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return {}
    out: dict[Path, tuple[int, int]] = {}

    def walk(node: Any, path: Path) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                here = (*path, str(key.value))
                out.setdefault(here, (key.start_mark.line + 1, key.start_mark.column + 1))
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                here = (*path, str(i))
                out.setdefault(here, (item.start_mark.line + 1, item.start_mark.column + 1))
                walk(item, here)

    if root is not None:
        walk(root, ())
    return out


def locate(positions: dict[Path, tuple[int, int]], loc: str) -> tuple[int, int] | None:
    """(line, column) of the field `loc` (dotted), or of its nearest enclosing field."""
    parts = tuple(loc.split(".")) if loc else ()
    while parts:
        if parts in positions:
            return positions[parts]
        parts = parts[:-1]
    return None


def did_you_mean(loc: str, data: Any) -> str | None:
    """For an unknown key at `loc`: the closest valid key at that place, if one is close."""
    *parent, key = loc.split(".")
    names = _fields_at(job_schema(), data, parent)
    if not names:
        return None
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
    return close[0] if close else None


def _fields_at(schema: dict[str, Any], data: Any, path: list[str]) -> set[str]:
    defs = schema.get("$defs", {})
    node: Any = schema
    value = data
    for part in [*path, None]:
        node = _resolve(node, defs, value)
        if part is None:
            break
        if isinstance(value, list) and part.isdigit():
            node, value = (
                node.get("items", {}),
                value[int(part)] if int(part) < len(value) else None,
            )
        elif isinstance(value, dict):
            node, value = (node.get("properties") or {}).get(part, {}), value.get(part)
        else:
            return set()
    return set((node.get("properties") or {}).keys())


def _resolve(node: Any, defs: dict[str, Any], value: Any) -> Any:
    """`node` with $ref followed and a union narrowed to the variant `value` is (by its
    `type` tag, else the first object variant)."""
    for _ in range(8):
        if "$ref" in node:
            node = defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
            continue
        variants = node.get("oneOf") or node.get("anyOf")
        if not variants:
            return node
        tag = value.get("type") if isinstance(value, dict) else None
        chosen = None
        for variant in variants:
            target = defs.get(str(variant.get("$ref", "")).rsplit("/", 1)[-1], variant)
            const = ((target.get("properties") or {}).get("type") or {}).get("const")
            if tag is not None and const == tag:
                chosen = target
                break
            if chosen is None and (target.get("properties") or "$ref" in variant):
                chosen = target
        if chosen is None:
            return node
        node = chosen
    return node
