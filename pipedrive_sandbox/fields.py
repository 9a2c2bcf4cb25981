"""Field metadata (the ``*Fields`` endpoints) and custom field values in v2 and v1 shapes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pipedrive_sandbox.util import (
    CURRENCIES,
    DATA_START,
    TIMEZONES,
    address,
    fmt_date,
    fmt_v1,
    fmt_v2,
    hex_key,
)

CUSTOM_TYPES = (
    "varchar",
    "varchar_auto",
    "text",
    "phone",
    "double",
    "int",
    "monetary",
    "date",
    "daterange",
    "time",
    "timerange",
    "enum",
    "set",
    "address",
    "user",
    "org",
    "people",
)
# One custom field of every type on each entity that supports custom fields.
TYPE_LABELS = {
    "varchar": "Reference code",
    "varchar_auto": "Account manager (auto)",
    "text": "Internal notes",
    "phone": "Hotline",
    "double": "Win chance",
    "int": "Seats",
    "monetary": "Contract value",
    "date": "Renewal date",
    "daterange": "Contract period",
    "time": "Preferred call time",
    "timerange": "Office hours",
    "enum": "Priority",
    "set": "Interests",
    "address": "Billing address",
    "user": "Technical owner",
    "org": "Partner organization",
    "people": "Champion",
}
# Deals also get labels that collide after snake_case normalisation, one that shadows a
# built-in field, symbol-only labels that normalise to nothing, and enough extras for ~30.
DEAL_EXTRA_FIELDS = (
    ("Deal Score", "double"),
    ("deal-score", "int"),
    ("Title", "varchar"),
    ("???", "varchar"),
    ("🚀", "text"),
    ("Région", "enum"),
    ("顧客ランク", "varchar"),
    ("Discount %", "double"),
    ("NPS", "int"),
    ("Competitors", "set"),
    ("Signed on", "date"),
    ("Source system", "varchar_auto"),
    ("Budget (€)", "monetary"),
)
OPTION_LABELS = ("Low", "Medium", "High", "Hög", "高い", "🔥 Hot", "Très élevé", "")
OPTION_COLORS = ("green", "yellow", "red", "blue", None)
SUBFIELDS = {
    "monetary": (("value", "Amount", "double"), ("currency", "Currency", "varchar")),
    "daterange": (("value", "Start date", "date"), ("until", "End date", "date")),
    "timerange": (("value", "Start time", "time"), ("until", "End time", "time")),
    "address": tuple(
        (part, part.replace("_", " ").capitalize(), "varchar")
        for part in (
            "value",
            "route",
            "street_number",
            "subpremise",
            "locality",
            "sublocality",
            "admin_area_level_1",
            "admin_area_level_2",
            "country",
            "postal_code",
            "formatted_address",
        )
    ),
}
# Field sets: which entity's records carry which custom fields.
FIELD_SETS = ("deal", "person", "organization", "product", "activity", "project", "note", "lead")
CUSTOM_FIELD_SETS = ("deal", "person", "organization", "product", "project")


@dataclass
class FieldDef:
    code: str
    name: str
    field_type: str
    is_custom: bool
    v1_id: int
    order_nr: int
    add_ts: int
    update_ts: int
    optional: bool = False
    options: list[dict[str, Any]] | None = None
    missing_rate: float = 0.1
    null_rate: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- v2 ``*Fields`` item ---------------------------------------------------------------
    def v2_item(self) -> dict[str, Any]:
        subfields = SUBFIELDS.get(self.field_type)
        item: dict[str, Any] = {
            "field_name": self.name,
            "field_code": self.code,
            "description": self.extra.get("description", ""),
            "field_type": self.field_type,
            "options": (
                [
                    {
                        "id": opt["id"],
                        "label": opt["label"],
                        "color": opt.get("color"),
                        "update_time": fmt_v2(self.update_ts) if self.is_custom else None,
                        "add_time": fmt_v2(self.add_ts) if self.is_custom else None,
                    }
                    for opt in self.options
                ]
                if self.options is not None
                else None
            ),
            "subfields": (
                [
                    {"field_code": code, "field_name": label, "field_type": kind}
                    for code, label, kind in subfields
                ]
                if subfields and self.is_custom
                else None
            ),
            "is_custom_field": self.is_custom,
            "is_optional_response_field": self.optional,
            "ui_visibility": {
                "add_visible_flag": not self.optional,
                "details_visible_flag": True,
                "projects_detail_visible_flag": self.is_custom,
                "show_in_pipelines": {"show_in_all": True, "pipeline_ids": []},
            },
            "important_fields": {"enabled": False, "stage_ids": []},
            "required_fields": {"enabled": False, "stage_ids": [], "statuses": {}},
        }
        return item

    # ---- v1 ``*Fields`` item ---------------------------------------------------------------
    def v1_item(self, notes_style: bool = False) -> dict[str, Any]:
        options = (
            [{"id": opt["id"], "label": opt["label"]} for opt in self.options]
            if self.options is not None
            else None
        )
        if notes_style:
            return {
                "id": self.v1_id,
                "key": self.code,
                "name": self.name,
                "field_type": self.field_type,
                "active_flag": True,
                "edit_flag": self.is_custom,
                "bulk_edit_allowed": True,
                "mandatory_flag": False,
                "options": options or [],
            }
        subfields = SUBFIELDS.get(self.field_type) if self.is_custom else None
        return {
            "id": self.v1_id,
            "key": self.code,
            "name": self.name,
            "order_nr": self.order_nr,
            "field_type": self.field_type,
            "add_time": fmt_v1(self.add_ts),
            "update_time": fmt_v1(self.update_ts),
            "last_updated_by_user_id": 1 if self.is_custom else None,
            "created_by_user_id": 1 if self.is_custom else None,
            "active_flag": True,
            "edit_flag": self.is_custom,
            "index_visible_flag": True,
            "details_visible_flag": True,
            "add_visible_flag": True,
            "important_flag": False,
            "bulk_edit_allowed": True,
            "searchable_flag": self.field_type in ("varchar", "text", "phone"),
            "filtering_allowed": True,
            "sortable_flag": True,
            "mandatory_flag": False,
            "options": options,
            "options_deleted": list(self.extra.get("options_deleted", [])),
            "is_subfield": False,
            "subfields": (
                [
                    {"key": f"{self.code}_{code}", "name": label, "field_type": kind}
                    for code, label, kind in subfields
                    if code != "value"
                ]
                if subfields
                else []
            ),
        }


class FieldRegistry:
    """All field definitions, per field set, built deterministically from the seed."""

    def __init__(self, seed: int, builtins: dict[str, list[tuple[str, str, bool]]]) -> None:
        self.seed = seed
        self.sets: dict[str, list[FieldDef]] = {}
        self._next_v1_id = 1
        self._next_option_id = 100
        for set_name in FIELD_SETS:
            defs: list[FieldDef] = []
            for code, kind, optional in builtins.get(set_name, []):
                defs.append(self._new(set_name, code, _label_of(code), kind, False, optional))
            self.sets[set_name] = defs
        for set_name in CUSTOM_FIELD_SETS:
            for kind in CUSTOM_TYPES:
                self.add_custom(set_name, TYPE_LABELS[kind], kind, None)
        for label, kind in DEAL_EXTRA_FIELDS:
            self.add_custom("deal", label, kind, None)

    def _new(
        self, set_name: str, code: str, name: str, kind: str, custom: bool, optional: bool
    ) -> FieldDef:
        v1_id = self._next_v1_id
        self._next_v1_id += 1
        add_ts = DATA_START + (v1_id * 7919) % (86400 * 30)
        return FieldDef(
            code=code,
            name=name,
            field_type=kind,
            is_custom=custom,
            v1_id=v1_id,
            order_nr=len(self.sets.get(set_name, [])),
            add_ts=add_ts,
            update_ts=add_ts + 3600,
            optional=optional,
        )

    def add_custom(
        self, set_name: str, name: str, kind: str, options: list[str] | None
    ) -> FieldDef:
        if kind not in CUSTOM_TYPES:
            raise ValueError(f"field_type {kind!r} is not a custom field type ({CUSTOM_TYPES})")
        code = hex_key(self.seed, set_name, name, len(self.sets[set_name]))
        definition = self._new(set_name, code, name, kind, True, False)
        if kind in ("enum", "set"):
            labels = options or [OPTION_LABELS[i] or f"Option {i}" for i in range(5)]
            definition.options = [
                {
                    "id": self._next_option_id + index,
                    "label": label,
                    "color": OPTION_COLORS[index % len(OPTION_COLORS)],
                }
                for index, label in enumerate(labels)
            ]
            self._next_option_id += len(labels)
            if len(definition.options) > 2:
                # An option that was deleted later: old v1 values still point at it.
                gone = definition.options[-1]
                definition.extra["options_deleted"] = [{"id": gone["id"], "label": gone["label"]}]
        self.sets[set_name].append(definition)
        if set_name == "deal":
            # Leads have no field set of their own: they reuse the deal custom fields.
            self.sets["lead"].append(definition)
        return definition

    def custom(self, set_name: str) -> list[FieldDef]:
        return [f for f in self.sets[set_name] if f.is_custom]


def _label_of(code: str) -> str:
    return code.replace("_", " ").capitalize()


# ---- values --------------------------------------------------------------------------------


def v2_value(definition: FieldDef, rng: random.Random, refs: dict[str, int]) -> tuple[bool, Any]:
    """(present, value) of one custom field in the v2 ``custom_fields`` shape."""
    roll = rng.random()
    if roll < definition.missing_rate:
        return False, None
    if roll < definition.missing_rate + definition.null_rate:
        return True, None
    kind = definition.field_type
    r = rng.random
    if kind in ("varchar", "varchar_auto"):
        return True, ("REF-" + str(int(r() * 100000)), "Ünïcode ✓", "東京", "", "x" * 3)[
            int(r() * 5)
        ]
    if kind == "text":
        return True, ("Multi\nline text", "Emoji 🎉 ok", "Plain words", "")[int(r() * 4)]
    if kind == "phone":
        return True, f"+372 5{int(r() * 10_000_000):07d}"
    if kind == "double":
        return True, round(r() * 1000, 2)
    if kind == "int":
        return True, int(r() * 500) - 50
    if kind == "monetary":
        return True, {
            "value": round(r() * 100000, 2),
            "currency": CURRENCIES[int(r() * 3)][0],
        }
    if kind == "date":
        return True, fmt_date(DATA_START + int(r() * 3 * 365 * 86400))
    if kind == "daterange":
        start = DATA_START + int(r() * 3 * 365 * 86400)
        return True, {"value": fmt_date(start), "until": fmt_date(start + int(r() * 90) * 86400)}
    if kind in ("time", "timerange"):
        hour = 7 + int(r() * 10)
        tz_id, tz_name = TIMEZONES[int(r() * len(TIMEZONES))]
        result: dict[str, Any] = {"value": f"{hour:02d}:{int(r() * 4) * 15:02d}:00"}
        if kind == "timerange":
            result["until"] = f"{hour + 1:02d}:30:00"
        result["timezone_id"] = tz_id
        result["timezone_name"] = tz_name
        return True, result
    if kind == "enum":
        options = definition.options or []
        return True, options[int(r() * len(options))]["id"] if options else None
    if kind == "set":
        options = definition.options or []
        chosen = [opt["id"] for opt in options if r() < 0.4]
        return True, chosen
    if kind == "address":
        return True, address(rng, with_formatted=True)
    if kind == "user":
        return True, 1 + int(r() * refs.get("users", 1))
    if kind == "org":
        return True, 1 + int(r() * refs.get("organizations", 1))
    if kind == "people":
        return True, 1 + int(r() * refs.get("persons", 1))
    return True, None


def v1_flat(definition: FieldDef, value: Any) -> dict[str, Any]:
    """The v1 flat keys for a v2 custom field value (``<hash>``, ``<hash>_currency`` ...)."""
    code = definition.code
    kind = definition.field_type
    if value is None:
        flat: dict[str, Any] = {code: None}
        if kind == "monetary":
            flat[f"{code}_currency"] = None
        elif kind in ("daterange", "timerange"):
            flat[f"{code}_until"] = None
        return flat
    if kind == "monetary":
        return {code: value["value"], f"{code}_currency": value["currency"]}
    if kind == "daterange":
        return {code: value["value"], f"{code}_until": value["until"]}
    if kind == "time":
        return {code: value["value"], f"{code}_timezone_id": value["timezone_id"]}
    if kind == "timerange":
        return {
            code: value["value"],
            f"{code}_until": value["until"],
            f"{code}_timezone_id": value["timezone_id"],
        }
    if kind == "enum":
        return {code: str(value)}
    if kind == "set":
        return {code: ",".join(str(item) for item in value) if value else None}
    if kind == "address":
        flat = {code: value["value"]}
        for part, part_value in value.items():
            if part != "value":
                flat[f"{code}_{part}"] = part_value
        return flat
    return {code: value}


def builtin_type(name: str, schema: dict[str, Any]) -> str:
    """A plausible v2 field_type for a built-in field, from its name and schema type."""
    kind = schema.get("type")
    if name in ("owner_id", "user_id", "creator_user_id", "creator_id"):
        return "user"
    if name in ("person_id",):
        return "people"
    if name in ("org_id", "organization_id"):
        return "org"
    if name == "stage_id":
        return "stage"
    if name == "deal_id":
        return "deal"
    if name == "visible_to":
        return "visible_to"
    if name == "status":
        return "status"
    if name in ("label_ids", "label"):
        return "set"
    if name in ("address", "postal_address", "location"):
        return "address"
    if name in ("emails", "phones", "im"):
        return "phone" if name == "phones" else "varchar"
    if name == "value" and kind == "number":
        return "monetary"
    if schema.get("format") == "date" or name.endswith("_date") or name == "birthday":
        return "date"
    if name.endswith("_time"):
        return "date"
    if kind == "boolean":
        return "boolean"
    if kind == "integer":
        return "int"
    if kind == "number":
        return "double"
    if kind in ("array", "object"):
        return "json"
    if name in ("notes", "description", "note", "content"):
        return "text"
    return "varchar"
