"""The status pages' views: each reads the state through a `ReadOnlyStore` and returns a `View`, the
template and its values plus the JSON twin. The numbers are the CLI's: the status page is
`oncall.status_document` (`connector status --json`), the failure list and a failure's page are
`oncall.failure_document` (`failures list --json`, `failures show --json`).

No view builds HTML: templates do, with autoescape on (`connector.web.app`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from connector import oncall
from connector.store.reader import PAGE, ReadOnlyStore
from connector.store.records import EventRow, FailureRow, OperationRow
from connector.web.chart import PassBar, failed_items, pass_chart

KINDS = ("transient", "permanent", "in_doubt")
STATES = ("synced", "pending", "in_doubt", "failed", "deleted", "detached")
CHART_PASSES = 30
EVENT_CALLS = 100


class NotFound(Exception):
    """No such failure, run or interview: a 404 page saying what was looked for."""


class BadRequest(Exception):
    """A query parameter that cannot be used: a 400 page naming it."""


@dataclass(frozen=True)
class View:
    template: str
    context: dict[str, Any]
    document: Any  # the JSON twin
    links: dict[str, str] = field(default_factory=dict)  # rel -> URL of the JSON twin's neighbours (Link header)
    cli: str = ""  # the CLI command that prints the same document


# -- URLs ---------------------------------------------------------------------------------------


def event_url(remote_id: str) -> str:
    """The page of one interview. An id made only of dots would be a path segment a browser folds
    away (`/events/..`), so it goes in the query instead."""
    if remote_id.strip(".") == "":
        return "/events?" + urlencode({"remote_id": remote_id})
    return "/events/" + quote(remote_id, safe="")


def failure_url(failure_id: int) -> str:
    return f"/failures/{int(failure_id)}"


def with_query(path: str, **params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return path + ("?" + urlencode(kept) if kept else "")


def short_time(value: str) -> str:
    """A stored ISO time as a page shows it: `2026-03-02 10:00:05` (UTC; the full text is its title)."""
    return value[:19].replace("T", " ") if len(value) >= 19 and value[10] == "T" else value


def json_twin(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "format=json"


# -- parameters ---------------------------------------------------------------------------------


def int_param(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values or values[-1] == "":
        return None
    value = values[-1]
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise BadRequest(f"{name} must be a whole number (got {value[:40]!r})")
    return int(value)


def kind_param(query: dict[str, list[str]]) -> str | None:
    values = query.get("kind")
    if not values or values[-1] in ("", "all"):
        return None
    if values[-1] not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)} (got {values[-1][:40]!r})")
    return values[-1]


# -- the views ----------------------------------------------------------------------------------


def status_view(reader: ReadOnlyStore, *, health: tuple[bool, dict[str, Any]] | None, heartbeat_fresh: Callable[[str | None], bool]) -> View:
    document = oncall.status_document(reader, 10, heartbeat_fresh=heartbeat_fresh(reader.get_meta("heartbeat_at")))
    passes = reader.runs_page(limit=CHART_PASSES)
    calls = reader.calls_per_run([run.id for run in passes])
    bars = [PassBar(run.id, run.started_at, run.outcome, calls.get(run.id, {}), failed_items(run.counts)) for run in passes]
    states = list(STATES) + sorted(set(document["events"]) - set(STATES))
    kinds = list(KINDS) + sorted(set(document["failures"]) - set(KINDS))
    context = {
        "doc": document,
        "health": health,
        "last_run": document["runs"][0] if document["runs"] else None,
        "states": states,
        "kinds": kinds,
        "mapped": sum(document["events"].values()),
        "open_failures": sum(document["failures"].values()),
        "chart": pass_chart(bars),
        "chart_passes": len(bars),
    }
    return View("status.html", context, document, cli="connector status --json")


def _page(rows: list[Any], *, before: int | None, after: int | None, exists: Callable[..., bool]) -> tuple[list[Any], bool, bool]:
    """One page out of PAGE + 1 rows fetched newest first (`after`: the page just newer than an id):
    the rows kept, and whether newer and older rows exist beyond them."""
    more = len(rows) > PAGE
    if after is not None and before is None:
        rows = rows[-PAGE:]
        newer, older = more, bool(rows) and exists(older_than=rows[-1].id)
    else:
        rows = rows[:PAGE]
        newer, older = before is not None and bool(rows) and exists(newer_than=rows[0].id), more
    return rows, bool(newer), bool(older)


def runs_view(reader: ReadOnlyStore, query: dict[str, list[str]]) -> View:
    before, after = int_param(query, "before"), int_param(query, "after")
    fetched = reader.runs_page(before=before, after=None if before is not None else after, limit=PAGE + 1)
    rows, newer, older = _page(fetched, before=before, after=after, exists=reader.run_exists)
    links = {}
    if newer:
        links["prev"] = with_query("/runs", after=rows[0].id)
    if older:
        links["next"] = with_query("/runs", before=rows[-1].id)
    document = [{key: getattr(run, key) for key in oncall.RUN_COLUMNS} for run in rows]
    context = {"runs": rows, "total": reader.count_runs(), "links": links, "page_size": PAGE}
    return View("runs.html", context, document, links={rel: json_twin(url) for rel, url in links.items()}, cli="connector status --runs N --json")


def failures_view(reader: ReadOnlyStore, query: dict[str, list[str]]) -> View:
    kind = kind_param(query)
    include_resolved = (query.get("all") or [""])[-1] in ("1", "true", "yes")
    before, after = int_param(query, "before"), int_param(query, "after")
    fetched = reader.failures_page(kind=kind, include_resolved=include_resolved, before=before, after=None if before is not None else after, limit=PAGE + 1)

    def exists(**beyond: int) -> bool:
        return reader.failure_exists(kind=kind, include_resolved=include_resolved, **beyond)

    rows, newer, older = _page(fetched, before=before, after=after, exists=exists)
    filters = {"kind": kind, "all": "1" if include_resolved else None}
    links = {}
    if newer:
        links["prev"] = with_query("/failures", **filters, after=rows[0].id)
    if older:
        links["next"] = with_query("/failures", **filters, before=rows[-1].id)
    open_by_kind = reader.count_open_failures()
    tabs = [("all kinds", None, sum(open_by_kind.values()))] + [(k, k, open_by_kind.get(k, 0)) for k in KINDS]
    context = {
        "failures": rows,
        "kind": kind,
        "include_resolved": include_resolved,
        "total": reader.count_failures(kind=kind, include_resolved=include_resolved),
        "tabs": [(label, with_query("/failures", kind=value, all=filters["all"]), count, value == kind) for label, value, count in tabs],
        "toggle": with_query("/failures", kind=kind, all=None if include_resolved else "1"),
        "links": links,
        "page_size": PAGE,
    }
    cli = "connector failures list" + (f" --kind {kind}" if kind else "") + (" --all" if include_resolved else "") + " --json"
    document = [oncall.failure_document(row) for row in rows]
    return View("failures.html", context, document, links={rel: json_twin(url) for rel, url in links.items()}, cli=cli)


def code_segments(text: str) -> list[tuple[str, bool]]:
    """`next_step`'s text in pieces, commands (between backticks) marked True."""
    return [(piece, index % 2 == 1) for index, piece in enumerate(text.split("`")) if piece]


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def answer_text(response: str | None) -> str | None:
    """Jobylon's kept answer, indented when it is JSON (it was cut to 2,000 characters, so often not)."""
    if not response:
        return response
    try:
        return pretty(json.loads(response))
    except ValueError:
        return response


def failure_view(reader: ReadOnlyStore, failure_id: int) -> View:
    row = reader.failure(failure_id)
    if row is None:
        raise NotFound(f"no failure with id {failure_id}")
    document = oncall.failure_document(row, detail=True)
    context = {
        "f": document,
        "row": row,
        "request": pretty(document["request"]) if document["request"] is not None else None,
        "response": answer_text(document["response"]),
        "next_step": code_segments(oncall.shell_next_step(row)),
        "commands": oncall.fix_commands(row),
    }
    return View("failure.html", context, document, cli=f"connector failures show {row.id} --json")


def _event_document(event: EventRow | None) -> dict[str, Any] | None:
    if event is None:
        return None
    document = {key: getattr(event, key) for key in EventRow.__dataclass_fields__ if key != "payload"}
    document["payload"] = event.payload_data
    return document


def _operation_document(row: OperationRow) -> dict[str, Any]:
    return {key: getattr(row, key) for key in OperationRow.__dataclass_fields__}


def webhook_view(reader: ReadOnlyStore, remote_id: str, event: EventRow | None) -> dict[str, Any] | None:
    """What Jobylon's calendar_event deliveries said of this interview (its event's status, RSVPs and
    video link, and any other event settled to it): `connector events show REMOTE_ID --json`, with
    `events` listing them for the page. None for an interview without a mapping."""
    if event is None:
        return None
    document = oncall.event_document(reader, remote_id)
    # a link only to a web address: a javascript: or data: URL from elsewhere stays text
    events = [
        {**hook, "video_link_safe": isinstance(hook["video_link"], str) and hook["video_link"].lower().startswith(("https://", "http://"))}
        for hook in [document["event"], *document["other_events"]]
        if hook is not None
    ]
    return {"document": document, "events": events}


def event_view(reader: ReadOnlyStore, remote_id: str) -> View:
    event = reader.event(remote_id)
    operations, total = reader.operations_of(remote_id, limit=EVENT_CALLS)
    failures: list[FailureRow] = reader.failures_of(remote_id)
    if event is None and not operations and not failures:
        raise NotFound(f"no interview {remote_id!r} in the state database")
    webhooks = webhook_view(reader, remote_id, event)
    payload = event.payload_data if event is not None else None
    payload_source = "the payload last sent"
    if payload is None:  # a create in doubt or failed keeps its body with its failure
        payload = reader.last_request(remote_id)
        payload_source = "the request of its last failure"
    document = {
        "remote_id": remote_id,
        "event": _event_document(event),
        "operations": [_operation_document(op) for op in operations],
        "operations_total": total,
        "failures": [oncall.failure_document(f) for f in failures],
        "webhooks": webhooks["document"] if webhooks is not None else None,
    }
    context = {
        "remote_id": remote_id,
        "event": event,
        "payload": payload,
        "payload_text": pretty(payload) if payload is not None else None,
        "payload_source": payload_source,
        "operations": operations,
        "operations_total": total,
        "failures": failures,
        "webhooks": webhooks,
    }
    return View("event.html", context, document)
