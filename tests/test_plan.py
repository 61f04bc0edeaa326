"""The pure diff: decision table cases and a hypothesis property over random desired and prior state."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.model import FieldError, Interview, InvalidItem
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


def ten_absent():
    """A complete fetch missing all ten mapped events: ten deletions by absence."""
    p = plan([], {f"R{i}": known_for(interview(f"R{i}"), event_id=i + 1) for i in range(10)}, NOW)
    assert len(p.deletes) == 10 and all(d.by_absence for d in p.deletes)
    return p


def guard_of(p, *, mapped=10, fetched=3, complete=True, max_deletes=50, max_delete_fraction=1.0):
    return guard(p, mapped=mapped, fetched=fetched, complete=complete, max_deletes=max_deletes, max_delete_fraction=max_delete_fraction)


def test_guard_empty_source_refuses_any_deletion_and_says_so():
    p = ten_absent()
    refusal = "the source returned no interviews while 10 events are mapped; refusing to delete 10"
    assert guard_of(p, fetched=0) == refusal
    # It is the first guard: the others would refuse too, but the reason given is the empty source.
    assert guard_of(p, fetched=0, max_deletes=0, max_delete_fraction=0) == refusal
    assert guard_of(p, fetched=0, mapped=1) == "the source returned no interviews while 1 events are mapped; refusing to delete 10"
    # Its boundaries: one interview fetched, nothing mapped, or an incremental fetch.
    assert guard_of(p, fetched=1) is None
    assert guard_of(p, fetched=0, mapped=0) is None
    assert guard_of(p, fetched=0, complete=False) is None


def test_guard_max_deletes_boundary():
    p = ten_absent()
    assert guard_of(p, max_deletes=9) == "10 deletions planned, above sync.max_deletes = 9"
    assert guard_of(p, max_deletes=10) is None
    assert guard_of(p, max_deletes=11) is None


def test_guard_max_delete_fraction_boundary():
    p = ten_absent()  # 10 of 20 mapped: 50 %
    assert guard_of(p, mapped=20, max_delete_fraction=0.49) == (
        "10 of 20 mapped events (50%) are absent from the source, above sync.max_delete_fraction = 0.49"
    )
    assert guard_of(p, mapped=20, max_delete_fraction=0.5) is None
    assert guard_of(p, mapped=20, max_delete_fraction=0.51) is None
    assert guard_of(p, mapped=0, max_delete_fraction=0) is None  # nothing mapped: no fraction to take


def test_guard_counts_cancellations_against_max_deletes_but_not_against_the_fraction():
    d = interview()
    p = plan([interview(cancelled=True)], {d.remote_id: known_for(d)}, NOW)
    assert [type(a) for a in p.actions] == [Delete] and not p.actions[0].by_absence
    assert guard_of(p, mapped=1, fetched=1, max_delete_fraction=0) is None
    assert guard_of(p, mapped=1, fetched=1, max_deletes=0) == "1 deletions planned, above sync.max_deletes = 0"


def test_guard_ignores_plans_without_deletions_of_live_events():
    never_reached = Known("R9", None, "failed")
    p = plan([interview()], {"R9": never_reached}, NOW)
    assert [type(a) for a in p.actions] == [Create, Delete] and p.deletes == []
    assert guard_of(p, mapped=0, fetched=0, max_deletes=0, max_delete_fraction=0) is None


def test_plan_counts_and_lists():
    d, gone = interview(), interview("R2")
    never_reached = Known("R9", None, "failed")
    p = plan([interview(title="changed"), interview("R3")], {d.remote_id: known_for(d), "R2": known_for(gone, 8), "R9": never_reached}, NOW)
    assert [a.name for a in p.actions] == ["update", "create", "delete", "delete"]
    assert p.count("delete") == 2 and p.count("update") == 1 and p.count("create") == 1 and p.count("skip") == 0
    assert [(a.remote_id, a.event_id) for a in p.deletes] == [("R2", 8)]  # the mapping-only delete calls nothing
    assert [a.remote_id for a in p.calls] == ["R1", "R3", "R2", "R9"]
    assert p.actions[3] == Delete("R9", None, "absent from a complete fetch; never reached Jobylon", by_absence=True)


def ending_at(offset: timedelta, **changes) -> Interview:
    """An hour-long interview ending at NOW + offset."""
    return interview(start=(NOW + offset - timedelta(minutes=60)).isoformat(), **changes)


def test_ended_rule_boundary_for_desired_interviews():
    for offset in (timedelta(0), timedelta(seconds=-1)):  # ended exactly now, or a second ago
        ended = ending_at(offset)
        assert ended.ends_at_utc == NOW + offset
        assert only_action(plan([ended], {}, NOW)) == Skip("R1", None, "event has ended")
        p = plan([ending_at(offset, title="changed")], {"R1": known_for(ended)}, NOW)
        assert p.actions == [] and p.unchanged == 1
        assert plan([ending_at(offset, cancelled=True)], {"R1": known_for(ended)}, NOW).actions == []
    running = ending_at(timedelta(seconds=1))  # ends a second from now: still synced
    assert isinstance(only_action(plan([running], {}, NOW)), Create)
    assert only_action(plan([ending_at(timedelta(seconds=1), title="changed")], {"R1": known_for(running)}, NOW)) == Update(
        ending_at(timedelta(seconds=1), title="changed"), 7
    )
    assert only_action(plan([ending_at(timedelta(seconds=1), cancelled=True)], {"R1": known_for(running)}, NOW)) == Delete("R1", 7, "cancelled at the source")


def test_ended_rule_boundary_for_absent_events():
    d = interview()
    for offset in (timedelta(0), timedelta(seconds=-1)):
        assert plan([], {"R1": known_for(d, ends_at_utc=NOW + offset)}, NOW).actions == []
    expected = Delete("R1", 7, "absent from a complete fetch", by_absence=True)
    assert only_action(plan([], {"R1": known_for(d, ends_at_utc=NOW + timedelta(seconds=1))}, NOW)) == expected
    assert only_action(plan([], {"R1": known_for(d, ends_at_utc=None)}, NOW)) == expected  # end unknown: not ended


def test_absent_events_in_doubt_deleted_or_unknown_to_the_fetch():
    d = interview()
    assert only_action(plan([], {"R1": Known("R1", 7, "in_doubt")}, NOW)) == Skip("R1", 7, "in doubt and absent from the source: resolve it")
    assert plan([], {"R1": Known("R1", 7, "deleted")}, NOW).actions == []
    assert plan([d], {"R1": known_for(d)}, NOW).actions == []


def test_a_held_failure_of_an_absent_item_holds_its_deletion():
    d = interview()
    later = NOW + timedelta(minutes=1)
    waiting = known_for(d, failure_kind="transient", next_attempt_at=later)
    assert only_action(plan([], {"R1": waiting}, NOW)) == Skip("R1", 7, f"transient failure; next attempt at {later.isoformat()}")
    held_at = NOW + timedelta(seconds=1)
    assert isinstance(only_action(plan([], {"R1": replace(waiting, next_attempt_at=held_at)}, NOW)), Skip)
    # The backoff is over (exactly now, or earlier), or there is none: the deletion goes ahead.
    expected = Delete("R1", 7, "absent from a complete fetch", by_absence=True)
    for next_attempt_at in (NOW, NOW - timedelta(seconds=1), None):
        assert only_action(plan([], {"R1": replace(waiting, next_attempt_at=next_attempt_at)}, NOW)) == expected
    # A permanent failure parks an absent item only when it was recorded without source content.
    parked = known_for(d, failure_kind="permanent", failed_content_hash=None)
    assert only_action(plan([], {"R1": parked}, NOW)) == Skip("R1", 7, "parked after a permanent failure until the source changes or a replay")
    assert only_action(plan([], {"R1": replace(parked, failed_content_hash=d.content_hash)}, NOW)) == expected
    # A failure kind the plan does not hold for leaves the deletion alone.
    assert only_action(plan([], {"R1": replace(waiting, failure_kind="in_doubt")}, NOW)) == expected


def test_held_skips_name_the_live_event_only():
    d = interview()
    later = NOW + timedelta(minutes=1)
    reason = f"transient failure; next attempt at {later.isoformat()}"
    synced = known_for(d, failure_kind="transient", next_attempt_at=later)
    assert only_action(plan([d], {"R1": synced}, NOW)) == Skip("R1", 7, reason)
    deleted = replace(synced, status="deleted")
    assert only_action(plan([d], {"R1": deleted}, NOW)) == Skip("R1", None, reason)
    # The backoff ends exactly now: planned as usual.
    retried = plan([interview(title="changed")], {"R1": replace(synced, next_attempt_at=NOW)}, NOW)
    assert only_action(retried) == Update(interview(title="changed"), 7)
    parked = known_for(d, failure_kind="permanent", failed_content_hash=d.content_hash)
    assert only_action(plan([d], {"R1": parked}, NOW)) == Skip("R1", 7, "parked after a permanent failure until the source changes or a replay")


def test_in_doubt_and_deleted_mappings_of_desired_interviews():
    d = interview()
    assert only_action(plan([d], {"R1": Known("R1", 7, "in_doubt")}, NOW)) == Skip("R1", 7, "create in doubt: resolve it (connector resolve)")
    assert only_action(plan([d], {"R1": known_for(d, status="deleted")}, NOW)) == Create(d)
    assert only_action(plan([d], {"R1": known_for(d, event_id=None, status="failed")}, NOW)) == Create(d)
    assert plan([interview(cancelled=True)], {"R1": known_for(d, status="deleted")}, NOW).actions == []
    assert plan([interview(cancelled=True)], {}, NOW).actions == []


def test_fixed_field_change_reasons():
    d = interview()
    moved = interview(location="Room 2")
    assert only_action(plan([moved], {"R1": known_for(d)}, NOW)) == Recreate(moved, 7, "participants, organizer, location or videoconferencing changed")
    report = only_action(plan([moved], {"R1": known_for(d)}, NOW, policy=Policy(on_fixed_field_change="report")))
    assert report == Skip(
        "R1",
        7,
        'a field PUT cannot change (participants, organizer, location or videoconferencing) changed; on_fixed_field_change = "report"',
        report=True,
        content_hash=moved.content_hash,
    )


def test_invalid_items_carry_their_mapped_event():
    d = interview()
    bad = InvalidItem("R1", 0, (FieldError("timezone", "unknown"),))
    unreadable = InvalidItem(None, 3, (FieldError("remote_id", "missing"),))
    p = plan([], {"R1": known_for(d), "R2": known_for(interview("R2"), 8)}, NOW, invalid=[bad, unreadable], unidentified=0)
    assert [(type(a), a.remote_id, a.event_id) for a in p.actions] == [(Invalid, "R1", 7), (Invalid, "<item #3>", None), (Delete, "R2", 8)]
    held = plan([], {"R2": known_for(interview("R2"), 8)}, NOW, invalid=[unreadable], unidentified=1)
    assert [type(a) for a in held.actions] == [Invalid] and held.deletions_held_back == "1 item(s) in the fetch had no readable remote id"
    assert plan([], {"R2": known_for(interview("R2"), 8)}, NOW).deletions_held_back is None


def gone(remote_id="R1"):
    """An item the source marks deleted whose other fields no longer validate."""
    return InvalidItem(remote_id, 0, (FieldError("start", "missing"),), "c0ffee", deleted=True)


def test_a_deleted_item_that_no_longer_validates_deletes_its_event():
    d = interview()
    expected = Delete("R1", 7, "deleted at the source")
    assert only_action(plan([], {"R1": known_for(d)}, NOW, invalid=[gone()])) == expected
    assert plan([], {"R1": known_for(d)}, NOW, invalid=[gone()], complete=False).actions == [expected]
    # Nothing mapped, nothing live, or taken out of sync: nothing to do, counted as unchanged.
    for k in ({}, {"R1": Known("R1", None, "deleted")}, {"R1": known_for(d, status="detached")}, {"R1": known_for(d, event_id=None, status="failed")}):
        p = plan([], k, NOW, invalid=[gone()])
        assert p.actions == [] and p.unchanged == 1, k
    # Without a readable id it is an invalid item like any other.
    assert [type(a) for a in plan([], {}, NOW, invalid=[gone(None)]).actions] == [Invalid]


def test_a_deleted_item_waits_for_in_doubt_and_held_failures():
    d = interview()
    assert only_action(plan([], {"R1": Known("R1", 7, "in_doubt")}, NOW, invalid=[gone()])) == Skip("R1", 7, "create in doubt: resolve it (connector resolve)")
    later = NOW + timedelta(minutes=1)
    waiting = known_for(d, failure_kind="transient", next_attempt_at=later)
    assert only_action(plan([], {"R1": waiting}, NOW, invalid=[gone()])) == Skip("R1", 7, f"transient failure; next attempt at {later.isoformat()}")
    parked = known_for(d, failure_kind="permanent", failed_content_hash="c0ffee")
    assert isinstance(only_action(plan([], {"R1": parked}, NOW, invalid=[gone()])), Skip)
    # The failure was about other content, or its backoff is over: the deletion goes ahead.
    expected = Delete("R1", 7, "deleted at the source")
    assert only_action(plan([], {"R1": replace(parked, failed_content_hash="other")}, NOW, invalid=[gone()])) == expected
    assert only_action(plan([], {"R1": replace(waiting, next_attempt_at=NOW)}, NOW, invalid=[gone()])) == expected


def test_a_deleted_item_leaves_an_ended_event_alone_at_the_boundary():
    d = interview()
    for offset in (timedelta(0), timedelta(seconds=-1)):
        p = plan([], {"R1": known_for(d, ends_at_utc=NOW + offset)}, NOW, invalid=[gone()])
        assert p.actions == [] and p.unchanged == 1
    expected = Delete("R1", 7, "deleted at the source")
    assert only_action(plan([], {"R1": known_for(d, ends_at_utc=NOW + timedelta(seconds=1))}, NOW, invalid=[gone()])) == expected
    assert only_action(plan([], {"R1": known_for(d, ends_at_utc=None)}, NOW, invalid=[gone()])) == expected


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
