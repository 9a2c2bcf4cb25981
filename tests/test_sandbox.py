"""Tests of the Pipedrive sandbox (pipedrive_sandbox): paging, filters, auth, OAuth, faults."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from pipedrive_sandbox import Sandbox
from pipedrive_sandbox.data import SHAPES, World
from pipedrive_sandbox.endpoints import ENDPOINTS
from pipedrive_sandbox.fields import CUSTOM_TYPES
from pipedrive_sandbox.util import CLOCK_START, DATA_END, DATA_START, parse_timestamp

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = REPO_ROOT.parent / "shared" / "pipedrive-openapi"
API_TOKEN = "sandbox-api-token"


# ---- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sb():
    """A shared, read-only sandbox (no burst limit so the suite never trips it)."""
    with Sandbox(seed=1, burst_limit=None) as sandbox:
        yield sandbox


@pytest.fixture
def fresh():
    """A private sandbox for tests that mutate data, faults or limits."""
    with Sandbox(seed=3, scale=0.2, burst_limit=None) as sandbox:
        yield sandbox


@pytest.fixture
def http():
    with requests.Session() as session:
        session.headers["x-api-token"] = API_TOKEN
        yield session


def get(http: requests.Session, sb: Sandbox, path: str, **params: Any) -> requests.Response:
    return http.get(sb.url + path, params=params, timeout=30)


def read_all_v2(http, sb, path, **params) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        body = get(http, sb, path, **query).json()
        assert body["success"] is True
        if path.startswith("/api/v2"):
            assert isinstance(body["data"], list), "v2 answers [] (never null)"
        rows.extend(body["data"] or [])  # v1 answers null for an empty page
        cursor = body["additional_data"]["next_cursor"]
        if not cursor:
            return rows
    raise AssertionError("paging did not end")


def read_all_v1(http, sb, path, **params) -> tuple[list[dict[str, Any]], list[dict]]:
    """Offset paging the way PIPEDRIVE_API.md §4 recommends; returns rows and envelopes."""
    rows: list[dict[str, Any]] = []
    envelopes = []
    start = 0
    for _ in range(10_000):
        body = get(http, sb, path, start=start, **params).json()
        data = body["data"] or []
        rows.extend(data)
        additional = body.get("additional_data") or {}
        envelopes.append(additional)
        pagination = additional.get("pagination") or additional
        if pagination:
            more = pagination.get("more_items_in_collection")
        else:  # endpoints that page but declare no pagination: a full page means "maybe more"
            more = len(data) >= int(params.get("limit", 100))
        if not data or not more:
            return rows, envelopes
        start = pagination.get("next_start", start + len(data))
    raise AssertionError("paging did not end")


def ts(text: str) -> int:
    parsed = parse_timestamp(text)
    assert parsed is not None, text
    return parsed


# ---- v2 paging, filters, sorting -----------------------------------------------------------------


def test_v2_cursor_paging_reaches_every_listed_deal_once(sb, http):
    rows = read_all_v2(http, sb, "/api/v2/deals", limit=173)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    expected = [
        deal["id"]
        for deal in sb.dataset["deals"]
        if not deal["is_archived"] and deal["status"] != "deleted"
    ]
    assert ids == expected  # default order: id ascending
    archived = read_all_v2(http, sb, "/api/v2/deals/archived", limit=50)
    assert archived and all(row["is_archived"] for row in archived)
    assert not {row["id"] for row in archived} & set(ids)


def test_deal_status_filter_and_expected_count(sb, http):
    every = read_all_v2(http, sb, "/api/v2/deals", status="open,won,lost,deleted", limit=500)
    archived = read_all_v2(
        http, sb, "/api/v2/deals/archived", status="open,won,lost,deleted", limit=500
    )
    statuses = Counter(row["status"] for row in every)
    assert statuses["deleted"] > 0
    assert all(row["is_deleted"] == (row["status"] == "deleted") for row in every)
    assert len(every) + len(archived) == sb.expected_counts()["deals"] == len(sb.dataset["deals"])
    won = read_all_v2(http, sb, "/api/v2/deals", status="won", limit=500)
    assert won and {row["status"] for row in won} == {"won"}
    bad = get(http, sb, "/api/v2/deals", status="open,bogus")
    assert bad.status_code == 400 and "status" in bad.json()["error"]


def test_updated_since_is_inclusive_and_until_exclusive(sb, http):
    listed = read_all_v2(http, sb, "/api/v2/deals", limit=500)
    counts = Counter(row["update_time"] for row in listed)
    boundary, shared = counts.most_common(1)[0]
    assert shared >= 5, "the data should have runs of equal update_time"
    since = read_all_v2(http, sb, "/api/v2/deals", updated_since=boundary, limit=500)
    until = read_all_v2(http, sb, "/api/v2/deals", updated_until=boundary, limit=500)
    b = ts(boundary)
    assert {r["id"] for r in since} == {r["id"] for r in listed if ts(r["update_time"]) >= b}
    assert {r["id"] for r in until} == {r["id"] for r in listed if ts(r["update_time"]) < b}
    assert sum(1 for r in since if r["update_time"] == boundary) == shared
    assert not any(r["update_time"] == boundary for r in until)
    bad = get(http, sb, "/api/v2/deals", updated_since="yesterday")
    assert bad.status_code == 400 and "updated_since" in bad.json()["error"]


def test_sort_by_update_time_desc_with_id_tiebreak(sb, http):
    rows = read_all_v2(
        http, sb, "/api/v2/persons", sort_by="update_time", sort_direction="desc", limit=97
    )
    keys = [(ts(row["update_time"]), row["id"]) for row in rows]
    assert keys == sorted(keys, reverse=True)
    assert len(rows) == sb.expected_counts()["persons"]
    asc = read_all_v2(http, sb, "/api/v2/persons", sort_by="add_time", limit=500)
    keys = [(ts(row["add_time"]), row["id"]) for row in asc]
    assert keys == sorted(keys)
    assert get(http, sb, "/api/v2/persons", sort_by="name").status_code == 400
    assert get(http, sb, "/api/v2/persons", sort_direction="up").status_code == 400


def test_sort_on_record_field_pages_consistently(sb, http):
    rows = read_all_v2(http, sb, "/api/v2/products", sort_by="name", limit=37)
    keys = [(row["name"], row["id"]) for row in rows]
    assert keys == sorted(keys)
    assert len(rows) == sb.expected_counts()["products"]


def test_limit_is_clamped_to_500_and_defaults_to_100(sb, http):
    assert len(get(http, sb, "/api/v2/activities", limit=5000).json()["data"]) == 500
    assert len(get(http, sb, "/api/v2/activities").json()["data"]) == 100
    assert get(http, sb, "/api/v2/activities", limit=0).status_code == 400
    assert get(http, sb, "/api/v2/activities", limit="many").status_code == 400


def test_cursor_is_opaque_but_validated(sb, http):
    first = get(http, sb, "/api/v2/organizations", limit=10).json()
    cursor = first["additional_data"]["next_cursor"]
    assert cursor and "=" not in cursor
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert payload["id"] == first["data"][-1]["id"]
    assert get(http, sb, "/api/v2/organizations", cursor="%%%").status_code == 400


def test_include_fields_adds_optional_fields_only_on_request(sb, http):
    plain = get(http, sb, "/api/v2/deals", limit=5).json()["data"]
    assert all("next_activity_id" not in row and "products_count" not in row for row in plain)
    assert all("source_lead_id" not in row for row in plain)
    rich = get(
        http, sb, "/api/v2/deals", limit=5, include_fields="next_activity_id,products_count"
    ).json()["data"]
    assert all("next_activity_id" in row and isinstance(row["products_count"], int) for row in rich)
    assert all("files_count" not in row for row in rich)
    bad = get(http, sb, "/api/v2/deals", include_fields="next_activity_id,bogus")
    assert bad.status_code == 400 and "bogus" in bad.json()["error"]
    attendees = get(http, sb, "/api/v2/activities", include_fields="attendees").json()["data"]
    assert all("attendees" in row for row in attendees)
    assert all("attendees" not in row for row in get(http, sb, "/api/v2/activities").json()["data"])


def test_stage_filter_and_deleted_entities_hidden(sb, http):
    stages = read_all_v2(http, sb, "/api/v2/stages", pipeline_id=2)
    assert stages and {row["pipeline_id"] for row in stages} == {2}
    persons = read_all_v2(http, sb, "/api/v2/persons", limit=500)
    assert not any(row["is_deleted"] for row in persons)
    assert any(row["is_deleted"] for row in sb.dataset["persons"])
    assert len(persons) == sb.expected_counts()["persons"]


def test_unknown_query_parameters_are_ignored(sb, http):
    plain = get(http, sb, "/api/v2/pipelines").json()
    noisy = get(http, sb, "/api/v2/pipelines", frobnicate="1").json()
    assert plain == noisy and len(plain["data"]) == 3


# ---- v1 ------------------------------------------------------------------------------------------


def test_v1_unpaged_lists_and_users_me(sb, http):
    users = get(http, sb, "/v1/users").json()
    assert users["success"] and len(users["data"]) == sb.expected_counts()["users"]
    assert "additional_data" not in users
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", users["data"][0]["created"])
    me = get(http, sb, "/api/v1/users/me").json()["data"]
    assert me["is_you"] is True and me["company_domain"]
    currencies = get(http, sb, "/v1/currencies", term="eur").json()["data"]
    assert [row["code"] for row in currencies] == ["EUR"]
    types = get(http, sb, "/api/v1/activityTypes").json()["data"]
    assert len(types) == sb.expected_counts()["activity_types"]


def test_v1_flat_envelope_pages_to_the_end(sb, http):
    rows, envelopes = read_all_v1(http, sb, "/v1/leadFields", limit=7)
    assert len(rows) == sb.expected_counts()["lead_fields"] == len(sb.dataset["lead_fields"])
    assert len(envelopes) > 2
    assert all("pagination" not in env and {"start", "limit"} <= set(env) for env in envelopes)
    assert envelopes[-1]["more_items_in_collection"] is False
    keys = [row["key"] for row in rows]
    assert len(keys) == len(set(keys))


def test_v1_empty_result_has_null_data(sb, http):
    body = get(http, sb, "/v1/leadFields", start=100000).json()
    assert body["success"] is True and body["data"] is None


# ---- records, fields, determinism ------------------------------------------------------------------


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    checks = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return kind not in checks or checks[kind](value)


# Fields the real API returns as null although the spec does not flag them nullable.
NULL_IN_PRACTICE = {
    "won_time",
    "lost_time",
    "close_time",
    "expected_close_date",
    "marked_as_done_time",
    "modified",
    "phone",
    "icon_url",
}


@pytest.mark.parametrize(
    ("entity", "shape"),
    [
        ("deals", "v2 /deals"),
        ("persons", "v2 /persons"),
        ("organizations", "v2 /organizations"),
        ("activities", "v2 /activities"),
        ("products", "v2 /products"),
        ("pipelines", "v2 /pipelines"),
        ("stages", "v2 /stages"),
        ("users", "v1 /users"),
        ("currencies", "v1 /currencies"),
        ("activity_types", "v1 /activityTypes"),
        ("deal_fields", "v2 /dealFields"),
        ("lead_fields", "v1 /leadFields"),
        ("note_fields", "v1 /noteFields"),
    ],
)
def test_records_carry_every_schema_property_with_its_type(sb, entity, shape):
    properties = SHAPES[shape]["item"]["properties"]
    records = sb.dataset[entity]
    assert records
    for record in records[:400]:
        missing = set(properties) - set(record)
        assert not missing, f"{entity} {record.get('id')} lacks {sorted(missing)}"
        for name, schema in properties.items():
            value = record[name]
            if value is None:
                assert (
                    schema.get("nullable")
                    or name in NULL_IN_PRACTICE
                    or (schema.get("type") in (None, "object"))
                ), f"{entity}.{name} is null but not nullable"
            else:
                assert _type_ok(value, schema), f"{entity}.{name}={value!r} vs {schema}"


def test_custom_fields_cover_every_type_with_v2_shapes(sb):
    fields = sb.dataset["deal_fields"]
    custom = [f for f in fields if f["is_custom_field"]]
    assert len(custom) >= 30
    assert set(CUSTOM_TYPES) <= {f["field_type"] for f in custom}
    assert all(re.fullmatch(r"[0-9a-f]{40}", f["field_code"]) for f in custom)
    labels = [f["field_name"] for f in custom]
    assert {"Deal Score", "deal-score", "Title"} <= set(labels)
    assert any(not re.sub(r"[^0-9a-zA-Z]+", "", label) for label in labels)
    for kind in ("enum", "set"):
        options = next(f for f in custom if f["field_type"] == kind)["options"]
        assert options and all(isinstance(option["id"], int) for option in options)
    by_code = {f["field_code"]: f for f in custom}
    seen_types = set()
    for deal in sb.dataset["deals"]:
        for code, value in deal["custom_fields"].items():
            kind = by_code[code]["field_type"]
            if value is None:
                continue
            seen_types.add(kind)
            if kind == "monetary":
                assert set(value) == {"value", "currency"}
            elif kind == "set":
                assert all(isinstance(item, int) for item in value)
            elif kind == "enum":
                assert value in {o["id"] for o in by_code[code]["options"]}
            elif kind == "date":
                assert re.fullmatch(r"\d{4}-\d\d-\d\d", value)
            elif kind == "address":
                assert "formatted_address" in value
            elif kind in ("timerange", "daterange"):
                assert "until" in value
    assert seen_types == set(CUSTOM_TYPES)
    missing = sum(len(custom) - len(d["custom_fields"]) for d in sb.dataset["deals"])
    assert missing > 0, "some custom values should be absent"
    for entity in ("person_fields", "organization_fields", "product_fields"):
        kinds = {f["field_type"] for f in sb.dataset[entity] if f["is_custom_field"]}
        assert set(CUSTOM_TYPES) <= kinds, entity


def test_data_mix_has_unicode_empties_and_timestamps_in_range(sb):
    deals = sb.dataset["deals"]
    titles = [d["title"] for d in deals]
    assert any(not t.isascii() for t in titles) and "" in titles
    assert any(ord(ch) > 0xFFFF for t in titles for ch in t), "expected emoji"
    persons = sb.dataset["persons"]
    assert any(p["last_name"] == "" for p in persons)
    assert any(re.search(r"[\u3040-\u9fff]", p["name"]) for p in persons)
    stamps = [ts(d["update_time"]) for d in deals] + [ts(d["add_time"]) for d in deals]
    assert min(stamps) >= DATA_START and max(stamps) <= DATA_END
    assert sb.now().timestamp() > DATA_END
    assert all(ts(d["add_time"]) <= ts(d["update_time"]) for d in deals)


def test_same_seed_same_data_other_seed_other_data():
    first, second, other = World(7, 0.1), World(7, 0.1), World(8, 0.1)
    for entity in ("deals", "persons", "deal_fields", "users"):
        assert first.dataset(entity) == second.dataset(entity)
    assert first.dataset("deals") != other.dataset("deals")


def test_scale_multiplies_big_entities_only():
    small, big = World(1, 0.5), World(1, 2.0)
    assert len(big.tables["deals"]) == 4 * len(small.tables["deals"])
    assert len(big.tables["pipelines"]) == len(small.tables["pipelines"]) == 3


def test_large_scale_builds_lazily():
    world = World(1, 50.0)  # 100k deals: index only, records on demand
    deals = world.tables["deals"]
    assert len(deals) == 100_000 and not deals.cache_enabled
    assert deals.record(99_999)["id"] == 100_000
    assert not deals.cache


# ---- mutations -------------------------------------------------------------------------------------


def test_update_is_visible_with_a_later_update_time(fresh, http):
    listed = read_all_v2(http, fresh, "/api/v2/deals", limit=500)
    newest = max(ts(row["update_time"]) for row in listed)
    target = listed[3]["id"]
    changed = fresh.update_record("deals", target, title="Renamed ✓", value=42.5)
    assert ts(changed["update_time"]) > newest
    assert ts(changed["update_time"]) <= fresh.now().timestamp()
    since = read_all_v2(
        http, fresh, "/api/v2/deals", updated_since=changed["update_time"], sort_by="update_time"
    )
    assert [row["id"] for row in since] == [target]
    assert since[0]["title"] == "Renamed ✓" and since[0]["value"] == 42.5
    again = fresh.update_record("deals", target, value=1)
    assert ts(again["update_time"]) > ts(changed["update_time"])


def test_delete_add_and_counts(fresh, http):
    counts = fresh.expected_counts()
    deal_id = next(
        d["id"] for d in fresh.dataset["deals"] if d["status"] == "open" and not d["is_archived"]
    )
    fresh.delete_record("deals", deal_id)
    assert deal_id not in {r["id"] for r in read_all_v2(http, fresh, "/api/v2/deals", limit=500)}
    deleted = read_all_v2(http, fresh, "/api/v2/deals", status="deleted", limit=500)
    assert deal_id in {r["id"] for r in deleted}
    assert fresh.expected_counts()["deals"] == counts["deals"]
    person_id = next(p["id"] for p in fresh.dataset["persons"] if not p["is_deleted"])
    fresh.delete_record("persons", person_id)
    assert fresh.expected_counts()["persons"] == counts["persons"] - 1
    added = fresh.add_record("persons", name="Neu Person 🎉")
    assert added["id"] == len(fresh.dataset["persons"])
    assert added["add_time"] == added["update_time"]
    listed = read_all_v2(http, fresh, "/api/v2/persons", updated_since=added["update_time"])
    assert [row["name"] for row in listed] == ["Neu Person 🎉"]
    assert fresh.expected_counts()["persons"] == counts["persons"]
    with pytest.raises(KeyError):
        fresh.update_record("deals", 10**9, title="x")
    with pytest.raises(ValueError, match="entity"):
        fresh.update_record("nonsense", 1, title="x")


def test_add_custom_field_appears_in_fields_and_records(fresh, http):
    before = read_all_v2(http, fresh, "/api/v2/dealFields", limit=500)
    field = fresh.add_custom_field("deals", "Brand new ✨", "enum", options=["A", "B"])
    after = read_all_v2(http, fresh, "/api/v2/dealFields", limit=500)
    assert len(after) == len(before) + 1 and after[-1]["field_code"] == field["field_code"]
    assert [o["label"] for o in after[-1]["options"]] == ["A", "B"]
    values = [
        d["custom_fields"].get(field["field_code"])
        for d in read_all_v2(http, fresh, "/api/v2/deals", limit=500)
    ]
    option_ids = {o["id"] for o in field["options"]}
    assert any(v in option_ids for v in values)
    with pytest.raises(ValueError, match="field_type"):
        fresh.add_custom_field("deals", "Bad", "hologram")


def test_v1_activity_fields_list_the_v2_activity_field_set_in_v1_items(fresh, http):
    counts = fresh.expected_counts()
    assert not any(row["edit_flag"] for row in read_all_v1(http, fresh, "/v1/activityFields")[0])
    room = fresh.add_custom_field("activities", "Room 🚪", "enum", options=["North", "South"])
    fresh.add_custom_field("activities", "Follow-up on", "date")
    v2_items = read_all_v2(http, fresh, "/api/v2/activityFields", limit=500)
    fresh.clear_requests()
    v1_items, envelopes = read_all_v1(http, fresh, "/api/v1/activityFields", limit=7)

    assert len(envelopes) > 2  # offset paging with the flat envelope the spec declares
    assert all(set(env) == {"start", "limit", "more_items_in_collection"} for env in envelopes)
    assert {r.token_cost for r in fresh.requests} == {20}
    assert [(i["key"], i["name"], i["field_type"]) for i in v1_items] == [
        (i["field_code"], i["field_name"], i["field_type"]) for i in v2_items
    ]
    assert not any("field_code" in item or "is_custom_field" in item for item in v1_items)
    custom = [item for item in v1_items if item["edit_flag"]]
    assert [item["name"] for item in custom] == ["Room 🚪", "Follow-up on"]
    assert custom[0]["options"] == [
        {"id": option["id"], "label": option["label"]} for option in room["options"]
    ]
    # The activities carry the new fields, and the second listing adds no stream and no
    # second count of the same custom fields.
    activities = read_all_v2(http, fresh, "/api/v2/activities", limit=500)
    assert {row["custom_fields"].get(room["field_code"]) for row in activities} >= {
        option["id"] for option in room["options"]
    }
    grown = {"activity_fields": 2, "custom_fields": 2}
    assert fresh.expected_counts() == {
        name: count + grown.get(name, 0) for name, count in counts.items()
    }


# ---- auth ----------------------------------------------------------------------------------------


def test_requests_without_valid_credentials_get_401(sb):
    with requests.Session() as anon:
        for headers in (
            {},
            {"x-api-token": "wrong"},
            {"Authorization": "Bearer nope"},
            {"Authorization": "Basic abc"},
        ):
            response = anon.get(sb.url + "/api/v2/deals", headers=headers, timeout=10)
            assert response.status_code == 401
            assert response.json() == {
                "success": False,
                "error": "unauthorized access",
                "errorCode": 401,
                "error_info": "Please check developers.pipedrive.com",
            }


def test_query_token_works_but_is_logged_as_such_without_the_secret(fresh):
    fresh.clear_requests()
    with requests.Session() as anon:
        response = anon.get(fresh.url + "/v1/users", params={"api_token": API_TOKEN}, timeout=10)
    assert response.status_code == 200
    entry = fresh.requests[-1]
    assert entry.auth_kind == "api_token_query" and entry["auth_kind"] == "api_token_query"
    assert API_TOKEN not in json.dumps([r.to_dict() for r in fresh.requests])


def test_request_log_fields(fresh, http):
    fresh.clear_requests()
    get(http, fresh, "/api/v2/deals", limit=2)
    get(http, fresh, "/api/v2/pipelines")
    first, second = fresh.requests
    assert (first.method, first.path, first.query, first.status) == (
        "GET",
        "/api/v2/deals",
        {"limit": "2"},
        200,
    )
    assert (first.token_cost, second.token_cost, first.auth_kind) == (10, 5, "api_token")
    assert fresh.tokens_spent >= 15


# ---- OAuth ------------------------------------------------------------------------------------------

REDIRECT = "http://127.0.0.1:9/callback"


def _authorize(sb: Sandbox, decision: str = "allow", state: str = "xyz") -> dict[str, list[str]]:
    with requests.Session() as browser:
        page = browser.get(
            sb.url + "/oauth/authorize",
            params={
                "client_id": "sandbox-client-id",
                "redirect_uri": REDIRECT,
                "state": state,
            },
            timeout=10,
        )
        assert page.status_code == 200
        assert 'id="allow"' in page.text and 'id="deny"' in page.text
        assert ">Allow<" in page.text and ">Deny<" in page.text
        answer = browser.post(
            sb.url + "/oauth/authorize/decision",
            data={
                "client_id": "sandbox-client-id",
                "redirect_uri": REDIRECT,
                "state": state,
                "decision": decision,
            },
            allow_redirects=False,
            timeout=10,
        )
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


def _token(sb: Sandbox, auth=("sandbox-client-id", "sandbox-client-secret"), **form):
    with requests.Session() as client:
        return client.post(sb.url + "/oauth/token", data=form, auth=auth, timeout=10)


def test_oauth_code_grant_once_only_and_bearer_access(fresh):
    query = _authorize(fresh)
    assert query["state"] == ["xyz"]
    code = query["code"][0]
    first = _token(fresh, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert len(body["access_token"]) >= 100 and body["api_domain"] == fresh.url
    assert "deals:read" in body["scope"]
    again = _token(fresh, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    with requests.Session() as api:
        api.headers["Authorization"] = "Bearer " + body["access_token"]
        assert api.get(fresh.url + "/api/v2/pipelines", timeout=10).status_code == 200
        assert fresh.requests[-1].auth_kind == "bearer"
        fresh.expire_access_tokens()
        assert api.get(fresh.url + "/api/v2/pipelines", timeout=10).status_code == 401
    assert [call["status"] for call in fresh.token_calls] == [200, 400]
    assert body["access_token"] not in json.dumps(fresh.token_calls)


def test_oauth_code_expiry_redirect_mismatch_and_denial(fresh):
    code = _authorize(fresh)["code"][0]
    wrong = _token(
        fresh, grant_type="authorization_code", code=code, redirect_uri="http://127.0.0.1:9/other"
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    stale = _authorize(fresh)["code"][0]
    fresh.advance_clock(301)
    expired = _token(fresh, grant_type="authorization_code", code=stale, redirect_uri=REDIRECT)
    assert expired.status_code == 400 and "expired" in expired.json()["error_description"]
    denied = _authorize(fresh, decision="deny")
    assert denied == {"error": ["user_denied"], "state": ["xyz"]}
    with requests.Session() as browser:
        unknown = browser.get(
            fresh.url + "/oauth/authorize",
            params={"client_id": "who", "redirect_uri": REDIRECT},
            timeout=10,
        )
    assert unknown.status_code == 400


def test_oauth_refresh_rotation_and_client_errors(fresh):
    refresh = fresh.issue_refresh_token()
    first = _token(fresh, grant_type="refresh_token", refresh_token=refresh)
    assert first.status_code == 200
    rotated = first.json()["refresh_token"]
    assert rotated != refresh
    reuse = _token(fresh, grant_type="refresh_token", refresh_token=refresh)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert _token(fresh, grant_type="refresh_token", refresh_token=rotated).status_code == 200
    bad_client = _token(
        fresh, auth=("sandbox-client-id", "nope"), grant_type="refresh_token", refresh_token=rotated
    )
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
    unsupported = _token(fresh, grant_type="password")
    assert unsupported.status_code == 400
    assert unsupported.json()["error"] == "unsupported_grant_type"
    missing = _token(fresh, grant_type="refresh_token")
    assert missing.json()["error"] == "invalid_request"


def test_access_token_expires_with_the_clock(fresh):
    body = _token(
        fresh, grant_type="refresh_token", refresh_token=fresh.issue_refresh_token()
    ).json()
    with requests.Session() as api:
        api.headers["Authorization"] = "Bearer " + body["access_token"]
        assert api.get(fresh.url + "/v1/users/me", timeout=10).status_code == 200
        fresh.advance_clock(3601)
        assert api.get(fresh.url + "/v1/users/me", timeout=10).status_code == 401


def test_non_rotating_refresh_tokens_stay_valid():
    with Sandbox(seed=1, scale=0.05, rotate_refresh_tokens=False) as sandbox:
        refresh = sandbox.issue_refresh_token()
        for _ in range(2):
            answer = _token(sandbox, grant_type="refresh_token", refresh_token=refresh)
            assert answer.status_code == 200 and answer.json()["refresh_token"] == refresh


# ---- rate limits -------------------------------------------------------------------------------


def test_burst_limiter_returns_429_past_the_limit(http):
    with Sandbox(seed=1, scale=0.05, burst_limit=5, burst_window=30) as limited:
        answers = [get(http, limited, "/api/v2/pipelines") for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert [a.headers["x-ratelimit-remaining"] for a in answers[:5]] == [
            "4",
            "3",
            "2",
            "1",
            "0",
        ]
        assert answers[-1].headers["x-ratelimit-remaining"] == "0"
        assert 1 <= int(answers[-1].headers["x-ratelimit-reset"]) <= 30
        assert limited.stats()["rate_limited"] == 1


def test_daily_budget_exhaustion_and_reset(http):
    with Sandbox(seed=1, scale=0.05, daily_budget=25, burst_limit=None) as budget:
        codes = [get(http, budget, "/api/v2/deals").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = get(http, budget, "/api/v2/deals")
        assert int(refused.headers["x-ratelimit-remaining"]) > 0
        assert refused.json()["error"] == "Daily API token budget exceeded"
        assert budget.tokens_spent == 20
        budget.reset_daily_budget()
        assert get(http, budget, "/api/v2/deals").status_code == 200


# ---- faults --------------------------------------------------------------------------------------


def test_fault_burst_429_and_after_count(fresh, http):
    fresh.faults.add("burst_429", path=r"/api/v2/deals$", count=2, after=1, reset=3)
    codes = [get(http, fresh, "/api/v2/deals").status_code for _ in range(4)]
    assert codes == [200, 429, 429, 200]
    assert get(http, fresh, "/api/v2/persons").status_code == 200
    fresh.faults.add("burst_429", path="persons")
    answer = get(http, fresh, "/api/v2/persons")
    assert answer.headers["x-ratelimit-remaining"] == "0"
    assert answer.headers["x-ratelimit-reset"] == "1"


def test_fault_daily_429(fresh, http):
    fresh.faults.add("daily_429", path="deals")
    answer = get(http, fresh, "/api/v2/deals")
    assert answer.status_code == 429 and int(answer.headers["x-ratelimit-remaining"]) > 0
    assert answer.json()["error"] == "Daily API token budget exceeded"


@pytest.mark.parametrize("status", [500, 502, 503, 524])
def test_fault_http_error(fresh, http, status):
    fresh.faults.add("http_error", status=status)
    answer = get(http, fresh, "/api/v2/deals")
    assert answer.status_code == status
    if status == 524:
        assert "text/html" in answer.headers["Content-Type"] and "524" in answer.text
    assert get(http, fresh, "/api/v2/deals").status_code == 200


def test_fault_slow_and_latency(fresh, http):
    fresh.faults.add("slow", delay=0.3)
    started = time.monotonic()
    assert get(http, fresh, "/api/v2/pipelines").status_code == 200
    assert time.monotonic() - started >= 0.3
    with Sandbox(seed=1, scale=0.05, latency=0.2) as slow:
        started = time.monotonic()
        get(http, slow, "/api/v2/pipelines")
        assert time.monotonic() - started >= 0.2


def test_fault_reset_breaks_the_connection_mid_body(fresh, http):
    fresh.faults.add("reset", path="deals")
    with pytest.raises(requests.exceptions.RequestException):
        get(http, fresh, "/api/v2/deals").json()
    assert get(http, fresh, "/api/v2/deals").status_code == 200


def test_fault_malformed_json(fresh, http):
    fresh.faults.add("malformed_json")
    answer = get(http, fresh, "/api/v2/deals")
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        json.loads(answer.text)


def test_fault_html_403(fresh, http):
    fresh.faults.add("html_403")
    answer = get(http, fresh, "/api/v2/deals")
    assert answer.status_code == 403
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "Cloudflare" in answer.text


def test_fault_expire_token(fresh):
    body = _token(
        fresh, grant_type="refresh_token", refresh_token=fresh.issue_refresh_token()
    ).json()
    fresh.faults.add("expire_token", path="pipelines")
    with requests.Session() as api:
        api.headers["Authorization"] = "Bearer " + body["access_token"]
        assert api.get(fresh.url + "/api/v2/pipelines", timeout=10).status_code == 401
        assert api.get(fresh.url + "/api/v2/stages", timeout=10).status_code == 401


def test_fault_invalid_grant_on_refresh(fresh):
    refresh = fresh.issue_refresh_token()
    fresh.faults.add("invalid_grant", path="/oauth/token")
    refused = _token(fresh, grant_type="refresh_token", refresh_token=refresh)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_fault_hostile_modes(fresh, http):
    def hostile(**modes):
        fresh.faults.add("hostile", path="deals", **modes)
        return get(http, fresh, "/api/v2/deals", limit=5).json()

    zero = hostile(zero_dates=True)["data"]
    assert all(row["add_time"] == "0000-00-00 00:00:00" for row in zero)
    nulls = hostile(null_objects=True)["data"]
    assert all(row["custom_fields"] is None for row in nulls)
    unknown = hostile(unknown_fields=True)["data"]
    assert all("sandbox_unknown_field" in row for row in unknown)
    long = hostile(long_strings=True)["data"]
    assert len(long[0]["title"]) >= 1024 * 1024
    nul = hostile(nul_chars=True)["data"]
    assert all("\x00" in row["title"] and any(ord(c) > 0xFFFF for c in row["title"]) for row in nul)
    page1 = get(http, fresh, "/api/v2/deals", limit=5).json()
    fresh.faults.add("hostile", path="deals", duplicate_ids=True)
    page2 = get(
        http, fresh, "/api/v2/deals", limit=5, cursor=page1["additional_data"]["next_cursor"]
    ).json()
    assert page2["data"][0]["id"] == page1["data"][-1]["id"]
    empty = hostile(what="empty_page_with_cursor")
    assert empty["data"] == [] and empty["additional_data"]["next_cursor"]
    resumed = get(
        http, fresh, "/api/v2/deals", limit=5, cursor=empty["additional_data"]["next_cursor"]
    ).json()
    assert resumed["data"] == page1["data"]
    with pytest.raises(ValueError, match="hostile"):
        fresh.faults.add("hostile", bogus=True)


def test_fault_validation():
    with Sandbox(seed=1, scale=0.05) as sandbox:
        with pytest.raises(ValueError, match="kind"):
            sandbox.faults.add("gremlins")
        with pytest.raises(ValueError, match="status"):
            sandbox.faults.add("http_error", status=418)
        with pytest.raises(ValueError, match="regex"):
            sandbox.faults.add("slow", path="(")


def test_random_mix_injects_only_retriable_faults(fresh, http):
    fresh.faults.random_mix(seed=5, rate=0.5)
    statuses = Counter()
    for _ in range(40):
        try:
            statuses[get(http, fresh, "/api/v2/pipelines").status_code] += 1
        except requests.exceptions.RequestException:
            statuses["reset"] += 1
    assert statuses[200] >= 5 and sum(statuses.values()) - statuses[200] >= 5
    assert set(statuses) <= {200, 429, 500, 502, 503, 524, "reset"}
    fresh.faults.clear()
    assert all(get(http, fresh, "/api/v2/pipelines").status_code == 200 for _ in range(5))


# ---- control plane and CLI -------------------------------------------------------------------------


def test_control_plane(fresh, http):
    base = fresh.url + "/_sandbox"
    with requests.Session() as plain:
        counts = plain.get(base + "/counts", timeout=10).json()
        assert counts == fresh.expected_counts()
        deals = plain.get(base + "/dataset/deals", timeout=10).json()
        assert len(deals) == counts["deals"]
        assert plain.get(base + "/dataset/nothing", timeout=10).status_code == 404
        changed = plain.post(
            base + "/mutate",
            json={
                "action": "update",
                "entity": "deals",
                "id": deals[0]["id"],
                "changes": {"title": "Via HTTP"},
            },
            timeout=10,
        ).json()
        assert changed["title"] == "Via HTTP"
        bad = plain.post(base + "/mutate", json={"action": "explode"}, timeout=10)
        assert bad.status_code == 400
        plain.post(
            base + "/faults", json={"kind": "http_error", "status": 503, "count": 1}, timeout=10
        )
        assert get(http, fresh, "/api/v2/deals").status_code == 503
        plain.post(base + "/faults", json={"kind": "html_403", "count": None}, timeout=10)
        assert get(http, fresh, "/api/v2/deals").status_code == 403
        plain.delete(base + "/faults", timeout=10)
        assert get(http, fresh, "/api/v2/deals").status_code == 200
        logged = plain.get(base + "/requests", timeout=10).json()
        assert logged and {"method", "path", "query", "status", "token_cost", "auth_kind"} <= set(
            logged[-1]
        )
        stats = plain.get(base + "/stats", timeout=10).json()
        assert stats["requests"] == len(logged) and stats["tokens_spent"] == fresh.tokens_spent
        plain.delete(base + "/requests", timeout=10)
        assert plain.get(base + "/requests", timeout=10).json() == []


def test_cli_prints_url_and_stops_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "pipedrive_sandbox", "--port", "0", "--scale", "0.05"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        if not line:
            process.wait(timeout=10)
            pytest.fail(f"no URL printed; stderr: {process.stderr.read()}")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", line)
        with requests.Session() as client:
            answer = client.get(line + "/v1/users", headers={"x-api-token": API_TOKEN}, timeout=10)
        assert answer.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
        assert "sandbox-api-token" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_cli_rejects_bad_arguments_with_one_line():
    for args, named in (
        (["--latency-ms", "-5"], "latency-ms"),
        (["--port", "abc"], "--port"),
        (["--scale", "0"], "--scale"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "pipedrive_sandbox", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2 and result.stdout == "", args
        assert result.stderr.strip().count("\n") == 0 and named in result.stderr, args
        assert "Traceback" not in result.stderr


def test_server_binds_loopback_only(sb):
    host = urlsplit(sb.url).hostname
    assert host == "127.0.0.1"
    assert CLOCK_START > DATA_END
    with socket.create_connection((host, urlsplit(sb.url).port), timeout=5):
        pass


# ---- the endpoint table against the official specs --------------------------------------------------


def test_endpoint_costs_match_the_shapes_file():
    for endpoint in ENDPOINTS:
        assert SHAPES[endpoint.key]["cost"] == endpoint.cost, endpoint.key


@pytest.mark.skipif(not SPEC_DIR.is_dir(), reason="official OpenAPI specs not available")
def test_shapes_file_is_current_with_the_specs():
    pytest.importorskip("yaml")
    from pipedrive_sandbox.generate_shapes import generate

    assert generate(SPEC_DIR) == SHAPES


# ---- secondary endpoints -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A small world, so that per-parent endpoints can be walked completely and quickly."""
    with Sandbox(seed=4, scale=0.05, burst_limit=None) as sandbox:
        yield sandbox


def _served_path(endpoint) -> str:
    return ("/api/v2" if endpoint.version == "v2" else "/v1") + endpoint.path


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.key)
def test_every_endpoint_answers_with_its_envelope(tiny, http, endpoint):
    path = _served_path(endpoint)
    if endpoint.parent:
        parent = next(
            row
            for row in tiny.dataset[endpoint.parent]
            if not row.get("is_deleted") and row.get("status") != "deleted"
        )
        path = path.replace("{id}", str(parent["id"]))
    relationship = tiny.dataset["organization_relationships"][0]
    required = {
        "deal_ids": "1,2,3",
        "folder": "inbox",
        "board_id": "1",
        "org_id": str(relationship["rel_owner_org_id"]["value"]),
    }
    params = {name: required[name] for name in endpoint.required}
    answer = get(http, tiny, path, **params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(
        answer.headers
    )
    body = answer.json()
    assert body["success"] is True
    data = body["data"]
    if endpoint.envelope == "object":
        assert isinstance(data, dict)
    elif endpoint.data_path:
        assert isinstance(data[endpoint.data_path[0]], list)
    else:
        assert isinstance(data, list) or (data is None and endpoint.version == "v1")
    additional = body.get("additional_data")
    if endpoint.envelope == "cursor":
        assert "next_cursor" in additional
    elif endpoint.envelope in ("nested", "nested_no_next"):
        assert set(additional["pagination"]) >= {"start", "limit", "more_items_in_collection"}
    elif endpoint.envelope == "flat":
        assert set(additional) == {"start", "limit", "more_items_in_collection"}
    else:
        assert additional is None


def test_required_parameters_and_their_limits(tiny, http):
    for path in (
        "/v1/mailbox/mailThreads",
        "/api/v2/deals/products",
        "/api/v2/deals/installments",
        "/api/v2/phases",
        "/v1/organizationRelationships",
    ):
        answer = get(http, tiny, path)
        assert answer.status_code == 400 and "required" in answer.json()["error"], path
    assert get(http, tiny, "/v1/mailbox/mailThreads", folder="spam").status_code == 400
    too_many = ",".join(str(n) for n in range(1, 102))
    assert get(http, tiny, "/api/v2/deals/products", deal_ids=too_many).status_code == 400
    assert get(http, tiny, "/api/v2/deals/999999/followers").status_code == 404
    assert get(http, tiny, "/api/v2/nothing/here").status_code == 404


def test_v1_nested_envelope_pages_with_next_start(sb, http):
    rows, envelopes = read_all_v1(http, sb, "/v1/notes", limit=250)
    assert len(rows) == sb.expected_counts(["notes"])["notes"]
    assert len({row["id"] for row in rows}) == len(rows)
    assert all("next_start" in env["pagination"] for env in envelopes[:-1])
    assert "next_start" not in envelopes[-1]["pagination"]


def test_v1_nested_envelope_without_next_start_and_clamped_limits(sb, http):
    rows, envelopes = read_all_v1(http, sb, "/v1/callLogs", limit=500)
    assert all(env["pagination"]["limit"] == 50 for env in envelopes)
    assert all("next_start" not in env["pagination"] for env in envelopes)
    assert len(rows) == sb.expected_counts(["call_logs"])["call_logs"]
    assert all(isinstance(row["id"], str) and row["start_time"].endswith("Z") for row in rows)
    files = get(http, sb, "/v1/files", limit=500).json()
    assert len(files["data"]) == 100 and files["additional_data"]["pagination"]["limit"] == 100


def test_leads_are_v1_with_uuid_ids_iso_times_and_flat_custom_fields(sb, http):
    rows, _ = read_all_v1(http, sb, "/v1/leads", limit=100)
    archived, _ = read_all_v1(http, sb, "/v1/leads/archived", limit=100)
    assert archived and all(row["is_archived"] for row in archived)
    assert not any(row["is_archived"] for row in rows)
    assert len(rows) + len(archived) == sb.expected_counts(["leads"])["leads"]
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert all(uuid.fullmatch(row["id"]) for row in rows)
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["update_time"]) for row in rows
    )
    adds = [ts(row["add_time"]) for row in rows]
    assert adds == sorted(adds), "default order is oldest created first"
    fields = {f["key"]: f for f in sb.dataset["lead_fields"] if f["edit_flag"]}
    monetary = next(key for key, f in fields.items() if f["field_type"] == "monetary")
    enum = next(key for key, f in fields.items() if f["field_type"] == "enum")
    with_money = [row for row in rows if row.get(monetary) is not None]
    assert with_money and all(isinstance(row[monetary + "_currency"], str) for row in with_money)
    assert all(isinstance(row[enum], str) for row in rows if row.get(enum) is not None)
    middle = sorted(row["update_time"] for row in rows)[len(rows) // 2]
    since, _ = read_all_v1(http, sb, "/v1/leads", updated_since=middle)
    assert {r["id"] for r in since} == {r["id"] for r in rows if r["update_time"] >= middle}
    assert get(http, sb, "/v1/leads", sort="update_time DESC").json()["data"][0][
        "update_time"
    ] == max(row["update_time"] for row in rows)
    assert get(http, sb, "/v1/leads", sort="colour ASC").status_code == 400


def test_notes_filters_and_sort(sb, http):
    rows, _ = read_all_v1(http, sb, "/v1/notes", sort="update_time ASC", limit=500)
    keys = [(row["update_time"], row["id"]) for row in rows]
    assert keys == sorted(keys)
    boundary = rows[len(rows) // 2]["update_time"]
    rfc3339 = boundary.replace(" ", "T") + "Z"
    since, _ = read_all_v1(http, sb, "/v1/notes", updated_since=rfc3339, limit=500)
    assert {r["id"] for r in since} == {r["id"] for r in rows if r["update_time"] >= boundary}
    window, _ = read_all_v1(http, sb, "/v1/notes", start_date="2024-01-01", end_date="2024-01-31")
    assert window and all(row["add_time"].startswith("2024-01") for row in window)
    assert get(http, sb, "/v1/notes", updated_since="last week").status_code == 400


def test_batch_deal_products_match_per_deal_data(tiny, http):
    deal_ids = [d["id"] for d in tiny.dataset["deals"]][:100]
    rows = read_all_v2(
        http, tiny, "/api/v2/deals/products", deal_ids=",".join(map(str, deal_ids)), limit=7
    )
    expected = [row for row in tiny.dataset["deal_products"] if row["deal_id"] in deal_ids]
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in expected)
    by_deal = read_all_v2(
        http,
        tiny,
        "/api/v2/deals/products",
        deal_ids="1,2,3",
        sort_by="deal_id",
        sort_direction="desc",
    )
    assert [r["deal_id"] for r in by_deal] == sorted((r["deal_id"] for r in by_deal), reverse=True)


def _paged(http, sandbox, endpoint, path, **params):
    if endpoint.paging == "none":
        params.pop("limit", None)
        data = get(http, sandbox, path, **params).json()["data"]
        return data or []
    if endpoint.paging == "cursor" and endpoint.version == "v2":
        return read_all_v2(http, sandbox, path, **params)
    if endpoint.paging == "cursor":  # v1 changelog: cursor paging inside a v1 envelope
        return read_all_v2(http, sandbox, path, **params)
    rows, _ = read_all_v1(http, sandbox, path, **params)
    return rows


def test_a_full_walk_of_the_api_delivers_the_expected_counts(tiny, http):
    """Read every stream the way a tap would and compare with expected_counts()."""
    by_key = {endpoint.key: endpoint for endpoint in ENDPOINTS}
    delivered: dict[str, int] = {}

    def walk(key, **params):
        endpoint = by_key[key]
        return _paged(http, tiny, endpoint, _served_path(endpoint), limit=3, **params)

    every = "open,won,lost,deleted"
    deals = walk("v2 /deals", status=every) + walk("v2 /deals/archived", status=every)
    delivered["deals"] = len(deals)
    simple = {
        "persons": "v2 /persons",
        "organizations": "v2 /organizations",
        "activities": "v2 /activities",
        "products": "v2 /products",
        "pipelines": "v2 /pipelines",
        "stages": "v2 /stages",
        "users": "v1 /users",
        "currencies": "v1 /currencies",
        "activity_types": "v1 /activityTypes",
        "deal_fields": "v2 /dealFields",
        "person_fields": "v2 /personFields",
        "organization_fields": "v2 /organizationFields",
        "product_fields": "v2 /productFields",
        "activity_fields": "v2 /activityFields",
        "project_fields": "v2 /projectFields",
        "note_fields": "v1 /noteFields",
        "lead_fields": "v1 /leadFields",
        "lead_labels": "v1 /leadLabels",
        "lead_sources": "v1 /leadSources",
        "notes": "v1 /notes",
        "files": "v1 /files",
        "call_logs": "v1 /callLogs",
        "filters": "v1 /filters",
        "roles": "v1 /roles",
        "permission_sets": "v1 /permissionSets",
        "webhooks": "v1 /webhooks",
        "tasks": "v2 /tasks",
        "boards": "v2 /boards",
        "project_templates": "v2 /projectTemplates",
    }
    listed = {name: walk(key) for name, key in simple.items()}
    delivered.update({name: len(rows) for name, rows in listed.items()})
    # The tap's custom_fields stream: the custom items of every field set (v2 or v1 flags).
    delivered["custom_fields"] = sum(
        1
        for name, rows in listed.items()
        if name.endswith("_fields")
        for row in rows
        if row.get("is_custom_field") or row.get("edit_flag")
    )
    delivered["goals"] = sum(  # /goals/find lists active goals unless asked otherwise
        len(get(http, tiny, "/v1/goals/find", is_active=flag).json()["data"]["goals"])
        for flag in ("true", "false")
    )
    delivered["leads"] = len(walk("v1 /leads")) + len(walk("v1 /leads/archived"))
    projects = walk("v2 /projects") + walk("v2 /projects/archived")
    delivered["projects"] = len(projects)
    threads = [
        row
        for folder in ("inbox", "drafts", "sent", "archive")
        for row in walk("v1 /mailbox/mailThreads", folder=folder)
    ]
    delivered["mail_threads"] = len(threads)
    delivered["phases"] = sum(len(walk("v2 /phases", board_id=b["id"])) for b in listed["boards"])
    relationship_ids = set()
    for org in listed["organizations"]:
        for row in walk("v1 /organizationRelationships", org_id=org["id"]):
            relationship_ids.add(row["id"])
    delivered["organization_relationships"] = len(relationship_ids)
    parents = {
        "deals": deals,
        "persons": listed["persons"],
        "organizations": listed["organizations"],
        "products": listed["products"],
        "notes": listed["notes"],
        "mail_threads": threads,
        "roles": listed["roles"],
        "permission_sets": listed["permission_sets"],
    }
    for endpoint in ENDPOINTS:
        if endpoint.parent is None:
            continue
        total = 0
        for parent in parents[endpoint.parent]:
            path = _served_path(endpoint).replace("{id}", str(parent["id"]))
            total += len(_paged(http, tiny, endpoint, path, limit=3))
        delivered[endpoint.entity] = total
    for name in ("deal_products", "deal_installments"):
        key = f"v2 /deals/{name.split('_')[1]}"
        ids = [d["id"] for d in deals]
        delivered[name] = sum(
            len(walk(key, deal_ids=",".join(map(str, ids[i : i + 100]))))
            for i in range(0, len(ids), 100)
        )
    assert delivered == tiny.expected_counts()


@pytest.mark.parametrize(
    ("entity", "shape"),
    [
        ("leads", "v1 /leads"),
        ("notes", "v1 /notes"),
        ("files", "v1 /files"),
        ("call_logs", "v1 /callLogs"),
        ("mail_threads", "v1 /mailbox/mailThreads"),
        ("mail_messages", "v1 /mailbox/mailThreads/{id}/mailMessages"),
        ("filters", "v1 /filters"),
        ("goals", "v1 /goals/find"),
        ("roles", "v1 /roles"),
        ("role_assignments", "v1 /roles/{id}/assignments"),
        ("permission_sets", "v1 /permissionSets"),
        ("permission_set_assignments", "v1 /permissionSets/{id}/assignments"),
        ("webhooks", "v1 /webhooks"),
        ("organization_relationships", "v1 /organizationRelationships"),
        ("deal_flow", "v1 /deals/{id}/flow"),
        ("deal_changelog", "v1 /deals/{id}/changelog"),
        ("deal_participants", "v1 /deals/{id}/participants"),
        ("note_comments", "v1 /notes/{id}/comments"),
        ("lead_labels", "v1 /leadLabels"),
        ("deal_products", "v2 /deals/products"),
        ("deal_installments", "v2 /deals/installments"),
        ("deal_followers", "v2 /deals/{id}/followers"),
        ("product_variations", "v2 /products/{id}/variations"),
        ("projects", "v2 /projects"),
        ("tasks", "v2 /tasks"),
        ("boards", "v2 /boards"),
        ("phases", "v2 /phases"),
        ("project_templates", "v2 /projectTemplates"),
    ],
)
def test_secondary_records_carry_every_schema_property(tiny, entity, shape):
    test_records_carry_every_schema_property_with_its_type(tiny, entity, shape)


def test_deal_children_skip_deleted_deals(tiny):
    deleted = {d["id"] for d in tiny.dataset["deals"] if d["status"] == "deleted"}
    assert deleted
    for name in ("deal_flow", "deal_followers", "deal_products", "deal_participants"):
        assert not {row["deal_id"] for row in tiny.dataset[name]} & deleted, name


def test_hostile_empty_v1_page_points_back_at_itself(fresh, http):
    fresh.faults.add("hostile", path="/v1/notes", what="empty_page_with_cursor")
    empty = get(http, fresh, "/v1/notes", start=10, limit=5).json()
    assert empty["data"] is None
    pagination = empty["additional_data"]["pagination"]
    assert pagination["more_items_in_collection"] is True and pagination["next_start"] == 10
    normal = get(http, fresh, "/v1/notes", start=10, limit=5).json()
    assert len(normal["data"]) == 5


def test_401_answers_carry_rate_limit_headers(sb):
    with requests.Session() as anon:
        answer = anon.get(sb.url + "/api/v2/deals", timeout=10)
    assert answer.status_code == 401
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(
        answer.headers
    )


def test_counts_for_selected_streams_and_lazy_tables(fresh):
    world = World(2, 500.0)  # a million deals: nothing is generated until used
    assert world.expected_counts(["pipelines"]) == {"pipelines": 3}
    assert len(world.tables._built) == 1
    with pytest.raises(KeyError):
        world.expected_counts(["nope"])
    with requests.Session() as plain:
        answer = plain.get(
            fresh.url + "/_sandbox/counts", params={"streams": "deals,users"}, timeout=10
        )
    assert answer.json() == fresh.expected_counts(["deals", "users"])
    assert set(answer.json()) == {"deals", "users"}


def test_control_plane_adds_custom_fields_from_changes(fresh):
    with requests.Session() as plain:
        answer = plain.post(
            fresh.url + "/_sandbox/mutate",
            json={
                "action": "add_custom_field",
                "entity": "persons",
                "changes": {"name": "Shoe size", "field_type": "int"},
            },
            timeout=10,
        )
    assert answer.status_code == 200
    codes = [f["field_code"] for f in fresh.dataset["person_fields"]]
    assert answer.json()["field_code"] == codes[-1]


def test_faults_are_scoped_to_api_or_token_calls(fresh, http):
    fresh.faults.add("invalid_grant")  # match-all path: still only for token calls
    fresh.faults.add("http_error", status=500)  # match-all path: only for API calls
    refresh = fresh.issue_refresh_token()
    refused = _token(fresh, grant_type="refresh_token", refresh_token=refresh)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert _token(fresh, grant_type="refresh_token", refresh_token=refresh).status_code == 200
    assert get(http, fresh, "/api/v2/pipelines").status_code == 500
    fresh.faults.add("http_error", path="/oauth/token", status=503)
    assert (
        _token(
            fresh, grant_type="refresh_token", refresh_token=fresh.issue_refresh_token()
        ).status_code
        == 503
    )
    fresh.faults.add("reset", path="/oauth/token")
    with pytest.raises(requests.exceptions.RequestException):
        _token(fresh, grant_type="refresh_token", refresh_token=fresh.issue_refresh_token())
