"""Builders for the secondary entities: leads, notes, files, mail, projects, admin objects, and
the per-record children (followers, flows, changelogs, deal products ...).

Top-level builders take ``(world, rng, row, fmt)`` like those in :mod:`builders`; child builders
take ``(world, rng, parent_row, parent_table)`` and return the parent's list of rows.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pipedrive_sandbox.builders import ACTIVITY_TYPES, Fmt, between, maybe, ref
from pipedrive_sandbox.util import (
    CURRENCIES,
    DATA_END,
    PHRASES,
    company_name,
    fmt_date,
    fmt_iso_ms,
    fmt_v1,
    fmt_v2,
    person_name,
    uuid_from,
)

if TYPE_CHECKING:
    from pipedrive_sandbox.data import Row, Table, World

LEAD_LABELS = (
    ("Hot 🔥", "red"),
    ("Warm", "orange"),
    ("Cold", "blue"),
    ("Partner", "green"),
    ("Événement", "purple"),
)
LEAD_SOURCES = ("Manually created", "Web forms", "Chatbot", "Prospector")
MAIL_FOLDERS = ("inbox", "drafts", "sent", "archive")


def _live_ref(rng: random.Random, world: World, entity: str) -> int:
    """An id of a record that is not deleted (falls back to any id)."""
    table = world.tables[entity]
    for _ in range(20):
        pos = int(rng.random() * len(table))
        if not table.deleted[pos]:
            return int(table.ids[pos])
    return int(table.ids[0])


def _user_name(world: World, user_id: int) -> str:
    users = world.tables["users"]
    pos = users.pos_of(user_id)
    return str(users.record(pos)["name"]) if pos is not None else "Unknown"


def _user_summary(world: World, user_id: int) -> dict[str, Any]:
    """A user as v1 embeds one in another row (the spec's examples of deal participants)."""
    return {
        "id": user_id,
        "name": _user_name(world, user_id),
        "email": f"user{user_id}@example.com",
        "has_pic": 0,
        "pic_hash": None,
        "active_flag": True,
        "value": user_id,
    }


# ---- leads ------------------------------------------------------------------------------------


def lead_label(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    name, color = LEAD_LABELS[row.pos % len(LEAD_LABELS)]
    return {
        "id": row.id,
        "name": name,
        "color": color,
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
    }


def lead_source(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    return {"name": LEAD_SOURCES[row.pos % len(LEAD_SOURCES)]}


def lead(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    labels = world.tables["lead_labels"].ids
    has_person = r() < 0.8
    record = {
        "id": row.id,
        "title": f"{company_name(rng)} lead",
        "owner_id": ref(rng, world, "users"),
        "creator_id": ref(rng, world, "users"),
        "label_ids": [labels[int(r() * len(labels))] for _ in range(int(r() * 2))],
        "person_id": ref(rng, world, "persons") if has_person else None,
        "organization_id": ref(rng, world, "organizations")
        if not has_person or r() < 0.5
        else None,
        "source_name": LEAD_SOURCES[int(r() * len(LEAD_SOURCES))],
        "origin": "ManuallyCreated",
        "origin_id": None,
        "channel": maybe(rng, 0.8, 1 + int(r() * 5)),
        "channel_id": None,
        "source_deal_id": maybe(rng, 0.9, ref(rng, world, "deals")),
        "is_archived": row.archived,
        "was_seen": r() < 0.7,
        "value": maybe(
            rng, 0.4, {"amount": round(r() * 20000, 2), "currency": CURRENCIES[int(r() * 3)][0]}
        ),
        "expected_close_date": maybe(rng, 0.5, fmt_date(between(rng, row.add_ts, DATA_END))),
        "next_activity_id": maybe(rng, 0.6, ref(rng, world, "activities")),
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "visible_to": ("1", "3", "5", "7")[int(r() * 4)],
        "cc_email": f"sandbox+lead{row.pos}@pipedrivemail.com",
    }
    if row.archived:
        # Real accounts send it on the rows of /leads/archived only (undeclared by the spec).
        record["archive_time"] = fmt(between(rng, row.add_ts, max(row.add_ts, row.upd_ts)))
    return record


# ---- notes, files, calls, mail -------------------------------------------------------------------


def note(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    deal_id = ref(rng, world, "deals")
    person_id = ref(rng, world, "persons")
    org_id = ref(rng, world, "organizations")
    user_id = ref(rng, world, "users")
    return {
        "id": row.id,
        "active_flag": True,
        "add_time": fmt(row.add_ts),
        "content": f"<p>{PHRASES[int(r() * len(PHRASES))]}</p>",
        "deal": {"title": f"Deal {deal_id}"},
        "lead_id": uuid_from(rng),
        # Real accounts summarise the lead like the deal (undeclared by the spec).
        "lead": {"title": f"{company_name(rng)} lead"},
        "deal_id": deal_id,
        "last_update_user_id": user_id,
        "org_id": org_id,
        "organization": {"name": company_name(rng)},
        "person": {"name": " ".join(person_name(rng))},
        "person_id": person_id,
        "project_id": 1 + int(r() * max(1, world.refs.get("projects", 1))),
        "task_id": 1 + int(r() * max(1, world.refs.get("tasks", 1))),
        "pinned_to_deal_flag": r() < 0.1,
        "pinned_to_organization_flag": False,
        "pinned_to_person_flag": False,
        "pinned_to_project_flag": False,
        "pinned_to_task_flag": False,
        "update_time": fmt(row.upd_ts),
        "user": {
            "email": f"user{user_id}@example.com",
            "icon_url": "",
            "is_you": user_id == 1,
            "name": _user_name(world, user_id),
        },
        "user_id": user_id,
    }


FILE_NAMES = ("contract.pdf", "Angebot_Ü.docx", "見積書.xlsx", "logo 🚀.png", "notes.txt")


def file_record(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    name = FILE_NAMES[int(r() * len(FILE_NAMES))]
    return {
        "id": row.id,
        "user_id": ref(rng, world, "users"),
        "deal_id": ref(rng, world, "deals"),
        "person_id": ref(rng, world, "persons"),
        "org_id": ref(rng, world, "organizations"),
        "product_id": ref(rng, world, "products"),
        "activity_id": ref(rng, world, "activities"),
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "file_name": name,
        "file_size": int(r() * 5_000_000),
        "active_flag": True,
        "inline_flag": False,
        "remote_location": "s3",
        "name": name,
        "url": f"https://example.com/files/{row.id}/download",
        # Real accounts name the file's person too (undeclared by the spec).
        "people_name": " ".join(person_name(rng)),
    }


CALL_OUTCOMES = ("connected", "no_answer", "left_message", "left_voicemail", "wrong_number", "busy")


def call_log(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    duration = int(r() * 1800)
    return {
        "user_id": ref(rng, world, "users"),
        "activity_id": ref(rng, world, "activities"),
        "subject": f"Call: {PHRASES[int(r() * len(PHRASES))]}",
        "duration": str(duration),
        "outcome": CALL_OUTCOMES[int(r() * len(CALL_OUTCOMES))],
        "from_phone_number": f"+372 5{int(r() * 10_000_000):07d}",
        "to_phone_number": f"+49 30 {int(r() * 10_000_000):07d}",
        "start_time": fmt_iso_ms(row.add_ts),
        "end_time": fmt_iso_ms(row.add_ts + duration),
        "person_id": ref(rng, world, "persons"),
        "org_id": ref(rng, world, "organizations"),
        "deal_id": ref(rng, world, "deals"),
        "lead_id": uuid_from(rng),
        "note": PHRASES[int(r() * len(PHRASES))],
        "id": row.id,
        "has_recording": r() < 0.3,
        "company_id": world.company.id,
    }


def _party(rng: random.Random, world: World, when: int) -> dict[str, Any]:
    first, last = person_name(rng)
    return {
        "id": int(rng.random() * 100000),
        "name": f"{first} {last}",
        "latest_sent": False,
        "email_address": f"party{int(rng.random() * 10000)}@example.com",
        "message_time": when * 1000,
        "linked_person_id": ref(rng, world, "persons"),
        "linked_person_name": f"{first} {last}",
        "mail_message_party_id": int(rng.random() * 100000),
        "linked_organization_id": maybe(rng, 0.5, ref(rng, world, "organizations")),
    }


def mail_thread(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    folder = MAIL_FOLDERS[row.pos % len(MAIL_FOLDERS)]
    return {
        "id": row.id,
        "account_id": f"acc-{1 + row.pos % 3}",
        "user_id": ref(rng, world, "users"),
        "subject": f"Re: {PHRASES[int(r() * len(PHRASES))]}",
        "snippet": PHRASES[int(r() * len(PHRASES))],
        "parties": {
            "to": [_party(rng, world, row.upd_ts)],
            "from": [_party(rng, world, row.add_ts)],
        },
        "drafts_parties": [],
        "folders": [folder],
        "version": 1,
        "message_count": 1 + int(r() * 3),
        "has_draft_flag": 1 if folder == "drafts" else 0,
        "archived_flag": 1 if folder == "archive" else 0,
        "last_message_timestamp": fmt_iso_ms(row.upd_ts),
        "first_message_timestamp": fmt_iso_ms(row.add_ts),
        "last_message_sent_timestamp": maybe(rng, 0.3, fmt_iso_ms(row.upd_ts)),
        "last_message_received_timestamp": fmt_iso_ms(row.upd_ts),
        "add_time": fmt_iso_ms(row.add_ts),
        "update_time": fmt_iso_ms(row.upd_ts),
        "deal_id": maybe(rng, 0.5, ref(rng, world, "deals")),
        "deal_status": None,
        "lead_id": None,
    }


# ---- admin objects ------------------------------------------------------------------------------

FILTER_TYPES = ("deals", "leads", "org", "people", "products", "activity", "projects")


def filter_record(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    kind = FILTER_TYPES[row.pos % len(FILTER_TYPES)]
    return {
        "id": row.id,
        "name": f"My {kind} — filter {row.id}",
        "filter_code": None,
        "is_editable": True,
        "active_flag": True,
        "type": kind,
        "temporary_flag": None,
        "user_id": ref(rng, world, "users"),
        "add_time": fmt(row.add_ts),
        "update_time": maybe(rng, 0.2, fmt(row.upd_ts)),
        "visible_to": ("1", "3", "5", "7")[row.pos % 4],
        "last_used_time": maybe(rng, 0.3, fmt(row.upd_ts)),
        "custom_view_id": None,
    }


GOAL_TYPES = (
    "deals_won",
    "deals_progressed",
    "activities_completed",
    "activities_added",
    "deals_started",
)


def goal(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    return {
        "id": row.id,
        "owner_id": 1,
        "title": f"Q{1 + row.pos % 4} goal 🎯",
        "type": {
            "name": GOAL_TYPES[row.pos % len(GOAL_TYPES)],
            "params": {"pipeline_id": [1 + row.pos % 3], "activity_type_id": [1 + row.pos % 8]},
        },
        "assignee": {"id": 1, "type": "company"},
        "interval": ("weekly", "monthly", "quarterly", "yearly")[row.pos % 4],
        "duration": {"start": fmt_date(row.add_ts), "end": fmt_date(row.upd_ts)},
        "expected_outcome": {
            "target": 10 * (1 + row.pos),
            "tracking_metric": "sum" if row.pos % 2 else "quantity",
            # A sum goal's target is money: real accounts name its currency (undeclared).
            "currency_id": 1 if row.pos % 2 else None,
        },
        "is_active": row.pos != 0,
        "report_ids": [],
    }


ROLE_NAMES = ("Sales", "Sales — Nordics", "Sales — DACH", "Support")


def role(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    return {
        "parent_role_id": None if row.pos == 0 else 1,
        "name": ROLE_NAMES[row.pos % len(ROLE_NAMES)],
        "id": row.id,
        "active_flag": True,
        "assignment_count": "0",
        "sub_role_count": "3" if row.pos == 0 else "0",
        "level": 1 if row.pos == 0 else 2,
        # Real accounts send it; the spec does not declare it.
        "description": f"{ROLE_NAMES[row.pos % len(ROLE_NAMES)]} team" if row.pos else None,
    }


PERMISSION_SETS = (
    ("Global admin", "global", "admin"),
    ("Regular user", "sales", "regular"),
    ("Sales manager", "sales", "manager"),
    ("Projects", "projects", "custom"),
)


def permission_set(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    name, app, kind = PERMISSION_SETS[row.pos % len(PERMISSION_SETS)]
    return {
        "id": row.id,
        "name": name,
        "description": f"{name} permissions",
        "app": app,
        "type": kind,
        "assignment_count": 0,
    }


def webhook(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    return {
        "id": row.id,
        "company_id": world.company.id,
        "owner_id": 1,
        "user_id": 1,
        "event_action": ("*", "updated", "deleted")[row.pos % 3],
        "event_object": ("deal", "person", "organization")[row.pos % 3],
        "subscription_url": f"https://hooks.example.com/pipedrive/{row.id}",
        "version": "2.0",
        "is_active": 1,
        "add_time": fmt_iso_ms(row.add_ts),
        "remove_time": None,
        "type": "general",
        "http_auth_user": None,
        "http_auth_password": None,
        "remove_reason": None,
        "last_delivery_time": fmt_iso_ms(row.upd_ts),
        "last_http_status": 200,
        "admin_id": 1,
        "name": f"Webhook {row.id}",
    }


def _org_summary(world: World, org_id: int) -> dict[str, Any]:
    orgs = world.tables["organizations"]
    pos = orgs.pos_of(org_id)
    record = orgs.record(pos) if pos is not None else {}
    return {
        "name": record.get("name", ""),
        "people_count": 1 + org_id % 7,
        "owner_id": record.get("owner_id", 1),
        "address": (record.get("address") or {}).get("value"),
        "cc_email": None,
        "value": org_id,
    }


def organization_relationship(
    world: World, rng: random.Random, row: Row, fmt: Fmt
) -> dict[str, Any]:
    owner = _live_ref(rng, world, "organizations")
    linked = _live_ref(rng, world, "organizations")
    if linked == owner:
        linked = owner % world.refs["organizations"] + 1
    kind = "parent" if rng.random() < 0.5 else "related"
    linked_summary = _org_summary(world, linked)
    return {
        "id": row.id,
        "type": kind,
        "rel_owner_org_id": _org_summary(world, owner),
        "rel_linked_org_id": linked_summary,
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "active_flag": "true",
        "calculated_type": kind,
        "calculated_related_org_id": linked,
        "related_organization_name": linked_summary["name"],
    }


# ---- projects --------------------------------------------------------------------------------------

PROJECT_STATUSES = ("open", "completed", "canceled", "deleted")


def project(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    board_id = ref(rng, world, "boards")
    return {
        "id": row.id,
        "title": f"Implementation — {company_name(rng)}",
        "description": PHRASES[int(r() * len(PHRASES))],
        "status": PROJECT_STATUSES[row.status],
        "board_id": board_id,
        "phase_id": (board_id - 1) * 4 + 1 + int(r() * 4),
        "owner_id": ref(rng, world, "users"),
        "start_date": fmt_date(row.add_ts),
        "end_date": fmt_date(between(rng, row.add_ts, DATA_END)),
        "deal_ids": [ref(rng, world, "deals")],
        "person_ids": [ref(rng, world, "persons")],
        "org_ids": [ref(rng, world, "organizations")],
        "label_ids": [],
        "health_status": maybe(rng, 0.5, int(r() * 3)),
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "status_change_time": fmt(between(rng, row.add_ts, row.upd_ts)),
        "archive_time": fmt(row.upd_ts) if row.archived else None,
    }


def task(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    done = r() < 0.4
    return {
        "id": row.id,
        "title": f"Task {row.id}: {PHRASES[int(r() * len(PHRASES))][:30]}",
        "creator_id": ref(rng, world, "users"),
        "description": maybe(rng, 0.3, PHRASES[int(r() * len(PHRASES))]),
        "project_id": ref(rng, world, "projects"),
        "is_done": done,
        "is_milestone": r() < 0.1,
        "due_date": maybe(rng, 0.3, fmt_date(between(rng, row.add_ts, DATA_END))),
        "start_date": maybe(rng, 0.5, fmt_date(row.add_ts)),
        "parent_task_id": None if row.pos < 10 or r() < 0.8 else 1 + int(r() * 10),
        "assignee_ids": [ref(rng, world, "users")],
        "priority": maybe(rng, 0.5, int(r() * 3)),
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "marked_as_done_time": fmt(row.upd_ts) if done else None,
    }


BOARDS = ("Onboarding", "Implementation 🛠", "Renewals")
PHASES = ("To do", "In progress", "Review", "Done ✓")


def board(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": BOARDS[row.pos % len(BOARDS)],
        "order_nr": row.pos + 1,
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
    }


def phase(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": PHASES[row.pos % 4],
        "board_id": 1 + row.pos // 4,
        "order_nr": row.pos % 4 + 1,
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
    }


def project_template(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    return {
        "id": row.id,
        "title": f"Template {row.id}",
        "description": "",
        "projects_board_id": 1 + row.pos % 3,
        "owner_id": 1,
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
    }


# ---- children ----------------------------------------------------------------------------------------
# Child ids are derived from the parent id so they are unique and stable: parent * 16 + n.


def _count(rng: random.Random, low: int, high: int) -> int:
    return low + int(rng.random() * (high - low + 1))


def followers(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict[str, Any]]:
    users = world.refs["users"]
    chosen = sorted({1 + int(rng.random() * users) for _ in range(_count(rng, 1, 3))})
    return [
        {"user_id": user_id, "add_time": fmt_v2(between(rng, parent.add_ts, parent.upd_ts))}
        for user_id in chosen
    ]


def deal_products(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict]:
    rows = []
    for index in range(_count(rng, 0, 3)):
        quantity = 1 + int(rng.random() * 10)
        price = round(rng.random() * 1000, 2)
        product_id = ref(rng, world, "products")
        rows.append(
            {
                "id": parent.id * 16 + index,
                "sum": round(quantity * price, 2),
                "tax": 0,
                "deal_id": parent.id,
                "name": f"Product #{product_id}",
                "product_id": product_id,
                "product_variation_id": None,
                "order_nr": index + 1,
                "add_time": fmt_v2(parent.add_ts),
                "update_time": fmt_v2(parent.upd_ts),
                "comments": "",
                "currency": "EUR",
                "discount": 0,
                "discount_type": "percentage",
                "quantity": quantity,
                "item_price": price,
                "tax_method": "inclusive",
                "is_enabled": True,
                "billing_frequency": "one-time",
                "billing_frequency_cycles": None,
                "billing_start_date": None,
            }
        )
    return rows


def deal_installments(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict]:
    if rng.random() < 0.7:
        return []
    return [
        {
            "id": parent.id * 16 + index,
            "amount": round(rng.random() * 5000, 2),
            "billing_date": fmt_date(parent.add_ts + index * 30 * 86400),
            "description": f"Installment {index + 1}",
            "deal_id": parent.id,
        }
        for index in range(_count(rng, 1, 3))
    ]


def product_variations(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict]:
    return [
        {
            "id": parent.id * 16 + index,
            "name": ("Small", "Large", "Größe XL")[index],
            "product_id": parent.id,
            "prices": [
                {
                    "price": round(rng.random() * 500, 2),
                    "currency": "EUR",
                    "cost": 0,
                    "direct_cost": None,
                    "notes": "",
                }
            ],
        }
        for index in range(_count(rng, 0, 2))
    ]


FLOW_OBJECTS = {
    "deals": "dealChange",
    "persons": "personChange",
    "organizations": "organizationChange",
}


# The field history of each entity, as its /changelog lists it.
CHANGELOGS = {
    "deals": "deal_changelog",
    "persons": "person_changelog",
    "organizations": "organization_changelog",
}
CHANGED_FIELDS = {
    "deals": ("stage_id", "value", "title", "status"),
    "persons": ("name", "owner_id", "org_id", "label"),
    "organizations": ("name", "owner_id", "address", "label"),
}


def flow(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict[str, Any]]:
    """The updates feed: the parent's field changes (exactly its changelog) plus other items."""
    change = FLOW_OBJECTS[table.entity.name]
    rows: list[dict[str, Any]] = []
    history = world.children[CHANGELOGS[table.entity.name]].rows_for_pos(parent.pos)
    for index, entry in enumerate(history):
        data: dict[str, Any] = {
            "id": parent.id * 16 + index,
            "item_id": parent.id,
            "user_id": entry["actor_user_id"],
            "field_key": entry["field_key"],
            "old_value": entry["old_value"],
            "new_value": entry["new_value"],
            "is_bulk_update_flag": None,
            "log_time": entry["time"],
            "change_source": "app",
            "change_source_user_agent": None,
            "additional_data": [],
        }
        rows.append({"object": change, "timestamp": entry["time"], "data": data})
    for index in range(len(history), len(history) + _count(rng, 0, 3)):
        when = between(rng, parent.add_ts, parent.upd_ts)
        kind = ("note", "activity", "file")[int(rng.random() * 3)]
        item_id = parent.id * 16 + index
        if kind == "note":
            data = {
                "id": item_id,
                "content": PHRASES[index % len(PHRASES)],
                "add_time": fmt_v1(when),
                "user_id": ref(rng, world, "users"),
            }
        elif kind == "activity":
            name, key, _ = ACTIVITY_TYPES[index % len(ACTIVITY_TYPES)]
            data = {
                "id": item_id,
                "subject": name,
                "type": key,
                "done": True,
                "due_date": fmt_date(when),
                "add_time": fmt_v1(when),
            }
        else:
            data = {"id": item_id, "file_name": "attachment.pdf", "add_time": fmt_v1(when)}
        rows.append({"object": kind, "timestamp": fmt_v1(when), "data": data})
    rows.sort(key=lambda item: str(item["timestamp"]), reverse=True)  # newest first, like the API
    return rows


def changelog(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict]:
    fields = CHANGED_FIELDS[table.entity.name]
    rows = []
    for index in range(_count(rng, 0, 4)):
        rows.append(
            {
                "field_key": fields[index % 4],
                "old_value": None if index == 0 else str(index),
                "new_value": str(index + 1),
                "actor_user_id": ref(rng, world, "users"),
                "time": fmt_v1(between(rng, parent.add_ts, parent.upd_ts)),
                "change_source": "app",
                "change_source_user_agent": None,
                "is_bulk_update_flag": False,
            }
        )
    return rows


def deal_participants(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict]:
    rows = []
    for index in range(_count(rng, 0, 2)):
        person_id = _live_ref(rng, world, "persons")
        first, last = person_name(rng)
        rows.append(
            {
                "id": parent.id * 16 + index,
                "person_id": {
                    "active_flag": True,
                    "name": f"{first} {last}",
                    "email": [],
                    "phone": [],
                    "owner_id": 1,
                    "company_id": world.company.id,
                    "value": person_id,
                },
                "add_time": fmt_v1(between(rng, parent.add_ts, parent.upd_ts)),
                "active_flag": True,
                "added_by_user_id": _user_summary(world, ref(rng, world, "users")),
                "related_item_data": {"deal_id": parent.id, "title": f"Deal {parent.id}"},
                "related_item_type": "deal",
                "related_item_id": parent.id,
            }
        )
    return rows


def note_comments(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict]:
    return [
        {
            "uuid": uuid_from(rng),
            "active_flag": True,
            "add_time": fmt_v1(between(rng, parent.add_ts, parent.upd_ts)),
            "update_time": fmt_v1(parent.upd_ts),
            "content": PHRASES[index % len(PHRASES)],
            "object_id": str(parent.id),
            "object_type": "note",
            "user_id": ref(rng, world, "users"),
            "updater_id": ref(rng, world, "users"),
            "company_id": world.company.id,
        }
        for index in range(_count(rng, 0, 2))
    ]


def mail_messages(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict]:
    thread = table.record(parent.pos)
    rows = []
    for index in range(int(thread.get("message_count") or 1)):
        when = between(rng, parent.add_ts, parent.upd_ts)
        rows.append(
            {
                "id": parent.id * 16 + index,
                "account_id": thread.get("account_id", ""),
                "user_id": thread.get("user_id", 1),
                "subject": thread.get("subject", ""),
                "snippet": PHRASES[index % len(PHRASES)],
                "from": [_party(rng, world, when)],
                "to": [_party(rng, world, when)],
                "cc": [],
                "bcc": [],
                "body_url": f"https://example.com/mail/{parent.id}/{index}",
                "mail_thread_id": parent.id,
                "draft": None,
                "message_time": fmt_iso_ms(when),
                "add_time": fmt_iso_ms(when),
                "update_time": fmt_iso_ms(when),
            }
        )
    return rows


def role_assignments(world: World, rng: random.Random, parent: Row, table: Table) -> list[dict]:
    users = world.refs["users"]
    chosen = sorted({1 + int(rng.random() * users) for _ in range(_count(rng, 1, 4))})
    return [
        {
            "parent_role_id": None if parent.pos == 0 else 1,
            "name": _user_name(world, user_id),
            "user_id": user_id,
            "role_id": parent.id,
            "active_flag": True,
            "type": "assignment",
        }
        for user_id in chosen
    ]


def permission_set_assignments(
    world: World, rng: random.Random, parent: Row, table: Table
) -> list[dict]:
    users = world.refs["users"]
    chosen = sorted({1 + int(rng.random() * users) for _ in range(_count(rng, 1, 4))})
    return [
        {"user_id": user_id, "permission_set_id": parent.id, "name": _user_name(world, user_id)}
        for user_id in chosen
    ]
