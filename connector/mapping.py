"""Turns raw source items into Interviews or InvalidItems with the `[mapping]` JMESPath expressions. Pure.

Expressions are compiled once per config. A plain field name or dotted path (`title`,
`organizer.email`) is read with dict lookups instead of a JMESPath evaluation: same result, a
fraction of the cost on large fetches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions

from connector.config import CANONICAL_FIELDS, MappingConfig
from connector.model import BrokenItem, FieldError, Interview, InvalidItem, payload_hash
from connector.validation import build_interview

_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_PLAIN_PATH = re.compile(rf"^{_PATH}$")
_PROJECTION = re.compile(rf"^({_PATH})\[\]\.({_PATH})$")  # candidates[].jobylon_application_id
_EQUALS = re.compile(rf"^({_PATH})\s*(==|!=)\s*'([^'\\]*)'$")  # status == 'cancelled'


def _dotted_getter(path: str) -> Callable[[Any], Any]:
    parts = path.split(".")
    if len(parts) == 1:
        key = parts[0]
        return lambda item: item.get(key) if isinstance(item, dict) else None

    def get(item: Any) -> Any:
        for part in parts:
            if not isinstance(item, dict):
                return None
            item = item.get(part)
        return item

    return get


def _projection(left: str, right: str) -> Callable[[Any], Any]:
    get_list, get_value = _dotted_getter(left), _dotted_getter(right)

    def project(item: Any) -> Any:
        values = get_list(item)
        if not isinstance(values, list):
            return None
        return [v for v in map(get_value, values) if v is not None]

    return project


def _equals(path: str, negate: bool, literal: str) -> Callable[[Any], Any]:
    get = _dotted_getter(path)
    if negate:
        return lambda item: get(item) != literal
    return lambda item: get(item) == literal


def compile_expression(expression: str) -> Callable[[Any], Any]:
    """A callable evaluating the JMESPath `expression` over one item. The shapes mappings use
    most (a field, a dotted path, `list[].field`, `field == 'literal'`) are evaluated with plain
    dict lookups, with JMESPath's semantics (a projection drops nulls; a missing field is null);
    tests check them against jmespath itself."""
    expression = expression.strip()
    if _PLAIN_PATH.match(expression):
        return _dotted_getter(expression)
    if match := _PROJECTION.match(expression):
        return _projection(match.group(1), match.group(2))
    if match := _EQUALS.match(expression):
        return _equals(match.group(1), match.group(2) == "!=", match.group(3))
    return jmespath.compile(expression).search


@dataclass
class MappedFetch:
    interviews: list[Interview]
    invalid: list[InvalidItem]

    @property
    def unidentified(self) -> int:
        """Invalid items whose remote id could not be read: they may be a mapped event, so a
        complete fetch holding any of them cannot imply deletions by absence."""
        return sum(1 for item in self.invalid if item.remote_id is None)


def drain(items: list[Any]) -> Iterator[Any]:
    """Yield the items of a list, dropping each from the list as it goes, so a large fetch is not
    held twice (raw and mapped) at the peak."""
    for index in range(len(items)):
        item, items[index] = items[index], None
        yield item


class Mapper:
    def __init__(self, config: MappingConfig) -> None:
        expressions = {name: expr.strip() for name in CANONICAL_FIELDS if (expr := getattr(config, name)) is not None}
        # Top-level field names are read straight from the item; everything else is compiled once.
        self._keys = [(name, expr) for name, expr in expressions.items() if _PLAIN_PATH.match(expr) and "." not in expr]
        self._getters: list[tuple[str, Callable[[Any], Any]]] = [
            (name, compile_expression(expr)) for name, expr in expressions.items() if (name, expr) not in self._keys
        ]
        self._defaults = dict(config.defaults)

    def extract(self, raw: Any) -> dict[str, Any]:
        values = dict(self._defaults)
        if isinstance(raw, dict):
            for name, key in self._keys:
                value = raw.get(key)
                if value is not None:
                    values[name] = value
        for name, get in self._getters:
            try:
                value = get(raw)
            except jmespath.exceptions.JMESPathError:
                value = None
            if value is not None:
                values[name] = value
        return values

    def map_one(self, raw: Any, index: int) -> Interview | InvalidItem:
        if isinstance(raw, BrokenItem):
            error = FieldError("item", f"{raw.position}: {raw.message}")
            # Filed under the id the partner knows when the mapping reads it from a plain key and the
            # source could still read that key; the id rules are build_interview's.
            key = next((expr for name, expr in self._keys if name == "remote_id"), None)
            found = dict(raw.readable).get(key) if key is not None else None
            remote_id = build_interview({"remote_id": found}).remote_id if found is not None else None
            return InvalidItem(remote_id, index, (error,), payload_hash([raw.position, raw.message]))
        if not isinstance(raw, dict):
            kind = "list" if isinstance(raw, list) else type(raw).__name__
            return InvalidItem(None, index, (FieldError("item", f"expected an object, got {kind}"),), payload_hash(repr(raw)[:1000]))
        return build_interview(self.extract(raw), index)

    def map_all(self, raws: Iterable[Any]) -> MappedFetch:
        """Map every item (pass `drain(items)` to free each raw item once it is mapped). Items that
        share a remote id are one invalid record (which one is right cannot be known), and that
        remote id is held back from any create, update or delete."""
        results = [self.map_one(raw, index) for index, raw in enumerate(raws)]
        positions: dict[str, list[int]] = {}
        for index, result in enumerate(results):
            if result.remote_id is not None:
                positions.setdefault(result.remote_id, []).append(index)
        interviews: list[Interview] = []
        invalid: list[InvalidItem] = []
        for index, result in enumerate(results):
            seen_at = positions.get(result.remote_id, ()) if result.remote_id is not None else ()
            if len(seen_at) > 1:
                if index == seen_at[0]:
                    where = ", ".join(f"#{i}" for i in seen_at)
                    error = FieldError("remote_id", f"appears {len(seen_at)} times in this fetch (items {where})")
                    invalid.append(InvalidItem(result.remote_id, index, (error,), result.content_hash))
            elif isinstance(result, InvalidItem):
                invalid.append(result)
            else:
                interviews.append(result)
        return MappedFetch(interviews, invalid)
