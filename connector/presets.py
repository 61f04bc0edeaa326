"""Presets: the source and mapping keys of a known ATS API, so a partner on it writes only the URL and
the credentials. Plain data, expanded into the raw config before it is validated (`expand`).

    [source]
    preset = "greenhouse"        # or "merge"
    api_key = "..."              # better: CONNECTOR_SOURCE__API_KEY
    # url = "..."                # the vendor's default below; any other key of the http source overrides too

Every key the config (or the environment) sets wins over the preset's; tables (`pagination`,
`params`, `headers`, `mapping.defaults`) are merged key by key. The credentials are plain keys:
`api_key` for both, and Merge's `account_token`; they become the http source's `auth` (and for
Merge the `X-Account-Token` header).

Neither API carries the two things Jobylon needs that an ATS does not know: the Jobylon application
id of the candidate and, for Greenhouse, the organizer's email. Each preset's mapping names where
they come from (see GREENHOUSE_MAPPING and MERGE_MAPPING): a `[mapping.lookups.NAME]` table or a
custom field, either of which the config can point elsewhere.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic_core import PydanticCustomError

# -- Greenhouse Harvest: GET /v1/scheduled_interviews ---------------------------------------------
# Basic auth, the API key as the user name and an empty password. `per_page` up to 500 (a page may hold
# fewer), RFC 8288 `Link: <...>; rel="next"` pagination, `updated_after` (at or after, ISO 8601) for an
# incremental poll. An interview: {id, application_id, start: {date_time}, end: {date_time}, location,
# status: scheduled | awaiting_feedback | complete, interview: {id, name}, organizer: {id, name, ...}
# (no email), interviewers: [{id, name, email, ...}], created_at, updated_at}. A deleted interview is
# simply absent (no deleted flag): only a complete fetch can notice it. An all-day interview carries
# start.date / end.date and no time: it is reported invalid with that reason, never guessed.

GREENHOUSE_ALL_DAY = (
    "an all-day interview (start.date, no start.date_time): a Jobylon event needs a start time and at most 480 minutes; give it a time in Greenhouse to sync it"
)

GREENHOUSE_SOURCE: dict[str, Any] = {
    "kind": "http",
    "url": "https://harvest.greenhouse.io/v1/scheduled_interviews",
    "params": {"per_page": 500},
    "pagination": {"style": "link_header"},
    "items": "@",
    "since_param": "updated_after",
    "since_format": "%Y-%m-%dT%H:%M:%SZ",
}

GREENHOUSE_MAPPING: dict[str, Any] = {
    "remote_id": "id",
    "title": "interview.name",
    "description": None,  # from mapping.defaults ("")
    "start": f"start.date_time || (start.date && fail('{GREENHOUSE_ALL_DAY}'))",
    "end": "end.date_time",
    "duration_minutes": None,
    "timezone": None,  # times come in UTC; the event's zone is mapping.defaults.timezone
    # Greenhouse's organizer has an id and a name, no email: [mapping.lookups.organizer_email] maps the
    # Greenhouse user id to the email of the Jobylon user (or set organizer_email = "interviewers[0].email").
    "organizer_email": "lookup('organizer_email', organizer.id)",
    # The candidate's application in Greenhouse -> in Jobylon: [mapping.lookups.jobylon_application].
    "application_ids": "lookup('jobylon_application', application_id)",
    "location": "location",
    "videoconferencing": None,
    "cancelled": None,  # Greenhouse deletes a cancelled interview: it leaves the listing
    "deleted": None,
    "updated_at": "updated_at",
    "defaults": {"timezone": "Europe/Stockholm", "description": ""},
}

# -- Merge unified ATS: GET /api/ats/v1/interviews -------------------------------------------------
# `Authorization: Bearer <api_key>` plus `X-Account-Token: <account_token>` (the linked account).
# Cursor pagination: the body is {next, previous, results}, `next` the cursor of the next page, sent
# back as `cursor`. `modified_after` filters on Merge's own `modified_at` (when Merge last synced the
# object), so that is the cursor's field. Deleted objects are left out unless asked for with
# `include_deleted_data=true`: asked, and `remote_was_deleted` turns into a delete. `expand=organizer`
# gives the organizer's email; `job_interview_stage` its name, the title. Status SCHEDULED |
# AWAITING_FEEDBACK | COMPLETE. The Jobylon application id comes from a linked-account field mapping
# (a target field `jobylon_application_id` on the interview, mapped in Merge per linked account).

MERGE_SOURCE: dict[str, Any] = {
    "kind": "http",
    "url": "https://api.merge.dev/api/ats/v1/interviews",
    "params": {"page_size": 100, "include_deleted_data": "true", "expand": "organizer,job_interview_stage"},
    "pagination": {"style": "cursor", "next": "next", "cursor_param": "cursor"},
    "items": "results",
    "since_param": "modified_after",
    "since_format": "%Y-%m-%dT%H:%M:%SZ",
}

MERGE_MAPPING: dict[str, Any] = {
    "remote_id": "id",
    "title": "job_interview_stage.name || 'Interview'",
    "description": None,
    "start": "start_at",
    "end": "end_at",
    "duration_minutes": None,
    "timezone": None,
    "organizer_email": "organizer.email",
    "application_ids": "field_mappings.linked_account_defined_targets.jobylon_application_id || field_mappings.organization_defined_targets.jobylon_application_id",
    "location": "location",
    "videoconferencing": None,
    "cancelled": None,
    "deleted": "remote_was_deleted",
    "updated_at": "modified_at",
    "defaults": {"timezone": "Europe/Stockholm", "description": ""},
}

PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "greenhouse": (GREENHOUSE_SOURCE, GREENHOUSE_MAPPING),
    "merge": (MERGE_SOURCE, MERGE_MAPPING),
}
MERGED_TABLES = ("pagination", "params", "headers")


def _problem(key: str, problem: str) -> PydanticCustomError:
    return PydanticCustomError("config_problem", "{problem}", {"key": key, "problem": problem})


def _credential(key: str, value: Any, *, basic_user: bool = False) -> str:
    """An API key or token as it will travel in a header: surrounding whitespace (a copied newline)
    dropped, visible ASCII only; the value itself is never shown."""
    if not isinstance(value, str):
        raise _problem(key, f"expected a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise _problem(key, "is empty")
    for position, char in enumerate(value, start=1):
        if not "!" <= char <= "~":
            raise _problem(key, f"contains a character an HTTP header cannot carry (U+{ord(char):04X} at position {position})")
    if basic_user and ":" in value:
        raise _problem(key, "cannot contain ':' (it is sent as the Basic auth user name)")
    return value


def expand(data: dict[str, Any]) -> dict[str, Any]:
    """The raw config with `source.preset` replaced by the preset's keys (the config's own win)."""
    data = dict(data)
    source = dict(data["source"])
    name = source.pop("preset")
    if name not in PRESETS:
        raise _problem("source.preset", f"unknown preset {name!r}; expected one of {', '.join(sorted(PRESETS))}")
    preset_source, preset_mapping = PRESETS[name]
    if source.get("kind", "http") != "http":
        raise _problem("source.kind", f"the {name} preset is an http source; leave kind out")
    api_key = source.pop("api_key", None)
    account_token = source.pop("account_token", None)
    if not api_key and "auth" not in source:
        raise _problem("source.api_key", f"required key is missing (the {name} preset's credentials; better from CONNECTOR_SOURCE__API_KEY)")
    expanded = copy.deepcopy(preset_source)
    api_key = _credential("source.api_key", api_key, basic_user=name == "greenhouse") if api_key is not None else None
    account_token = _credential("source.account_token", account_token) if account_token is not None else None
    if api_key:
        if name == "greenhouse":
            expanded["auth"] = {"type": "basic", "username": api_key, "password": ""}
        else:
            expanded["auth"] = {"type": "bearer", "token": api_key}
    if name == "merge":
        if not account_token and "X-Account-Token" not in (source.get("headers") or {}):
            raise _problem("source.account_token", "required key is missing (Merge's linked account; better from CONNECTOR_SOURCE__ACCOUNT_TOKEN)")
        if account_token:
            expanded["headers"] = {"X-Account-Token": account_token}
    elif account_token is not None:
        raise _problem("source.account_token", f"unknown key (the {name} preset takes api_key only)")
    for key, value in source.items():
        if key in MERGED_TABLES and isinstance(value, dict) and isinstance(expanded.get(key), dict):
            expanded[key] = {**expanded[key], **value}
        else:
            expanded[key] = value
    expanded["preset"] = name
    data["source"] = expanded

    mapping = dict(data.get("mapping") or {})
    filled = dict(preset_mapping)
    for key, value in mapping.items():
        if key == "defaults" and isinstance(value, dict):
            filled[key] = {**filled["defaults"], **value}
        else:
            filled[key] = value
    data["mapping"] = {key: value for key, value in filled.items() if value is not None or key in mapping}
    # a preset's None means "not mapped": the MappingConfig default of that field must not apply either
    data["mapping"].update({key: "" for key, value in preset_mapping.items() if value is None and key not in mapping})
    return data
