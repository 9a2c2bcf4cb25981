"""The README's stream table is what tools/stream_table.py renders from the stream classes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tap_pipedrive.endpoints import endpoint_entries, facts_for_url, scope_hint
from tap_pipedrive.streams import STREAM_TYPES

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "stream_table", REPO_ROOT / "tools" / "stream_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_table_has_one_row_per_stream_with_cost_and_scope():
    rows = [line for line in load_tool().render().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [stream.name for stream in STREAM_TYPES]
    by_name = {row.split("`")[1]: row.split(" | ") for row in rows}
    assert by_name["deal_products"][6].startswith("10 per 100 deals")
    assert "`deal_ids`" in by_name["deal_products"][1]
    assert by_name["deal_flow"][6].startswith("40 per deal")
    assert by_name["files"][6].startswith("20 per 100 rows")
    assert by_name["call_logs"][6].startswith("20 per 50 rows")
    assert "`phone-integration`" in by_name["call_logs"][5]
    assert "`deal_id`, `user_id`" in by_name["deal_followers"][2]
    assert "incremental on `deal_update_time`" in by_name["deal_followers"][3]
    assert by_name["leads"][6].startswith("20 / 40")
    # How deletes are captured, and how soon.
    assert by_name["persons"][4] == "deleted or merged away: next sweep"
    assert by_name["notes"][4] == "deleted: next sweep"
    assert by_name["deal_followers"][4].startswith("next sweep: rows of deleted parents")
    assert by_name["phases"][4] == by_name["filters"][4] == "next run"
    assert by_name["deals"][4].startswith("deleted: next run")
    assert "include_mail_messages" in by_name["mail_messages"][0]


def test_scope_hints_come_from_the_request_path():
    facts = facts_for_url("https://x.pipedrive.com/api/v2/deals/17/followers?cursor=abc")
    assert facts is not None and facts["token_cost"] == 10
    assert facts_for_url("https://x.pipedrive.com/api/v2/deals/products")["scopes"] == [
        "deals:full",
        "deals:read",
        "products:full",
        "products:read",
    ]
    assert "recents:read" in scope_hint("http://127.0.0.1:1/api/v1/deals/3/flow")
    assert scope_hint("http://127.0.0.1:1/api/v1/nowhere") == ""
    assert len(endpoint_entries()) == len(STREAM_TYPES) - 1  # all but custom_fields
