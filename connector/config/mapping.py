"""The `[mapping]` section: one JMESPath expression per canonical field, defaults, lookups."""

from __future__ import annotations

from typing import Any

import jmespath
import jmespath.exceptions
from pydantic import field_validator, model_validator
from pydantic_core import PydanticCustomError

from connector.config.sources import _LOOKUP_NAME, LookupConfig
from connector.config.values import Section, _check_jmespath, _zone_problem

CANONICAL_FIELDS = (
    "remote_id",
    "title",
    "description",
    "start",
    "end",
    "duration_minutes",
    "timezone",
    "organizer_email",
    "application_ids",
    "location",
    "videoconferencing",
    "cancelled",
    "updated_at",
)


# Functions the mapping adds to JMESPath's own (connector.mapping implements them):
#   lookup('NAME', key)  the value of `key` in the table [mapping.lookups.NAME]; a key not in it makes the item invalid
#   fail('reason')       makes the item invalid for that reason (e.g. `start.date_time || (start.date && fail('...'))`)
CUSTOM_FUNCTIONS = {"lookup": 2, "fail": 1}
MERGE_ACCOUNT_HEADER = "X-Account-Token"


def function_problems(expression: str, lookups: set[str]) -> list[str]:
    """What is wrong with the functions `expression` calls: unknown ones, a wrong number of
    arguments to ours, a lookup of a table not defined or not named by a literal string."""
    from jmespath.functions import Functions

    known = set(Functions.FUNCTION_TABLE) | set(CUSTOM_FUNCTIONS)
    problems: list[str] = []

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        children = node.get("children") or []
        if node.get("type") == "function_expression":
            name = node.get("value")
            if name not in known:
                problems.append(f"unknown function {name}(); ours are lookup('NAME', key) and fail('reason'), besides JMESPath's own")
            elif name in CUSTOM_FUNCTIONS and len(children) != CUSTOM_FUNCTIONS[name]:
                problems.append(f"{name}() takes {CUSTOM_FUNCTIONS[name]} argument(s), got {len(children)}")
            elif name == "lookup":
                first = children[0]
                table = first.get("value") if isinstance(first, dict) and first.get("type") == "literal" else None
                if not isinstance(table, str):
                    problems.append("lookup() needs the table's name as a literal string first: lookup('NAME', key)")
                elif table not in lookups:
                    defined = ", ".join(sorted(lookups)) or "none"
                    problems.append(f"lookup '{table}' is not defined in [mapping.lookups] (defined: {defined})")
        for child in children:
            walk(child)

    walk(jmespath.compile(expression).parsed)
    return problems


class MappingConfig(Section):
    """JMESPath expression per canonical field, evaluated over one raw item; None means unmapped."""

    remote_id: str | None = "id"
    title: str | None = "title"
    description: str | None = "notes"
    start: str | None = "start_at"
    end: str | None = "end_at"
    duration_minutes: str | None = None
    timezone: str | None = "timezone"
    organizer_email: str | None = "organizer.email"
    application_ids: str | None = "candidates[].jobylon_application_id"
    location: str | None = "location"
    videoconferencing: str | None = "video"
    cancelled: str | None = "status == 'cancelled'"
    updated_at: str | None = "updated_at"
    deleted: str | None = None  # true: deleted at the source (e.g. Merge's remote_was_deleted); the event goes
    defaults: dict[str, Any] = {"timezone": "Europe/Stockholm", "description": ""}
    lookups: dict[str, LookupConfig] = {}  # key -> value tables for lookup('NAME', key) in the expressions

    @field_validator(*CANONICAL_FIELDS[:-1], "updated_at", "deleted")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return _check_jmespath(value or None)

    @field_validator("lookups")
    @classmethod
    def _lookup_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _LOOKUP_NAME.fullmatch(name):
                raise ValueError(f"lookup name {name!r}: letters, digits, '_' and '-' only, not starting with a digit")
        return value

    @model_validator(mode="after")
    def _known_functions(self) -> MappingConfig:
        """Every function an expression calls exists, and every lookup('NAME', ...) names a table of
        [mapping.lookups] by a literal name: a typo is refused at load instead of mapping to null."""
        for name in (*CANONICAL_FIELDS, "deleted"):
            expression = getattr(self, name)
            for problem in function_problems(expression, set(self.lookups)) if expression else ():
                raise PydanticCustomError("config_problem", "{problem}", {"key": name, "problem": problem})
        return self

    @field_validator("defaults")
    @classmethod
    def _known_defaults(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(CANONICAL_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; expected one of {', '.join(CANONICAL_FIELDS)}")
        if "timezone" in value:
            problem = _zone_problem(value["timezone"])
            if problem:  # every item without a zone of its own would be invalid: refuse it at load
                raise PydanticCustomError("config_problem", "{problem}", {"key": "timezone", "problem": problem})
        return value
