"""Turns raw source items into Interviews or InvalidItems with the `[mapping]` JMESPath expressions. Pure.

Expressions are compiled once per config. A plain field name or dotted path (`title`,
`organizer.email`) is read with dict lookups instead of a JMESPath evaluation: same result, a
fraction of the cost on large fetches.

Two functions are added to JMESPath's own (`connector.config.CUSTOM_FUNCTIONS`):
- `lookup('NAME', key)`: the value of `key` in the table `[mapping.lookups.NAME]` (a list of keys
  gives the list of their values). The tables are loaded by `connector.lookups` for each pass and
  handed over with `Mapper.set_lookups`; a key not in the table makes the item invalid, the message
  naming the lookup and the key. A null key is null (the field is then missing, as usual).
- `fail('reason')`: makes the item invalid for that reason, e.g. `start.date_time || (start.date &&
  fail('an all-day interview'))`.

`mapping.deleted` (e.g. Merge's `remote_was_deleted`) marks an item deleted at the source: it is then
cancelled, so its event is deleted; one whose other fields do not validate is still deleted
(`InvalidItem.deleted`), since only its remote id matters then.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions

from connector.config import CANONICAL_FIELDS, CUSTOM_FUNCTIONS, MappingConfig
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


def compile_expression(expression: str, options: jmespath.Options | None = None) -> Callable[[Any], Any]:
    """A callable evaluating the JMESPath `expression` over one item. The shapes mappings use
    most (a field, a dotted path, `list[].field`, `field == 'literal'`) are evaluated with plain
    dict lookups, with JMESPath's semantics (a projection drops nulls; a missing field is null);
    tests check them against jmespath itself. `options` carries the custom functions."""
    expression = expression.strip()
    if _PLAIN_PATH.match(expression):
        return _dotted_getter(expression)
    if match := _PROJECTION.match(expression):
        return _projection(match.group(1), match.group(2))
    if match := _EQUALS.match(expression):
        return _equals(match.group(1), match.group(2) == "!=", match.group(3))
    compiled = jmespath.compile(expression)
    if options is None:
        return compiled.search
    return lambda item: compiled.search(item, options)


# -- lookups and fail() --------------------------------------------------------------------------

AMBIGUOUS = object()  # a table's value for a key listed more than once with different values


class ItemProblem(Exception):
    """Raised inside an expression (a lookup miss, fail()): the item is invalid for this reason.
    A `decisive` one (fail()) is the whole story: the item's other field errors, consequences of
    the same fact most often (an all-day interview has neither start time nor end time), are left out."""

    def __init__(self, message: str, *, decisive: bool = False) -> None:
        super().__init__(message)
        self.decisive = decisive


def lookup_key(value: Any) -> str | None:
    """The one text form of a lookup key, for the tables and the keys looked up alike: `123`,
    `123.0` and `" 123 "` are the same key; None and booleans are no key."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _shown_key(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 80 else text[:76] + "...'"


class _Functions(jmespath.functions.Functions):
    def __init__(self, tables: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.tables = tables

    @jmespath.functions.signature({"types": ["string"]}, {"types": ["string", "number", "array", "null"]})
    def _func_lookup(self, name: str, key: Any) -> Any:
        table = self.tables.get(name)
        if table is None:
            raise ItemProblem(f"lookup '{name}' is not loaded")
        if isinstance(key, list):
            return [self._one(name, table, k) for k in key if k is not None]
        return None if key is None else self._one(name, table, key)

    @staticmethod
    def _one(name: str, table: dict[str, Any], key: Any) -> Any:
        text = lookup_key(key)
        value = table.get(text) if text is not None else None
        if value is AMBIGUOUS:
            raise ItemProblem(f"lookup '{name}' lists key {_shown_key(text)} more than once, with different values")
        if value is None or value == "":
            found = "has no value for key" if text in table else "has no key"
            raise ItemProblem(f"lookup '{name}' {found} {_shown_key(text if text is not None else key)}")
        return value

    @jmespath.functions.signature({"types": ["string"]})
    def _func_fail(self, reason: str) -> Any:
        raise ItemProblem(reason, decisive=True)


assert set(CUSTOM_FUNCTIONS) == {"lookup", "fail"}  # the names config.py checks expressions against


def _flag(value: Any) -> bool | None:
    """A deleted flag as sources write it (true, 1, "yes", "false", 0, null); None if it is none of those."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.strip().lower() in ("true", "1", "yes")
    return None


@dataclass
class MappedFetch:
    interviews: list[Interview]
    invalid: list[InvalidItem]
    fetched: int = 0  # raw items mapped: counted while mapping, so a streamed fetch need not be held whole

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


# Fields whose values many items share (a few zones and organizers, a template description): while
# `map_all` runs, equal values of these become one str object, so 100,000 interviews do not hold
# 100,000 copies of "Europe/Stockholm". At most SHARED_MAX distinct values are kept per pass.
SHARED_FIELDS = ("description", "timezone", "organizer_email", "location")
SHARED_MAX = 4096


class Mapper:
    _shared: dict[str, str] | None = None  # the one object of each shared value, while map_all runs

    def __init__(self, config: MappingConfig, lookups: dict[str, dict[str, Any]] | None = None) -> None:
        expressions = {name: expr.strip() for name in CANONICAL_FIELDS if (expr := getattr(config, name)) is not None}
        self._functions = _Functions(dict(lookups or {}))
        options = jmespath.Options(custom_functions=self._functions)
        # Top-level field names are read straight from the item; everything else is compiled once.
        self._keys = [(name, expr) for name, expr in expressions.items() if _PLAIN_PATH.match(expr) and "." not in expr]
        self._getters: list[tuple[str, Callable[[Any], Any]]] = [
            (name, compile_expression(expr, options)) for name, expr in expressions.items() if (name, expr) not in self._keys
        ]
        self._deleted = compile_expression(config.deleted, options) if config.deleted else None
        self._defaults = dict(config.defaults)

    def set_lookups(self, tables: dict[str, dict[str, Any]]) -> None:
        """The lookup tables for the next items (loaded afresh for each pass by connector.lookups)."""
        self._functions.tables = dict(tables)

    def extract(self, raw: Any) -> dict[str, Any]:
        return self._extract(raw)[0]

    def _extract(self, raw: Any) -> tuple[dict[str, Any], list[FieldError], bool]:
        """The canonical values of one item, the problems raised inside its expressions, and whether
        one of them is decisive (fail(): then they are only those)."""
        values = dict(self._defaults)
        problems: list[FieldError] = []
        decisive: list[FieldError] = []
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
            except ItemProblem as exc:
                (decisive if exc.decisive else problems).append(FieldError(name, str(exc)))
                values.pop(name, None)
                continue
            if value is not None:
                values[name] = value
        shared = self._shared
        if shared is not None:
            for name in SHARED_FIELDS:
                value = values.get(name)
                if type(value) is str:
                    found = shared.get(value)
                    if found is not None:
                        values[name] = found
                    elif len(shared) < SHARED_MAX:
                        shared[value] = value
        return values, decisive or problems, bool(decisive)

    def _is_deleted(self, raw: Any, problems: list[FieldError]) -> bool:
        if self._deleted is None:
            return False
        try:
            value = self._deleted(raw)
        except jmespath.exceptions.JMESPathError:
            value = None
        except ItemProblem as exc:
            problems.append(FieldError("deleted", str(exc)))
            return False
        flag = _flag(value)
        if flag is None:
            problems.append(FieldError("deleted", f"expected true or false, got {type(value).__name__}"))
            return False
        return flag

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
        values, problems, final = self._extract(raw)
        deleted = self._is_deleted(raw, problems)
        if deleted:
            values["cancelled"] = True
        result = build_interview(values, index)
        if not problems and not (deleted and isinstance(result, InvalidItem)):
            return result
        # A problem raised in an expression stands for its field: validation's "missing" for that field is its echo.
        raised = {problem.field for problem in problems}
        errors = problems + ([e for e in result.errors if e.field not in raised] if isinstance(result, InvalidItem) and not final else [])
        return InvalidItem(result.remote_id, index, tuple(errors), payload_hash(values), deleted=deleted)

    def map_all(self, raws: Iterable[Any]) -> MappedFetch:
        """Map every item (pass `FetchResult.take()` or `drain(items)`, so each raw item is freed once
        it is mapped; `fetched` counts them). Items that
        share a remote id are one invalid record (which one is right cannot be known), and that
        remote id is held back from any create, update or delete."""
        self._shared = {}
        try:
            results = [self.map_one(raw, index) for index, raw in enumerate(raws)]
        finally:
            self._shared = None
        # Where each remote id first appears, and every place of those that appear again (a list
        # per repeated id only, not one per item: 7 MB less at 100,000 items).
        first: dict[str, int] = {}
        repeated: dict[str, list[int]] = {}
        for index, result in enumerate(results):
            if result.remote_id is not None:
                at = first.setdefault(result.remote_id, index)
                if at != index:
                    repeated.setdefault(result.remote_id, [at]).append(index)
        del first
        interviews: list[Interview] = []
        invalid: list[InvalidItem] = []
        for index, result in enumerate(results):
            seen_at = repeated.get(result.remote_id, ()) if result.remote_id is not None else ()
            if len(seen_at) > 1:
                if index == seen_at[0]:
                    where = ", ".join(f"#{i}" for i in seen_at)
                    error = FieldError("remote_id", f"appears {len(seen_at)} times in this fetch (items {where})")
                    invalid.append(InvalidItem(result.remote_id, index, (error,), result.content_hash))
            elif isinstance(result, InvalidItem):
                invalid.append(result)
            else:
                interviews.append(result)
        return MappedFetch(interviews, invalid, len(results))
