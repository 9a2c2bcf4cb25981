"""Record builders: semantic values per entity, plus generic schema-driven fillers.

A builder sets the fields whose values matter (ids, relations, timestamps, statuses, names);
:func:`compile_plan` fills every other property of the spec's item schema with a plausible
value of the declared type, so records always carry the full documented shape.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipedrive_sandbox.util import (
    CURRENCIES,
    DATA_END,
    DATA_START,
    DEAL_WORDS,
    PHRASES,
    TIMEZONES,
    address,
    company_name,
    fmt_date,
    fmt_iso_ms,
    fmt_v1,
    fmt_v2,
    person_name,
    uuid_from,
)

if TYPE_CHECKING:
    from pipedrive_sandbox.data import Row, World

Filler = Callable[[random.Random, "World"], Any]
Fmt = Callable[[int], str]

# Relation fields -> the entity their ids point into.
FOREIGN_KEYS = {
    "owner_id": "users",
    "user_id": "users",
    "creator_user_id": "users",
    "creator_id": "users",
    "actor_user_id": "users",
    "last_update_user_id": "users",
    "updater_id": "users",
    "admin_id": "users",
    "added_by_user_id": "users",
    "assignee_id": "users",
    "person_id": "persons",
    "linked_person_id": "persons",
    "org_id": "organizations",
    "organization_id": "organizations",
    "linked_organization_id": "organizations",
    "deal_id": "deals",
    "source_deal_id": "deals",
    "product_id": "products",
    "pipeline_id": "pipelines",
    "stage_id": "stages",
    "activity_id": "activities",
    "next_activity_id": "activities",
    "last_activity_id": "activities",
    "project_id": "projects",
    "board_id": "boards",
    "phase_id": "phases",
    "task_id": "tasks",
    "role_id": "roles",
    "parent_task_id": "tasks",
}
VISIBLE_TO = (1, 3, 5, 7)


@dataclass
class Plan:
    """Compiled generic fillers for one item schema, and its property order."""

    order: tuple[str, ...]
    fillers: list[tuple[str, Filler]] = field(default_factory=list)


def compile_plan(item: dict[str, Any], style: str = "v2") -> Plan:
    properties = item.get("properties", {})
    plan = Plan(order=tuple(properties))
    for name, schema in properties.items():
        plan.fillers.append((name, compile_filler(name, schema, style)))
    return plan


def _timestamp(style: str) -> Callable[[random.Random], str]:
    formatter = {"v2": fmt_v2, "v1": fmt_v1, "iso": fmt_iso_ms}[style]

    def make(rng: random.Random) -> str:
        return formatter(DATA_START + int(rng.random() * (DATA_END - DATA_START)))

    return make


def _string_filler(name: str, schema: dict[str, Any], style: str) -> Filler:
    fmt = schema.get("format")
    lowered = name.lower()
    if (
        fmt == "date-time"
        or lowered.endswith(("_time", "timestamp"))
        or lowered
        in (
            "created",
            "modified",
            "last_login",
            "timestamp",
            "time",
        )
    ):
        stamp = _timestamp("iso" if fmt == "date-time" and style == "v1" else style)
        return lambda rng, world: stamp(rng)
    if fmt == "date" or lowered.endswith("_date") or lowered in ("birthday", "start", "end"):
        return lambda rng, world: fmt_date(DATA_START + int(rng.random() * 3 * 365 * 86400))
    if fmt == "uuid" or lowered.endswith("uuid") or lowered == "lead_id":
        return lambda rng, world: uuid_from(rng)
    if "email" in lowered:
        return lambda rng, world: f"user{int(rng.random() * 10000)}@example.com"
    if lowered.endswith("url") or lowered in ("website", "linkedin", "remote_location"):
        return lambda rng, world: f"https://example.com/{name}/{int(rng.random() * 10000)}"
    if "phone" in lowered:
        return lambda rng, world: f"+372 5{int(rng.random() * 10_000_000):07d}"
    if lowered == "currency" or lowered.endswith("_currency"):
        return lambda rng, world: CURRENCIES[int(rng.random() * 3)][0]
    if "color" in lowered:
        return lambda rng, world: f"#{int(rng.random() * 0xFFFFFF):06x}"
    if lowered in ("duration", "due_time"):
        return lambda rng, world: f"{int(rng.random() * 3):02d}:{int(rng.random() * 4) * 15:02d}"
    if lowered in ("name", "title", "subject", "label", "file_name") or lowered.endswith("_name"):
        return lambda rng, world: company_name(rng)
    if lowered.endswith("_id"):
        return lambda rng, world: str(int(rng.random() * 100000))
    return lambda rng, world: PHRASES[int(rng.random() * len(PHRASES))]


def compile_filler(name: str, schema: dict[str, Any], style: str) -> Filler:
    kind = schema.get("type")
    enum = schema.get("enum")
    base: Filler
    if enum:
        choices = tuple(enum)
        base = lambda rng, world: choices[int(rng.random() * len(choices))]  # noqa: E731
    elif kind == "object" or "properties" in schema:
        parts = [
            (sub, compile_filler(sub, sub_schema, style))
            for sub, sub_schema in schema.get("properties", {}).items()
        ]
        base = lambda rng, world: {sub: fill(rng, world) for sub, fill in parts}  # noqa: E731
    elif kind == "array":
        item_name = name[:-1] if name.endswith("s") else name
        item = compile_filler(item_name, schema.get("items", {}), style)
        base = lambda rng, world: [item(rng, world) for _ in range(int(rng.random() * 3))]  # noqa: E731
    elif kind == "integer":
        target = FOREIGN_KEYS.get(name) or FOREIGN_KEYS.get(name[:-1] if name.endswith("s") else "")
        if target is not None:
            base = lambda rng, world: 1 + int(rng.random() * world.refs.get(target, 1))  # noqa: E731
        elif name.endswith("_count"):
            base = lambda rng, world: int(rng.random() * 20)  # noqa: E731
        else:
            base = lambda rng, world: int(rng.random() * 100)  # noqa: E731
    elif kind == "number":
        base = lambda rng, world: round(rng.random() * 1000, 2)  # noqa: E731
    elif kind == "boolean":
        base = lambda rng, world: rng.random() < 0.5  # noqa: E731
    elif kind == "string":
        base = _string_filler(name, schema, style)
    else:
        base = lambda rng, world: None  # noqa: E731
    if schema.get("nullable"):
        inner = base
        return lambda rng, world: None if rng.random() < 0.15 else inner(rng, world)
    return base


# ---- helpers ----------------------------------------------------------------------------------


def ref(rng: random.Random, world: World, entity: str) -> int:
    return 1 + int(rng.random() * world.refs.get(entity, 1))


def between(rng: random.Random, low: int, high: int) -> int:
    return low + int(rng.random() * max(1, high - low))


def maybe(rng: random.Random, rate: float, value: Any) -> Any:
    return None if rng.random() < rate else value


def stage_of(world: World, stage_id: int) -> tuple[int, int]:
    """(pipeline_id, order_nr) of a generated stage: five stages per pipeline."""
    return 1 + (stage_id - 1) // 5 % max(1, world.refs["pipelines"]), (stage_id - 1) % 5 + 1


def contact(rng: random.Random, value: str, label: str) -> dict[str, Any]:
    return {"value": value, "primary": True, "label": label}


# ---- phase 1 entities -------------------------------------------------------------------------


def user(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    first, last = person_name(rng)
    _, tz_name = TIMEZONES[row.pos % len(TIMEZONES)]
    active = row.pos != world.inactive_user_pos  # one deactivated user
    return {
        "id": row.id,
        "name": f"{first} {last}",
        "default_currency": "EUR",
        "locale": ("en_US", "et_EE", "de_DE", "ja_JP")[row.pos % 4],
        "lang": 1,
        "email": f"user{row.id}@example.com",
        "phone": maybe(rng, 0.4, f"+372 5{int(rng.random() * 10_000_000):07d}"),
        "activated": active,
        "last_login": fmt_v1(row.upd_ts),
        "created": fmt_v1(row.add_ts),
        "modified": maybe(rng, 0.2, fmt_v1(row.upd_ts)),
        "has_created_company": row.id == 1,
        "access": [{"app": "sales", "admin": row.id == 1, "permission_set_id": f"ps-{row.id}"}],
        "active_flag": active,
        "timezone_name": tz_name,
        "timezone_offset": "+03:00",
        "role_id": 1 + row.pos % 3,
        "icon_url": maybe(rng, 0.5, f"https://example.com/avatars/{row.id}.png"),
        "is_you": row.id == 1,
        "is_deleted": not active,
        # Sent by real accounts, not declared by the spec.
        "is_admin": 1 if row.id == 1 else 0,
        "signup_flow_variation": "control" if row.id == 1 else None,
    }


def me(world: World, record: dict[str, Any]) -> dict[str, Any]:
    return {
        **record,
        "company_id": world.company.id,
        "company_name": world.company.name,
        "company_domain": world.company.domain,
        "company_country": "EE",
        "company_industry": "Software",
        "language": {"language_code": "en", "country_code": "US"},
    }


def currency(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    code, name, symbol, decimals = CURRENCIES[row.pos % len(CURRENCIES)]
    return {
        "id": row.id,
        "code": code,
        "name": name,
        "decimal_points": decimals,
        "symbol": symbol,
        "active_flag": True,
        "is_custom_flag": code == "BTC",
    }


ACTIVITY_TYPES = (
    ("Call", "call", "call"),
    ("Meeting", "meeting", "meeting"),
    ("Task", "task", "task"),
    ("Deadline", "deadline", "deadline"),
    ("Email", "email", "email"),
    ("Lunch", "lunch", "lunch"),
    ("Demo 🎬", "demo", "calendar"),
    ("Site visit — Vor Ort", "site_visit", "document"),
)


def activity_type(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    name, key, icon = ACTIVITY_TYPES[row.pos % len(ACTIVITY_TYPES)]
    return {
        "id": row.id,
        "name": name,
        "icon_key": icon,
        "color": f"{int(rng.random() * 0xFFFFFF):06x}",
        "order_nr": row.pos + 1,
        "key_string": key,
        "active_flag": True,
        "is_custom_flag": row.pos >= 6,
        "add_time": fmt_v1(row.add_ts),
        "update_time": fmt_v1(row.upd_ts),
    }


PIPELINES = ("Sales", "Partnerships 🤝", "Renouvellements")
STAGES = ("Lead in", "Qualified", "Proposal — sent", "Negotiation", "Contract signed ✍")


def pipeline(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": PIPELINES[row.pos % len(PIPELINES)] if row.pos < 3 else f"Pipeline {row.id}",
        "order_nr": row.pos + 1,
        "is_deleted": row.deleted,
        "is_deal_probability_enabled": row.pos % 2 == 0,
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
    }


def stage(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    pipeline_id, order_nr = stage_of(world, row.id)
    rotting = rng.random() < 0.5
    return {
        "id": row.id,
        "order_nr": order_nr,
        "name": STAGES[order_nr - 1],
        "is_deleted": row.deleted,
        "deal_probability": order_nr * 20,
        "pipeline_id": pipeline_id,
        "is_deal_rot_enabled": rotting,
        "days_to_rotten": 30 if rotting else None,
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
    }


DEAL_STATUSES = ("open", "won", "lost", "deleted")
LOST_REASONS = ("Too expensive", "Chose a competitor", "No budget — maybe next year", "")
ORIGINS = ("ManuallyCreated", "API", "Import", "WebForms", "LeadBooster")


def deal(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    status = DEAL_STATUSES[row.status]
    stage_id = ref(rng, world, "stages")
    pipeline_id, _ = stage_of(world, stage_id)
    closed_ts = between(rng, row.add_ts, row.upd_ts) if status in ("won", "lost") else None
    value = round(r() * 50000, 2) if r() > 0.05 else 0
    title = f"{company_name(rng)} — {DEAL_WORDS[int(r() * len(DEAL_WORDS))]}"
    if r() < 0.01:
        title = ""  # Pipedrive allows clearing a title through the API
    return {
        "id": row.id,
        "title": title,
        "owner_id": ref(rng, world, "users"),
        "person_id": ref(rng, world, "persons"),
        "org_id": ref(rng, world, "organizations"),
        "pipeline_id": pipeline_id,
        "stage_id": stage_id,
        "value": value,
        "currency": CURRENCIES[int(r() * 4)][0],
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "stage_change_time": fmt(between(rng, row.add_ts, row.upd_ts)),
        "is_deleted": row.deleted,
        "is_archived": row.archived,
        "status": status,
        "probability": maybe(rng, 0.5, int(r() * 100)),
        "lost_reason": LOST_REASONS[int(r() * len(LOST_REASONS))] if status == "lost" else None,
        "visible_to": VISIBLE_TO[int(r() * 4)],
        "close_time": fmt(closed_ts) if closed_ts else None,
        "won_time": fmt(closed_ts) if closed_ts and status == "won" else None,
        "lost_time": fmt(closed_ts) if closed_ts and status == "lost" else None,
        "expected_close_date": maybe(rng, 0.3, fmt_date(between(rng, row.add_ts, DATA_END))),
        "label_ids": [1 + int(r() * 5) for _ in range(int(r() * 3))],
        "origin": ORIGINS[int(r() * len(ORIGINS))],
        "origin_id": None,
        "channel": maybe(rng, 0.8, 1 + int(r() * 5)),
        "channel_id": maybe(rng, 0.9, f"ch-{int(r() * 1000)}"),
        "source_lead_id": maybe(rng, 0.8, uuid_from(rng)),
        "arr": maybe(rng, 0.7, round(r() * 100000, 2)),
        "mrr": maybe(rng, 0.7, round(r() * 10000, 2)),
        "acv": maybe(rng, 0.7, round(r() * 100000, 2)),
        # optional (include_fields) fields
        "next_activity_id": maybe(rng, 0.5, ref(rng, world, "activities")),
        "last_activity_id": maybe(rng, 0.5, ref(rng, world, "activities")),
        "first_won_time": fmt(closed_ts) if closed_ts and status == "won" else None,
        "products_count": int(r() * 4),
        "files_count": int(r() * 3),
        "notes_count": int(r() * 5),
        "followers_count": 1 + int(r() * 3),
        "email_messages_count": int(r() * 10),
        "activities_count": int(r() * 8),
        "done_activities_count": int(r() * 5),
        "undone_activities_count": int(r() * 3),
        "participants_count": int(r() * 3),
        "last_incoming_mail_time": maybe(rng, 0.6, fmt(between(rng, row.add_ts, row.upd_ts))),
        "last_outgoing_mail_time": maybe(rng, 0.6, fmt(between(rng, row.add_ts, row.upd_ts))),
        "smart_bcc_email": f"sandbox+deal{row.id}@pipedrivemail.com",
    }


PERSON_OPTIONAL_COUNTS = (
    "open_deals_count",
    "related_open_deals_count",
    "closed_deals_count",
    "related_closed_deals_count",
    "participant_open_deals_count",
    "participant_closed_deals_count",
    "email_messages_count",
    "activities_count",
    "done_activities_count",
    "undone_activities_count",
    "files_count",
    "notes_count",
    "followers_count",
    "won_deals_count",
    "related_won_deals_count",
    "lost_deals_count",
    "related_lost_deals_count",
    "people_count",
)


def _optional_counts(rng: random.Random, names: tuple[str, ...]) -> dict[str, int]:
    return {name: int(rng.random() * 12) for name in names}


def person(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    first, last = person_name(rng)
    if r() < 0.02:
        last = ""
    ascii_first = first.encode("ascii", "ignore").decode() or "contact"
    record: dict[str, Any] = {
        "id": row.id,
        "name": f"{first} {last}".strip(),
        "first_name": first,
        "last_name": last,
        "owner_id": ref(rng, world, "users"),
        "org_id": ref(rng, world, "organizations"),
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "emails": (
            [contact(rng, f"{ascii_first.lower()}.{row.id}@example.com", "work")]
            if r() > 0.1
            else []
        ),
        "phones": [contact(rng, f"+372 5{int(r() * 10_000_000):07d}", "mobile")]
        if r() > 0.3
        else [],
        "is_deleted": row.deleted,
        "visible_to": VISIBLE_TO[int(r() * 4)],
        "label_ids": [1 + int(r() * 4) for _ in range(int(r() * 2))],
        "picture_id": int(r() * 5000),
        "postal_address": address(rng),
        "notes": PHRASES[int(r() * len(PHRASES))],
        "im": [],
        "birthday": fmt_date(DATA_START - int(r() * 40 * 365) * 86400),
        "job_title": ("CEO", "CTO", "Käufer", "購買担当", "", "Head of Ops")[int(r() * 6)],
        "next_activity_id": maybe(rng, 0.5, ref(rng, world, "activities")),
        "last_activity_id": maybe(rng, 0.5, ref(rng, world, "activities")),
        "last_incoming_mail_time": maybe(rng, 0.6, fmt(between(rng, row.add_ts, row.upd_ts))),
        "last_outgoing_mail_time": maybe(rng, 0.6, fmt(between(rng, row.add_ts, row.upd_ts))),
        "marketing_status": ("no_consent", "subscribed", "unsubscribed", "archived")[int(r() * 4)],
        "doi_status": ("pending", "confirmed", "")[int(r() * 3)],
        "smart_bcc_email": f"sandbox+person{row.id}@pipedrivemail.com",
    }
    record.update(_optional_counts(rng, PERSON_OPTIONAL_COUNTS[:-1]))
    return record


def organization(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    record: dict[str, Any] = {
        "id": row.id,
        "name": company_name(rng),
        "owner_id": ref(rng, world, "users"),
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "is_deleted": row.deleted,
        "visible_to": VISIBLE_TO[int(r() * 4)],
        "address": address(rng),
        "label_ids": [1 + int(r() * 4) for _ in range(int(r() * 2))],
        "website": maybe(rng, 0.3, f"https://org{row.id}.example.com"),
        "linkedin": maybe(rng, 0.6, f"https://www.linkedin.com/company/org{row.id}"),
        "industry": maybe(rng, 0.4, 1 + int(r() * 40)),
        "annual_revenue": maybe(rng, 0.5, int(r() * 10_000_000)),
        "employee_count": maybe(rng, 0.4, 1 + int(r() * 5000)),
        "next_activity_id": maybe(rng, 0.5, ref(rng, world, "activities")),
        "last_activity_id": maybe(rng, 0.5, ref(rng, world, "activities")),
        "smart_bcc_email": f"sandbox+org{row.id}@pipedrivemail.com",
    }
    record.update(
        _optional_counts(
            rng, tuple(n for n in PERSON_OPTIONAL_COUNTS if not n.startswith("participant"))
        )
    )
    return record


def activity(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    done = r() < 0.6
    type_name, type_key, _ = ACTIVITY_TYPES[int(r() * len(ACTIVITY_TYPES))]
    due = between(rng, row.add_ts, DATA_END)
    person_id = ref(rng, world, "persons")
    return {
        "id": row.id,
        "subject": f"{type_name}: {PHRASES[int(r() * len(PHRASES))]}",
        "type": type_key,
        "owner_id": ref(rng, world, "users"),
        "creator_user_id": ref(rng, world, "users"),
        "is_deleted": row.deleted,
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "deal_id": ref(rng, world, "deals"),
        "lead_id": uuid_from(rng),
        "person_id": person_id,
        "org_id": ref(rng, world, "organizations"),
        "project_id": 1 + int(r() * 20),
        "due_date": fmt_date(due),
        "due_time": f"{8 + int(r() * 10):02d}:{int(r() * 4) * 15:02d}",
        "duration": f"00:{15 * (1 + int(r() * 3)):02d}",
        "busy": r() < 0.5,
        "done": done,
        "marked_as_done_time": fmt(between(rng, row.add_ts, row.upd_ts)) if done else "",
        "location": address(rng),
        "participants": [{"person_id": person_id, "primary": True}],
        "attendees": [
            {
                "email": f"guest{int(r() * 1000)}@example.com",
                "name": "Guest Ünïcode",
                "status": "accepted",
                "is_organizer": False,
                "person_id": person_id,
                "user_id": ref(rng, world, "users"),
            }
        ]
        if r() < 0.5
        else [],
        "conference_meeting_client": "",
        "conference_meeting_url": "",
        "conference_meeting_id": "",
        "public_description": "",
        "priority": int(r() * 3),
        "note": PHRASES[int(r() * len(PHRASES))],
    }


PRODUCT_WORDS = (
    "Seat licence",
    "Support hours",
    "Widget",
    "Gadget Pro",
    "サブスクリプション",
    "Hébergement",
    "Onboarding pack 📦",
    "API calls (1k)",
)


def product(world: World, rng: random.Random, row: Row, fmt: Fmt) -> dict[str, Any]:
    r = rng.random
    price = round(r() * 2000, 2)
    return {
        "id": row.id,
        "name": f"{PRODUCT_WORDS[int(r() * len(PRODUCT_WORDS))]} #{row.id}",
        "code": f"SKU-{row.id:05d}",
        "unit": ("pcs", "h", "seat", "")[int(r() * 4)],
        "tax": round(r() * 25, 1),
        "is_deleted": row.deleted,
        "is_linkable": True,
        "visible_to": VISIBLE_TO[int(r() * 4)],
        "owner_id": ref(rng, world, "users"),
        "add_time": fmt(row.add_ts),
        "update_time": fmt(row.upd_ts),
        "description": PHRASES[int(r() * len(PHRASES))],
        "category": maybe(rng, 0.5, ("Software", "Services", "Hardware")[int(r() * 3)]),
        "billing_frequency": ("one-time", "monthly", "annually")[int(r() * 3)],
        "billing_frequency_cycles": maybe(rng, 0.7, 12),
        "prices": [
            {
                "product_id": row.id,
                "price": price,
                "currency": code,
                "cost": round(price * 0.6, 2),
                "direct_cost": maybe(rng, 0.5, round(price * 0.1, 2)),
                "notes": "",
            }
            for code in ("EUR", "USD")[: 1 + int(r() * 2)]
        ],
    }
