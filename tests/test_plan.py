"""The pure diff: decision table cases and a hypothesis property over random desired and prior state."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.model import Interview
from connector.plan import Create, Delete, Invalid, Known, Policy, Recreate, Skip, Update, guard, plan
from connector.validation import build_interview

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def interview(remote_id="R1", hours=24, **changes) -> Interview:
    values = {
        "remote_id": remote_id,
        "title": "Interview",
        "description": "",
        "start": (NOW + timedelta(hours=hours)).isoformat(),
        "duration_minutes": 60,
        "timezone": "Europe/Stockholm",
        "organizer_email": "recruiter@acme.example",
        "application_ids": [1001],
        **changes,
    }
    result = build_interview(values)
    assert isinstance(result, Interview), result
    return result


def known_for(d: Interview, event_id=7, **changes) -> Known:
    return replace(
        Known(d.remote_id, event_id, "synced", d.mutable_hash, d.fixed_hash, d.ends_at_utc),
        **changes,
    )


def only_action(p):
    assert len(p.actions) == 1, p.actions
    return p.actions[0]


def test_new_interview_is_created_and_unchanged_one_is_nothing():
    d = interview()
    assert isinstance(only_action(plan([d], {}, NOW)), Create)
    p = plan([d], {d.remote_id: known_for(d)}, NOW)
    assert p.actions == [] and p.unchanged == 1


def test_updatable_change_is_update_fixed_change_is_recreate_or_report():
    d = interview()
    k = {d.remote_id: known_for(d)}
    assert isinstance(only_action(plan([interview(title="New title")], k, NOW)), Update)
    assert isinstance(only_action(plan([interview(hours=30)], k, NOW)), Update)
    for change in ({"application_ids": [1001, 1002]}, {"organizer_email": "ops@initech.example"}, {"location": "Room 2"}, {"videoconferencing": True}):
        assert isinstance(only_action(plan([interview(**change)], k, NOW)), Recreate), change
    skip = only_action(plan([interview(location="Room 2")], k, NOW, policy=Policy(on_fixed_field_change="report")))
    assert isinstance(skip, Skip) and skip.report


def test_cancelled_is_deleted_and_absent_from_complete_fetch_is_deleted():
    d = interview()
    k = {d.remote_id: known_for(d)}
    assert isinstance(only_action(plan([interview(cancelled=True)], k, NOW)), Delete)
    assert isinstance(only_action(plan([], k, NOW)), Delete)
    assert plan([], k, NOW, complete=False).actions == []
    assert plan([], k, NOW, unidentified=1).actions == []


def test_ended_events_are_left_alone():
    past = interview(hours=-5)
    assert isinstance(only_action(plan([past], {}, NOW)), Skip)
    assert plan([], {past.remote_id: known_for(past)}, NOW).actions == []
    assert plan([replace(past, title="changed")], {past.remote_id: known_for(past)}, NOW).actions == []


def test_invalid_item_is_reported_and_its_event_is_not_deleted():
    from connector.model import FieldError, InvalidItem

    d = interview()
    bad = InvalidItem("R1", 0, (FieldError("timezone", "unknown"),))
    p = plan([], {d.remote_id: known_for(d)}, NOW, invalid=[bad])
    assert [type(a) for a in p.actions] == [Invalid]


def test_in_doubt_parked_and_backing_off_items_are_held():
    d = interview()
    in_doubt = Known(d.remote_id, None, "in_doubt")
    assert isinstance(only_action(plan([d], {d.remote_id: in_doubt}, NOW)), Skip)
    parked = Known(d.remote_id, None, "failed", failure_kind="permanent", failed_content_hash=d.content_hash)
    assert isinstance(only_action(plan([d], {d.remote_id: parked}, NOW)), Skip)
    assert isinstance(only_action(plan([interview(title="fixed")], {d.remote_id: parked}, NOW)), Create)
    waiting = Known(d.remote_id, None, "failed", failure_kind="transient", next_attempt_at=NOW + timedelta(minutes=1))
    assert isinstance(only_action(plan([d], {d.remote_id: waiting}, NOW)), Skip)
    assert isinstance(only_action(plan([d], {d.remote_id: replace(waiting, next_attempt_at=NOW)}, NOW)), Create)


def test_guard():
    d = interview()
    p = plan([], {f"R{i}": known_for(interview(f"R{i}"), event_id=i) for i in range(10)}, NOW)
    assert "no interviews" in guard(p, mapped=10, fetched=0, complete=True, max_deletes=50, max_delete_fraction=1)
    assert "max_deletes" in guard(p, mapped=10, fetched=3, complete=True, max_deletes=5, max_delete_fraction=1)
    assert "max_delete_fraction" in guard(p, mapped=10, fetched=3, complete=True, max_deletes=50, max_delete_fraction=0.5)
    assert guard(p, mapped=10, fetched=3, complete=True, max_deletes=50, max_delete_fraction=1.0) is None
    assert guard(plan([d], {}, NOW), mapped=0, fetched=1, complete=True, max_deletes=0, max_delete_fraction=0) is None


# -- the property ---------------------------------------------------------------------------

REMOTE_IDS = [f"r{i}" for i in range(8)]
interviews = st.builds(
    lambda rid, hours, minutes, tz, org, apps, title, loc, video, cancelled: interview(
        rid,
        hours,
        duration_minutes=minutes,
        timezone=tz,
        organizer_email=org,
        application_ids=apps,
        title=title,
        location=loc,
        videoconferencing=video,
        cancelled=cancelled,
    ),
    st.sampled_from(REMOTE_IDS),
    st.integers(-72, 400),
    st.integers(1, 480),
    st.sampled_from(["Europe/Stockholm", "Europe/London", "America/New_York"]),
    st.sampled_from(["a@x.example", "b@x.example"]),
    st.lists(st.integers(1000, 1004), min_size=1, max_size=3),
    st.sampled_from(["Interview", "Final round"]),
    st.sampled_from([None, "Room 1"]),
    st.sampled_from([None, True, False]),
    st.booleans(),
)


def unique_by_id(items):
    return list({i.remote_id: i for i in items}.values())


class FakeJobylon:
    """Jobylon's semantics in memory: events by id, PUT changes only the update-able fields."""

    def __init__(self):
        self.events: dict[int, dict] = {}
        self.next_id = 1

    def create(self, payload):
        self.events[self.next_id] = dict(payload)
        self.next_id += 1
        return self.next_id - 1

    def apply(self, p, known):
        for action in p.actions:
            if isinstance(action, Create):
                known[action.remote_id] = known_for(action.interview, self.create(action.interview.payload))
            elif isinstance(action, Update):
                self.events[action.event_id].update(action.interview.update_payload)
                known[action.remote_id] = known_for(action.interview, action.event_id)
            elif isinstance(action, Recreate):
                self.events.pop(action.event_id, None)
                known[action.remote_id] = known_for(action.interview, self.create(action.interview.payload))
            elif isinstance(action, Delete):
                if action.event_id is not None:
                    self.events.pop(action.event_id, None)
                known[action.remote_id] = Known(action.remote_id, None, "deleted")


@settings(max_examples=300, deadline=None)
@given(
    desired=st.lists(interviews, max_size=8).map(unique_by_id),
    prior=st.lists(interviews, max_size=8).map(unique_by_id),
    prior_deleted=st.sets(st.sampled_from(REMOTE_IDS), max_size=3),
)
def test_applying_the_plan_yields_exactly_the_desired_future_events(desired, prior, prior_deleted):
    jobylon = FakeJobylon()
    known = {}
    for old in prior:
        if old.remote_id in prior_deleted:
            known[old.remote_id] = Known(old.remote_id, None, "deleted")
        else:
            known[old.remote_id] = known_for(old, jobylon.create(old.payload))
    stale_past = {k.event_id for k in known.values() if k.event_id is not None and k.ends_at_utc <= NOW}

    jobylon.apply(plan(desired, known, NOW), known)

    by_id = {d.remote_id: d for d in desired}
    for d in desired:
        k = known.get(d.remote_id)
        live = k.event_id if k and k.status != "deleted" else None
        if d.ends_at_utc > NOW and not d.cancelled:
            assert live is not None and jobylon.events[live] == d.payload
        elif d.ends_at_utc > NOW and d.cancelled:
            assert live is None
    # Nothing else: every event in Jobylon is a mapped one, or an ended one left alone.
    mapped = {k.event_id for k in known.values() if k.event_id is not None and k.status != "deleted"}
    for event_id in jobylon.events:
        assert event_id in mapped or event_id in stale_past
    for remote_id, k in known.items():
        if remote_id not in by_id and k.event_id is not None:
            assert k.ends_at_utc <= NOW  # absent ones were deleted unless ended
    # And planning again sends nothing.
    assert plan(desired, known, NOW).calls == []
