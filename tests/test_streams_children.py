"""Child streams read only what changed, in as few requests as the API allows.

Asserted on the sandbox's request log: deal products and installments go through the
batched ``deal_ids=`` endpoints; per-parent children are requested only for parents changed
since the child stream's bookmark; a parent that vanished mid-sync is skipped quietly; an
interrupted sync resumes after the last parents it finished.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from datetime import datetime

import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.streams.bases import decode_counts, encode_counts
from tap_pipedrive.streams.core import DealsStream, PersonsStream
from tests.support.tap_runner import run_cli, run_tap

PER_DEAL = {
    "deal_followers": r"^/api/v2/deals/(\d+)/followers$",
    "deal_participants": r"^/api/v1/deals/(\d+)/participants$",
    "deal_changelog": r"^/api/v1/deals/(\d+)/changelog$",
}
PER_PARENT = {
    **PER_DEAL,
    "person_followers": r"^/api/v2/persons/(\d+)/followers$",
    "person_changelog": r"^/api/v1/persons/(\d+)/changelog$",
    "product_variations": r"^/api/v2/products/(\d+)/variations$",
    "note_comments": r"^/api/v1/notes/(\d+)/comments$",
    "mail_messages": r"^/api/v1/mailbox/mailThreads/(\d+)/mailMessages$",
}
BATCHED = {
    "deal_products": "/api/v2/deals/products",
    "deal_installments": "/api/v2/deals/installments",
}
CHILDREN = set(PER_PARENT) | set(BATCHED) | {"organization_relationships"}


@pytest.fixture
def sandbox():
    with Sandbox(seed=3, scale=0.1, burst_limit=None) as sb:
        yield sb


def config_for(sandbox, **extra):
    return {"api_token": sandbox.api_token, "api_url": sandbox.url, **extra}


def live_deal_ids(sandbox):
    """The deals that have children: every deal the API lists, minus deleted ones."""
    return {deal["id"] for deal in sandbox.dataset["deals"] if deal["status"] != "deleted"}


def parent_ids_requested(sandbox, pattern):
    regex = re.compile(pattern)
    found = []
    for request in sandbox.requests:
        match = regex.match(request.path)
        if match:
            found.append(int(match.group(1)))
    return found


def batches(sandbox, path):
    """deal_ids of every batched request, in order (one entry per request, pages included)."""
    return [
        tuple(int(part) for part in request.query["deal_ids"].split(","))
        for request in sandbox.requests
        if request.path == path
    ]


@pytest.mark.parametrize(
    ("page_size", "stream"),
    [(500, "deal_products"), (40, "deal_products"), (500, "deal_installments")],
)
def test_batched_children_take_100_deals_a_request(sandbox, page_size, stream):
    result = run_tap(config_for(sandbox, page_size=page_size), streams={stream})
    deals = live_deal_ids(sandbox)
    if stream == "deal_products":
        # Deals whose row says products_count 0 have nothing to read (see below).
        deals = {
            d["id"] for d in sandbox.dataset["deals"] if d["id"] in deals and d["products_count"]
        }
    sent = batches(sandbox, BATCHED[stream])
    distinct = list(dict.fromkeys(sent))
    assert all(len(batch) <= 100 for batch in distinct)
    assert sorted(i for batch in distinct for i in batch) == sorted(deals)
    assert len(distinct) == math.ceil(len(deals) / 100)
    # Each batch is paged like any list: ceil(rows / page size) requests, at least one.
    rows_per_deal = defaultdict(int)
    for row in sandbox.dataset[stream]:
        rows_per_deal[row["deal_id"]] += 1
    expected_calls = sum(
        max(1, math.ceil(sum(rows_per_deal[i] for i in batch) / page_size)) for batch in distinct
    )
    assert len(sent) == expected_calls
    if page_size == 500:
        assert len(sent) == math.ceil(len(deals) / 100)
    assert not [r for r in sandbox.requests if re.match(r"^/api/v\d/deals/\d+/", r.path)]
    assert len(result.records(stream)) == sandbox.expected_counts()[stream]


def test_children_follow_only_changed_parents(sandbox):
    config = config_for(sandbox, include_mail_messages=True)
    first = run_tap(config, streams=CHILDREN)
    expected = sandbox.expected_counts()
    for stream in CHILDREN:
        assert len(first.records(stream)) == expected[stream], stream
    # The first sync asks for the children of every parent, once each.
    followed = parent_ids_requested(sandbox, PER_DEAL["deal_followers"])
    assert sorted(followed) == sorted(live_deal_ids(sandbox))
    state = first.last_state
    for stream in CHILDREN:
        bookmark = state["bookmarks"][stream]
        assert "partitions" not in bookmark, f"{stream} keeps per-parent state"
        assert bookmark["replication_key"].endswith("_update_time")
        assert bookmark["replication_key_value"]

    # Nothing changed: the parent lists are read, no child is requested.
    sandbox.clear_requests()
    quiet = run_tap(config, state=state, streams=CHILDREN)
    assert quiet.record_counts() == {}
    for stream, pattern in PER_PARENT.items():
        assert parent_ids_requested(sandbox, pattern) == [], stream
    assert not [r for r in sandbox.requests if r.path in BATCHED.values()]
    assert not [r for r in sandbox.requests if r.path.endswith("/organizationRelationships")]

    deals = [d for d in sandbox.dataset["deals"] if d["status"] != "deleted"]
    archived = next(d for d in deals if d["is_archived"])
    changed_deals = {deals[0]["id"], deals[7]["id"], archived["id"]}
    for deal_id in changed_deals:
        sandbox.update_record("deals", deal_id, title="Changed after the first sync")
    # Followers and participants are read again only where their counts changed.
    recounted = deals[7]
    sandbox.update_record(
        "deals",
        recounted["id"],
        followers_count=recounted["followers_count"] + 1,
        participants_count=recounted["participants_count"] + 1,
    )
    person = sandbox.dataset["persons"][2]["id"]
    product = sandbox.dataset["products"][1]["id"]
    note = sandbox.dataset["notes"][4]["id"]
    thread = sandbox.dataset["mail_threads"][3]["id"]
    org = next(
        r["rel_owner_org_id"]["value"] for r in sandbox.dataset["organization_relationships"]
    )
    sandbox.update_record("persons", person, name="Zoë")
    sandbox.update_record("products", product, name="Renamed")
    sandbox.update_record("notes", note, content="edited")
    sandbox.update_record("mail_threads", thread, subject="edited")
    sandbox.update_record("organizations", org, name="Renamed org")

    sandbox.clear_requests()
    second = run_tap(config, state=quiet.last_state, streams=CHILDREN)
    for stream in PER_DEAL:
        asked = changed_deals if stream == "deal_changelog" else {recounted["id"]}
        assert sorted(parent_ids_requested(sandbox, PER_DEAL[stream])) == sorted(asked), stream
        assert {row["deal_id"] for row in second.records(stream)} <= asked
    # The person's followers_count did not change: only the history is read again.
    assert parent_ids_requested(sandbox, PER_PARENT["person_followers"]) == []
    assert parent_ids_requested(sandbox, PER_PARENT["person_changelog"]) == [person]
    assert parent_ids_requested(sandbox, PER_PARENT["product_variations"]) == [product]
    assert parent_ids_requested(sandbox, PER_PARENT["note_comments"]) == [note]
    assert parent_ids_requested(sandbox, PER_PARENT["mail_messages"]) == [thread]
    relationship_calls = [
        r for r in sandbox.requests if r.path.endswith("/organizationRelationships")
    ]
    assert [r.query["org_id"] for r in relationship_calls] == [str(org)]
    for stream, path in BATCHED.items():
        assert [set(batch) for batch in batches(sandbox, path)] == [changed_deals], stream
    assert {row["deal_id"] for row in second.records("deal_products")} <= changed_deals
    assert second.records("deal_followers"), "the changed deals' followers were not re-read"
    times = {row["deal_id"]: row["deal_update_time"] for row in second.records("deal_followers")}
    stamps = {
        d["id"]: d["update_time"] for d in sandbox.dataset["deals"] if d["id"] in changed_deals
    }
    assert times == {deal: stamps[deal] for deal in times}


def test_a_vanished_parent_is_skipped_quietly(sandbox, caplog):
    deals = sorted(live_deal_ids(sandbox))
    gone, deleted = deals[5], deals[9]
    sandbox.faults.add("http_error", path=rf"^/api/v2/deals/{gone}/followers$", status=404)
    sandbox.faults.add("http_error", path=rf"^/api/v1/deals/{deleted}/participants$", status=410)
    with caplog.at_level(logging.WARNING):
        result = run_tap(config_for(sandbox), streams={"deal_followers", "deal_participants"})
    expected = sandbox.expected_counts()
    for stream, missing in (("deal_followers", gone), ("deal_participants", deleted)):
        rows = result.records(stream)
        lost = [row for row in sandbox.dataset[stream] if row["deal_id"] == missing]
        assert len(rows) == expected[stream] - len(lost)
        assert missing not in {row["deal_id"] for row in rows}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "deal_followers" in w or "deal_participants" in w]


def test_an_interrupted_child_stream_resumes_after_its_last_checkpoint(sandbox):
    config = config_for(sandbox, max_retries=1, retry_base_seconds=0)
    # Followers of the 60th deal onwards fail for good: the run stops there.
    sandbox.faults.add(
        "http_error", path=r"^/api/v2/deals/\d+/followers$", after=60, count=None, status=500
    )
    failed = run_cli(config, streams={"deal_followers"})
    assert failed.returncode != 0
    state = failed.last_state
    assert state is not None
    bookmark = state["bookmarks"]["deal_followers"]
    done_before = parent_ids_requested(sandbox, PER_DEAL["deal_followers"])[:50]

    sandbox.faults.clear()
    sandbox.clear_requests()
    resumed = run_cli(config, state=state, streams={"deal_followers"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = set(parent_ids_requested(sandbox, PER_DEAL["deal_followers"]))
    # Deals finished before the last checkpoint are not asked for again.
    finished = set(bookmark["boundary_parents"]["ids"])
    assert finished and not finished & again
    assert len(again) < len(live_deal_ids(sandbox)) - 40
    assert set(done_before) - again
    delivered = {
        (row["deal_id"], row["user_id"])
        for run in (failed, resumed)
        for row in run.records("deal_followers")
    }
    assert len(delivered) == sandbox.expected_counts()["deal_followers"]


def moment(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def listings(sandbox, path):
    """Times a list was read from its start (its first page has no cursor)."""
    return [r for r in sandbox.requests if r.path == path and "cursor" not in r.query]


def test_each_parent_list_is_read_once_a_run_for_all_its_children(sandbox):
    children = {
        "deal_products",
        "deal_installments",
        "deal_followers",
        "deal_participants",
        "deal_changelog",
        "person_followers",
        "organization_followers",
        "organization_relationships",
        "product_followers",
        "product_variations",
    }
    first = run_tap(config_for(sandbox), streams=children)
    for path in ("deals", "deals/archived", "persons", "organizations", "products"):
        assert len(listings(sandbox, f"/api/v2/{path}")) == 1, path
    expected = sandbox.expected_counts()
    for stream in children:
        assert len(first.records(stream)) == expected[stream], stream

    # With bookmarks from a run, the list is read once again, from the earliest of them.
    sandbox.update_record("deals", sorted(live_deal_ids(sandbox))[3], title="changed")
    sandbox.clear_requests()
    state = first.last_state
    run_tap(config_for(sandbox), state=state, streams=children)
    assert len(listings(sandbox, "/api/v2/deals")) == 1
    since = listings(sandbox, "/api/v2/deals")[0].query["updated_since"]
    bookmarks = [state["bookmarks"][s]["replication_key_value"] for s in children if "deal" in s]
    assert moment(since) == min(moment(b) for b in bookmarks)


def test_parents_whose_counts_say_nothing_are_not_requested(sandbox):
    streams = {"deal_participants", "deal_followers", "deal_products"}
    result = run_tap(config_for(sandbox), streams=streams)
    deals = {d["id"]: d for d in sandbox.dataset["deals"] if d["id"] in live_deal_ids(sandbox)}
    for stream, count in (
        ("deal_participants", "participants_count"),
        ("deal_followers", "followers_count"),
    ):
        asked = sorted(parent_ids_requested(sandbox, PER_DEAL[stream]))
        assert asked == sorted(i for i, deal in deals.items() if deal[count]), stream
    assert any(deal["participants_count"] == 0 for deal in deals.values())
    batched = {i for batch in batches(sandbox, BATCHED["deal_products"]) for i in batch}
    assert batched == {i for i, deal in deals.items() if deal["products_count"]}
    # Nothing is lost, and the bookmark moves past the deals that were skipped.
    expected = sandbox.expected_counts()
    for stream in streams:
        assert len(result.records(stream)) == expected[stream], stream
    newest = max(deals.values(), key=lambda deal: deal["update_time"])
    bookmark = result.last_state["bookmarks"]["deal_participants"]["replication_key_value"]
    assert moment(bookmark) == moment(newest["update_time"])


def test_field_history_comes_from_one_source_only(sandbox):
    history = {"deal_changelog", "person_changelog", "organization_changelog"}
    flows = {"deal_flow", "person_flow", "organization_flow"}
    result = run_tap(config_for(sandbox), streams=history | flows)
    assert set(result.record_counts()) == history
    assert not [r for r in sandbox.requests if r.path.endswith("/flow")]
    assert {r.path.split("/")[3] for r in sandbox.requests if r.path.endswith("/changelog")} == {
        "deals",
        "persons",
        "organizations",
    }

    # Opted in, the updates feeds replace the changelogs: their field changes are not
    # paid for a second time.
    sandbox.clear_requests()
    result = run_tap(config_for(sandbox, field_history="flow"), streams=history | flows)
    assert set(result.record_counts()) == flows
    assert not [r for r in sandbox.requests if r.path.endswith("/changelog")]
    expected = sandbox.expected_counts()
    for stream in flows:
        assert len(result.records(stream)) == expected[stream], stream


def test_after_a_bulk_edit_of_every_person_only_the_changelogs_are_read(sandbox):
    streams = {"person_changelog", "person_followers"}
    first = run_tap(config_for(sandbox), streams=streams)
    persons = [p for p in sandbox.dataset["persons"] if not p.get("is_deleted")]
    assert len(parent_ids_requested(sandbox, PER_PARENT["person_followers"])) == len(persons)
    for person in persons:
        sandbox.update_record("persons", person["id"], label_ids=[1])
    # One person also gained a follower: the only follower list worth reading again.
    gained = persons[5]
    sandbox.update_record("persons", gained["id"], followers_count=gained["followers_count"] + 1)
    sandbox.clear_requests()
    second = run_tap(config_for(sandbox), state=first.last_state, streams=streams)
    # The change history did change: every person's changelog is read, once.
    read = parent_ids_requested(sandbox, PER_PARENT["person_changelog"])
    assert sorted(read) == sorted(person["id"] for person in persons)
    assert parent_ids_requested(sandbox, PER_PARENT["person_followers"]) == [gained["id"]]
    assert len(listings(sandbox, "/api/v2/persons")) == 1
    # Both bookmarks moved past the edit, and a third run reads nothing more.
    newest = max(moment(p["update_time"]) for p in sandbox.dataset["persons"])
    for stream in streams:
        bookmark = second.last_state["bookmarks"][stream]["replication_key_value"]
        assert moment(bookmark) == newest, stream
    sandbox.clear_requests()
    run_tap(config_for(sandbox), state=second.last_state, streams=streams)
    assert parent_ids_requested(sandbox, PER_PARENT["person_followers"]) == []


def test_remembered_counts_survive_the_state_and_garbage_is_ignored():
    counts = {7: 2, 3: 1, 120_000: 5}
    assert decode_counts(encode_counts(counts)) == counts
    for garbage in (None, "", 12, "not base64!", "AAAA", encode_counts(counts)[:-4]):
        assert decode_counts(garbage) == {}


def test_a_list_stream_read_in_full_serves_as_its_childrens_parent_list():
    children = {"deal_followers", "deal_products", "person_followers"}
    lists = {"deals": DealsStream, "persons": PersonsStream}
    # The same data twice: the children alone, then with their list streams.
    with Sandbox(seed=3, scale=0.1, burst_limit=None) as alone_sandbox:
        alone = run_tap(config_for(alone_sandbox), streams=children)
    with Sandbox(seed=3, scale=0.1, burst_limit=None) as sandbox:
        both = run_tap(config_for(sandbox), streams=children | set(lists))
        expected = sandbox.expected_counts()
        for name, paths in (("deals", ("/deals", "/deals/archived")), ("persons", ("/persons",))):
            fields = ",".join(lists[name].include_fields)
            for path in paths:
                asked = [r for r in sandbox.requests if r.path == f"/api/v2{path}"]
                # One read, the list stream's own (its fields, not the children's counts).
                assert len(listings(sandbox, f"/api/v2{path}")) == 1, path
                assert {r.query["include_fields"] for r in asked} == {fields}, path
    for stream in children:
        assert both.records(stream) == alone.records(stream), stream
        assert len(both.records(stream)) == expected[stream], stream
    for name in lists:
        assert len(both.records(name)) == expected[name], name
    # The rows kept for the children hold only the counts those children read.
    assert both.tap is not None
    kept = both.tap.run.list_reads.get("/api/v2/deals")
    assert kept is not None and kept.rows
    read_counts = {
        count
        for stream in children
        for source in both.tap.streams[stream].parent_sources
        if source.path == "/deals"
        for count in source.counts
    }
    assert read_counts
    assert {name for _, _, counts in kept.rows for name, _ in counts} == read_counts
    assert any(
        field.endswith("_count") and field not in read_counts
        for field in DealsStream.include_fields
    )
