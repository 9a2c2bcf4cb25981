"""Incremental round trip: full sync, mutate the sandbox, sync from the state: only the changes move."""

from __future__ import annotations

from tests.support.tap_runner import run_tap

INCREMENTAL = {"deals", "persons", "organizations", "activities", "products"}


def ids(result, stream):
    return sorted(record["id"] for record in result.records(stream))


def test_full_then_incremental_emits_exactly_the_changes(sandbox, api_config):
    first = run_tap(api_config, streams=INCREMENTAL)
    expected = sandbox.expected_counts()
    for stream in INCREMENTAL:
        assert len(first.records(stream)) == expected[stream], stream
        assert len(set(ids(first, stream))) == expected[stream], f"duplicates in {stream}"
    state = first.last_state
    assert state is not None

    deals = sandbox.dataset["deals"]
    changed_deal = deals[3]["id"]
    deleted_deal = deals[5]["id"]
    sandbox.update_record("deals", changed_deal, title="Renamed after the first sync")
    sandbox.delete_record("deals", deleted_deal)
    new_deal = sandbox.add_record("deals", title="Brand new deal")["id"]
    changed_person = sandbox.dataset["persons"][0]["id"]
    sandbox.update_record("persons", changed_person, name="Zoë Ångström")

    second = run_tap(api_config, state=state, streams=INCREMENTAL)
    assert ids(second, "deals") == sorted([changed_deal, deleted_deal, new_deal])
    assert ids(second, "persons") == [changed_person]
    for stream in ("organizations", "activities", "products"):
        assert second.records(stream) == [], stream
    renamed = next(r for r in second.records("deals") if r["id"] == changed_deal)
    assert renamed["title"] == "Renamed after the first sync"
    deleted = next(r for r in second.records("deals") if r["id"] == deleted_deal)
    assert deleted["is_deleted"] is True
    assert second.records("persons")[0]["name"] == "Zoë Ångström"

    # Nothing changed since: a third run emits nothing, yet keeps the bookmarks.
    third = run_tap(api_config, state=second.last_state, streams=INCREMENTAL)
    assert third.record_counts() == {}
    assert third.last_state["bookmarks"]["deals"] == second.last_state["bookmarks"]["deals"]


def test_updated_since_and_ascending_sort_are_sent(sandbox, api_config):
    first = run_tap(api_config, streams={"persons"})
    sandbox.clear_requests()
    run_tap(api_config, state=first.last_state, streams={"persons"})
    (request,) = [r for r in sandbox.requests if r.path.endswith("/persons")]
    query = request.query
    bookmark = first.last_state["bookmarks"]["persons"]["replication_key_value"]
    assert query["updated_since"] == bookmark
    assert query["sort_by"] == "update_time"
    assert query["sort_direction"] == "asc"


def test_start_date_limits_the_first_sync(sandbox, api_config):
    persons = sandbox.dataset["persons"]
    times = sorted(p["update_time"] for p in persons if not p.get("is_deleted"))
    cutoff = times[len(times) // 2]
    result = run_tap({**api_config, "start_date": cutoff}, streams={"persons"})
    emitted = [r["update_time"] for r in result.records("persons")]
    assert emitted
    assert min(emitted) >= cutoff
    assert len(emitted) == sum(1 for t in times if t >= cutoff)


def test_state_is_written_after_every_page(sandbox, api_config):
    result = run_tap({**api_config, "page_size": 50}, streams={"persons"})
    pages = -(-sandbox.expected_counts()["persons"] // 50)
    persons_states = [s for s in result.states if "persons" in s.get("bookmarks", {})]
    assert len(persons_states) >= pages
