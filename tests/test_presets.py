"""The presets (`source.preset = "greenhouse" | "merge"`) against fixture servers on 127.0.0.1 that answer
in each vendor's documented shape (Greenhouse Harvest `GET /v1/scheduled_interviews`, Merge ATS
`GET /api/ats/v1/interviews`): auth, pagination over several pages, the incremental parameter, then
changes and deletions through an incremental and a complete pass, into the sandbox."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from conftest import Harness, VendorServer, invoke_cli

from connector.config import load_settings
from connector.errors import ConfigError
from connector.presets import GREENHOUSE_ALL_DAY

GH_KEY = "gh-harvest-key-0123456789"
MERGE_KEY = "merge-production-key-0123456789"
MERGE_ACCOUNT = "merge-account-token-abcdef"


def upcoming(days: int, hour: int) -> datetime:
    return datetime.combine(date.today() + timedelta(days=days), datetime.min.time(), UTC).replace(hour=hour)


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


# -- Greenhouse Harvest ---------------------------------------------------------------------------


def gh_interview(number: int, *, hour: int = 9, minutes: int = 45, updated: str | None = None, all_day: bool = False, **changes: Any):
    """Interview n, last updated at 08:00 + n hours on 2026-04-01 unless `updated` says otherwise."""
    start = upcoming(3 + number % 5, hour)
    updated = updated or f"2026-04-01T{8 + number:02d}:00:00.000Z"
    document = {
        "id": 9128480 + number,
        "application_id": 4684150 + number,
        "external_event_id": f"event{number}",
        "start": {"date": start.date().isoformat()} if all_day else {"date_time": z(start)},
        "end": {"date": (start.date() + timedelta(days=1)).isoformat()} if all_day else {"date_time": z(start + timedelta(minutes=minutes))},
        "location": "Big Conference Room",
        "video_conferencing_url": None,
        "status": "scheduled",
        "created_at": "2026-03-01T14:31:51.019Z",
        "updated_at": updated,
        "interview": {"id": 7001, "name": "Culture Fit" if number % 2 else "Technical Interview"},
        "organizer": {"id": 2000 + number % 2, "first_name": "Jack", "last_name": "Shepard", "name": "Jack Shepard", "employee_id": "12345"},
        "interviewers": [
            {
                "id": 4080,
                "employee_id": "employee123",
                "name": "Kate Austen",
                "email": "kate.austen@example.com",
                "response_status": "needs_action",
                "scorecard_id": None,
            }
        ],
    }
    document.update(changes)
    return document


class Greenhouse:
    """Harvest's list endpoint as documented: Basic auth with the API key as user name and an empty
    password, per_page (1..500; a page may hold fewer), page, RFC 8288 Link headers, updated_after."""

    PAGE = 2  # what this server sends per page, whatever per_page asks: "up to"

    def __init__(self, interviews: list[dict[str, Any]]) -> None:
        self.interviews = interviews
        self.server = VendorServer(self.answer)
        self.url = self.server.base + "/v1/scheduled_interviews"

    def answer(self, path: str, query: dict[str, str], headers: Any, base: str):
        expected = "Basic " + base64.b64encode(f"{GH_KEY}:".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {"message": "Invalid Basic Auth credentials"}, {}
        if path != "/v1/scheduled_interviews" or not 1 <= int(query.get("per_page", "100")) <= 500:
            return 422, {"message": "bad request"}, {}
        chosen = [i for i in self.interviews if "updated_after" not in query or i["updated_at"] >= query["updated_after"].replace("Z", ".000Z")]
        page = int(query.get("page", "1"))
        last = max(1, -(-len(chosen) // self.PAGE))
        links = []
        if page < last:
            links.append(f'<{base}{path}?{urlencode({**query, "page": page + 1})}>; rel="next"')
        links.append(f'<{base}{path}?{urlencode({**query, "page": last})}>; rel="last"')
        return 200, chosen[(page - 1) * self.PAGE : page * self.PAGE], {"Link": ", ".join(links)}

    def stop(self) -> None:
        self.server.stop()


def greenhouse_harness(tmp_path, sandbox, api: Greenhouse, **sync: Any) -> Harness:
    (tmp_path / "organizer_email.csv").write_text("greenhouse_user_id,email\n2000,recruiter@acme.example\n2001,hiring.manager@acme.example\n")
    (tmp_path / "jobylon_application.csv").write_text(
        "greenhouse_application_id,jobylon_application_id\n" + "".join(f"{4684150 + n},{1100 + n}\n" for n in range(10))
    )
    h = Harness(tmp_path, sandbox, sync={"full_every": 10, **sync})
    h.data["source"] = {"preset": "greenhouse", "api_key": GH_KEY, "url": api.url}
    h.data["mapping"] = {
        "lookups": {
            "organizer_email": {"kind": "csv", "path": str(tmp_path / "organizer_email.csv")},
            "jobylon_application": {"kind": "csv", "path": str(tmp_path / "jobylon_application.csv")},
        }
    }
    return h


def test_greenhouse_preset_fills_the_source_and_the_mapping(tmp_path):
    settings = load_settings(
        data={
            "jobylon": {"app_id": "a", "app_key": "k-123456"},
            "source": {"preset": "greenhouse", "api_key": GH_KEY, "params": {"per_page": 100}},
            "mapping": {"organizer_email": "interviewers[0].email", "lookups": {"jobylon_application": {"kind": "csv", "path": "x.csv"}}},
        }
    )
    source = settings.source
    assert source.kind == "http" and source.url == "https://harvest.greenhouse.io/v1/scheduled_interviews" and source.preset == "greenhouse"
    assert source.auth.type == "basic" and source.auth.username == GH_KEY and source.auth.password.get_secret_value() == ""
    assert source.pagination.style == "link_header" and source.since_param == "updated_after" and source.params == {"per_page": 100}
    assert settings.mapping.organizer_email == "interviewers[0].email", "every key is overridable"
    assert settings.mapping.start.startswith("start.date_time || (start.date && fail(")
    assert GH_KEY in settings.secrets(), "the API key travels as the Basic user name: still a secret"


def test_greenhouse_sync_pages_changes_and_deletions(tmp_path, sandbox):
    interviews = [gh_interview(n) for n in range(5)] + [gh_interview(5, all_day=True)]
    api = Greenhouse(interviews)
    h = greenhouse_harness(tmp_path, sandbox, api)
    try:
        first = h.sync(full=None)
        assert first.complete and first.fetched == 6 and first.counts["created"] == 5 and first.counts["invalid"] == 1
        pages = [r["query"] for r in api.server.requests]
        assert [q.get("page") for q in pages] == [None, "2", "3"] and all(q["per_page"] == "500" for q in pages)
        (zero,) = [e for e in h.jobylon_events() if e["participants"] == [1100]]
        local = upcoming(3, 9).astimezone(ZoneInfo("Europe/Stockholm")).replace(tzinfo=None).isoformat()
        assert zero["title"] == "Technical Interview" and zero["start_time"] == local and zero["duration"] == 45
        assert zero["timezone"] == "Europe/Stockholm" and zero["location"] == "Big Conference Room" and zero["organizer"] == "recruiter@acme.example"
        assert sorted(e["organizer"] for e in h.jobylon_events()) == ["hiring.manager@acme.example"] * 2 + ["recruiter@acme.example"] * 3
        failure = h.store.failures(remote_id="9128485")[0]
        assert failure.message == f"start: {GREENHOUSE_ALL_DAY}", "the all-day reason alone, not its echo (no end time)"

        assert h.store.get_meta("cursor") == "2026-04-01T12:00:00.000+00:00", "the newest updated_at of what was synced"

        # Interview 1 is moved, interview 3 deleted in Greenhouse (it only leaves the listing).
        interviews[1] = gh_interview(1, hour=13, updated="2026-04-02T08:00:00.000Z")
        del interviews[3]
        api.server.requests.clear()
        second = h.sync(full=None)
        assert not second.complete and api.server.requests[0]["query"]["updated_after"] == "2026-04-01T11:55:00Z"
        # fetched: 1 (moved), 4 (at the cursor, within the overlap: unchanged), 5 (all-day, still invalid)
        assert second.fetched == 3 and second.counts["updated"] == 1 and second.counts["unchanged"] == 1
        assert second.counts["deleted"] == 0 and len(h.jobylon_events()) == 5, "absence in an incremental fetch deletes nothing"

        api.server.requests.clear()
        third = h.sync(full=True)
        assert third.complete and third.counts["deleted"] == 1 and third.counts["updated"] == 0
        assert len(h.jobylon_events()) == 4
        assert all("updated_after" not in r["query"] for r in api.server.requests), "a complete fetch asks for everything"
    finally:
        h.close()
        api.stop()


def test_greenhouse_refused_credentials_are_a_source_error(tmp_path, sandbox):
    api = Greenhouse([gh_interview(0)])
    h = greenhouse_harness(tmp_path, sandbox, api)
    h.data["source"]["api_key"] = "not-the-key-0000"
    try:
        result = h.sync()
        assert result.outcome == "source_error" and "HTTP 401, the source refused the credentials" in (result.error or "")
        assert "not-the-key-0000" not in (result.error or "")
    finally:
        h.close()
        api.stop()


# -- Merge unified ATS ------------------------------------------------------------------------------


def merge_interview(number: int, *, hour: int = 10, modified: str | None = None, deleted: bool = False, **changes: Any):
    """Interview n, synced by Merge at 08:00 + n hours on 2026-04-01 unless `modified` says otherwise."""
    start = upcoming(4 + number % 3, hour)
    modified = modified or f"2026-04-01T{8 + number:02d}:00:00.000000Z"
    document = {
        "id": f"b5f2c3a1-0000-4000-8000-{number:012d}",
        "remote_id": str(800 + number),
        "created_at": "2026-03-01T00:00:00Z",
        "modified_at": modified,
        "application": f"92e8a369-fffe-430d-b93a-{number:012d}",
        "job_interview_stage": f"2f7adb59-3fe6-4b5b-aef6-{number:012d}",
        "organizer": f"52bf9b5e-0beb-4f6f-8a72-{number % 2:012d}",
        "interviewers": [f"f9813dd5-e70b-484c-91d8-{number:012d}"],
        "location": "Embarcadero Center 2",
        "start_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_at": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "remote_created_at": "2026-03-01T00:00:00Z",
        "remote_updated_at": "2026-03-02T00:00:00Z",
        "status": "SCHEDULED",
        "remote_was_deleted": deleted,
        "field_mappings": {"organization_defined_targets": {}, "linked_account_defined_targets": {"jobylon_application_id": str(1200 + number)}},
        "remote_data": None,
    }
    document.update(changes)
    return document


class Merge:
    """Merge's list endpoint as documented: Bearer API key and X-Account-Token, {next, previous,
    results} with `next` a cursor, modified_after, expand, include_deleted_data (deleted objects are
    left out unless asked)."""

    USERS: ClassVar[dict[int, str]] = {0: "recruiter@acme.example", 1: "talent@globex.example"}

    def __init__(self, interviews: list[dict[str, Any]]) -> None:
        self.interviews = interviews
        self.server = VendorServer(self.answer)
        self.url = self.server.base + "/api/ats/v1/interviews"

    def expanded(self, interview: dict[str, Any], expand: set[str]) -> dict[str, Any]:
        out = dict(interview)
        if "organizer" in expand:
            number = int(interview["organizer"][-12:])
            out["organizer"] = {"id": interview["organizer"], "first_name": "Ada", "last_name": "L", "email": self.USERS[number], "remote_was_deleted": False}
        if "job_interview_stage" in expand:
            out["job_interview_stage"] = {"id": interview["job_interview_stage"], "name": "Onsite" if int(interview["remote_id"]) % 2 else "Phone screen"}
        return out

    def answer(self, path: str, query: dict[str, str], headers: Any, base: str):
        if headers.get("Authorization") != f"Bearer {MERGE_KEY}" or headers.get("X-Account-Token") != MERGE_ACCOUNT:
            return 401, {"detail": "Authentication credentials were not provided."}, {}
        chosen = [i for i in self.interviews if query.get("include_deleted_data") == "true" or not i["remote_was_deleted"]]
        if "modified_after" in query:
            bound = datetime.fromisoformat(query["modified_after"])
            chosen = [i for i in chosen if datetime.fromisoformat(i["modified_at"]) > bound]
        size = min(int(query.get("page_size", "100")), 100)
        size = min(size, 2)  # this server pages by two, whatever was asked
        offset = int(base64.b64decode(query["cursor"]).decode().removeprefix("o=")) if "cursor" in query else 0
        page = chosen[offset : offset + size]
        more = offset + size < len(chosen)
        expand = set(query.get("expand", "").split(",")) - {""}
        return (
            200,
            {
                "next": base64.b64encode(f"o={offset + size}".encode()).decode() if more else None,
                "previous": None,
                "results": [self.expanded(i, expand) for i in page],
            },
            {},
        )

    def stop(self) -> None:
        self.server.stop()


def merge_harness(tmp_path, sandbox, api: Merge) -> Harness:
    h = Harness(tmp_path, sandbox, sync={"full_every": 10, "max_delete_fraction": 0.5})
    h.data["source"] = {"preset": "merge", "api_key": MERGE_KEY, "account_token": MERGE_ACCOUNT, "url": api.url}
    h.data["mapping"] = {}
    return h


def test_merge_preset_fills_the_source_and_the_mapping():
    settings = load_settings(
        data={"jobylon": {"app_id": "a", "app_key": "k-123456"}, "source": {"preset": "merge", "api_key": MERGE_KEY, "account_token": MERGE_ACCOUNT}}
    )
    source = settings.source
    assert source.url == "https://api.merge.dev/api/ats/v1/interviews" and source.auth.type == "bearer"
    assert source.headers == {"X-Account-Token": MERGE_ACCOUNT} and source.params["include_deleted_data"] == "true"
    assert source.pagination.style == "cursor" and source.items == "results" and source.since_param == "modified_after"
    assert settings.mapping.deleted == "remote_was_deleted" and settings.mapping.updated_at == "modified_at"
    assert {MERGE_KEY, MERGE_ACCOUNT} <= set(settings.secrets())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"preset": "merge", "api_key": MERGE_KEY}, "source.account_token: required key is missing"),
        ({"preset": "greenhouse"}, "source.api_key: required key is missing"),
        ({"preset": "lever", "api_key": "x"}, "source.preset: unknown preset 'lever'; expected one of greenhouse, merge"),
        (
            {"preset": "merge", "api_key": "merge\u200bkey", "account_token": MERGE_ACCOUNT},
            "source.api_key: contains a character an HTTP header cannot carry (U+200B at position 6)",
        ),
        ({"preset": "greenhouse", "api_key": "gh:key"}, "source.api_key: cannot contain ':'"),
    ],
    ids=["merge-no-account", "no-key", "unknown", "bad-key", "colon"],
)
def test_a_preset_without_what_it_needs_is_refused_at_load(source, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings(data={"jobylon": {"app_id": "a", "app_key": "k-123456"}, "source": source})
    assert expected in str(caught.value)
    assert MERGE_KEY not in str(caught.value)


def test_merge_sync_pages_changes_and_deletions(tmp_path, sandbox):
    interviews = [merge_interview(n) for n in range(5)] + [merge_interview(5, deleted=True)]
    api = Merge(interviews)
    h = merge_harness(tmp_path, sandbox, api)
    try:
        first = h.sync(full=None)
        assert first.complete and first.fetched == 6 and first.counts["created"] == 5 and first.counts["invalid"] == 0
        queries = [r["query"] for r in api.server.requests]
        assert len(queries) == 3 and all(q["include_deleted_data"] == "true" and q["expand"] == "organizer,job_interview_stage" for q in queries)
        assert "cursor" not in queries[0] and queries[1]["cursor"] and queries[2]["cursor"]
        events = h.jobylon_events()
        assert sorted(e["title"] for e in events) == ["Onsite", "Onsite", "Phone screen", "Phone screen", "Phone screen"]
        assert sorted(e["participants"][0] for e in events) == [1200, 1201, 1202, 1203, 1204]
        assert {e["organizer"] for e in events} == {"recruiter@acme.example", "talent@globex.example"}
        assert all(e["duration"] == 30 and e["location"] == "Embarcadero Center 2" for e in events)

        # In Merge: interview 1 rescheduled, interview 2 deleted (kept, flagged), interview 4 gone from the listing.
        later = "2026-04-02T08:00:00.000000Z"
        interviews[1] = merge_interview(1, hour=15, modified=later)
        interviews[2] = merge_interview(2, modified=later, deleted=True)
        del interviews[4]
        api.server.requests.clear()
        second = h.sync(full=None)
        assert not second.complete and api.server.requests[0]["query"]["modified_after"] == "2026-04-01T12:55:00Z"
        # fetched: 1 (moved), 2 (deleted), 5 (at the cursor, within the overlap; deleted before it was ever synced)
        assert second.fetched == 3 and second.counts["updated"] == 1 and second.counts["deleted"] == 1, "remote_was_deleted deletes on an incremental poll"
        assert len(h.jobylon_events()) == 4, "absence from an incremental fetch deletes nothing"

        third = h.sync(full=True)
        assert third.complete and third.counts["deleted"] == 1 and third.counts["updated"] == 0
        assert len(h.jobylon_events()) == 3
    finally:
        h.close()
        api.stop()


def test_check_sample_shows_mapped_items_beside_their_source_fields(tmp_path, sandbox):
    gh = Greenhouse([gh_interview(n) for n in range(4)] + [gh_interview(5, all_day=True)])
    merge = Merge([merge_interview(n) for n in range(4)])
    try:
        (tmp_path / "gh").mkdir()
        h = greenhouse_harness(tmp_path / "gh", sandbox, gh)
        result = invoke_cli("--config", str(h.config_file()), "check", "--sample", "3", env={"COLUMNS": "160"})
        h.close()
        assert result.returncode == 1, "the all-day interview cannot be synced"
        out = result.stdout
        for remote_id in ("9128480", "9128481", "9128482"):
            assert f"{remote_id} (item #" in out
        assert "9128483 (item #" not in out, "three samples"
        assert "interview.name = Technical Interview" in out and "title = Technical Interview" in out
        assert "organizer.id = 2000" in out and "organizer = recruiter@acme.example" in out and "participants = [1100]" in out
        assert "9128485: start: an all-day interview (start.date, no start.date_time)" in out
        (tmp_path / "check-greenhouse.txt").write_text(out)

        (tmp_path / "merge").mkdir()
        m = merge_harness(tmp_path / "merge", sandbox, merge)
        result = invoke_cli("--config", str(m.config_file()), "check", "--sample", "3", env={"COLUMNS": "160"})
        m.close()
        assert result.returncode == 0, result.stdout
        out = result.stdout
        assert out.count("(item #") == 3 and "job_interview_stage.name = Phone screen" in out and "organizer.email = recruiter@acme.example" in out
        assert "field_mappings.linked_account_defined_targets.jobylon_application_id = 1200" in out and "participants = [1200]" in out
        (tmp_path / "check-merge.txt").write_text(out)
        assert sandbox.events() == [], "check creates nothing"
    finally:
        gh.stop()
        merge.stop()
