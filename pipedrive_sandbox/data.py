"""The sandbox's data: deterministic, lazily built records for every served entity.

Each top-level entity is a :class:`Table`.  At start-up only a compact index is generated
(ids, add/update timestamps, status and deleted/archived flags in ``array``/``bytearray``
columns), which is all that filtering, sorting and counting need.  Full records are built on
demand from a per-record RNG, so a million deals cost tens of megabytes, not gigabytes.
Mutated or added records are kept in ``overrides``.

Child entities (followers, flows, deal products ...) hang off a parent record and are built
per parent on demand (:class:`ChildTable`).  Field metadata comes from :mod:`fields`.
"""

from __future__ import annotations

import json
import random
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipedrive_sandbox import builders, secondary
from pipedrive_sandbox.fields import FieldDef, FieldRegistry, builtin_type, v1_flat, v2_value
from pipedrive_sandbox.util import (
    DATA_END,
    DATA_START,
    DEFAULT_COMPANY,
    FORMATTERS,
    Company,
    mix_seed,
    uuid_from,
)

SHAPES: dict[str, Any] = json.loads(
    Path(__file__).with_name("shapes.json").read_text(encoding="utf-8")
)
# Records of tables up to this size are memoised once built; bigger tables build on demand.
CACHE_LIMIT = 60_000
# The default world's one deactivated user (the eighth of twelve).
DEFAULT_INACTIVE_USER_POS = 7
CUSTOM_POOL_SIZE = 256


@dataclass(frozen=True)
class EntityDef:
    """How one top-level entity is generated."""

    name: str
    shape_key: str  # endpoint whose item schema the records follow
    base_count: int
    build: Callable[..., dict[str, Any]]
    scaled: bool = False
    id_kind: str = "int"  # "int" | "uuid" | "hex"
    time_style: str = "v2"  # see util.FORMATTERS
    statuses: tuple[str, ...] = ()
    status_weights: tuple[float, ...] = ()
    deleted_rate: float = 0.0
    archived_rate: float = 0.0
    deleted_status: int | None = None  # status index that means "deleted" (deals, projects)
    field_set: str | None = None  # custom fields under ``custom_fields`` (v2)
    flat_field_set: str | None = None  # custom fields flat on the record (v1 leads)
    counted: str = "not_deleted"  # which records a full sync delivers: "all" | "not_deleted"
    time_span: tuple[int, int] = (DATA_START, DATA_END)


@dataclass(frozen=True)
class ChildDef:
    """Records that only exist below a parent record (``/deals/{id}/followers`` ...)."""

    name: str
    parent: str
    shape_key: str
    build: Callable[..., list[dict[str, Any]]]
    parent_key: str | None = None  # parent id field added to dataset rows only


@dataclass
class Row:
    """Index data of one record, enough to build it."""

    pos: int
    id: Any
    add_ts: int
    upd_ts: int
    status: int
    deleted: bool
    archived: bool


def _weighted(rng: random.Random, weights: tuple[float, ...]) -> int:
    roll = rng.random()
    total = 0.0
    for index, weight in enumerate(weights):
        total += weight
        if roll < total:
            return index
    return len(weights) - 1


class Table:
    """One top-level entity: compact index columns plus lazily built records."""

    def __init__(self, world: World, entity: EntityDef, count: int) -> None:
        self.world = world
        self.entity = entity
        self.salt = mix_seed(world.seed, entity.name)
        self.int_ids = entity.id_kind == "int"
        self.ids: Any = array("q") if self.int_ids else []
        self.id_to_pos: dict[Any, int] = {}
        self.add_ts = array("q")
        self.upd_ts = array("q")
        self.status = bytearray()
        self.deleted = bytearray()
        self.archived = bytearray()
        self.overrides: dict[int, dict[str, Any]] = {}
        self.cache: dict[int, dict[str, Any]] = {}
        self.fragments: dict[int, dict[Any, bytes]] = {}
        # Positions of merged-away records: gone from every list, deleted ones included.
        self.gone: set[int] = set()
        self.version = 0
        self._generate(count)
        self.cache_enabled = count <= CACHE_LIMIT

    # ---- index ----------------------------------------------------------------------------
    def _generate(self, count: int) -> None:
        entity = self.entity
        rng = random.Random(self.salt)
        start, end = entity.time_span
        span = end - start
        # A few "bulk edit" instants shared by many records, so that paging on update_time
        # meets long runs of equal timestamps (boundary de-duplication matters).
        pool = sorted(start + int(rng.random() * span) for _ in range(24))
        r = rng.random
        for pos in range(count):
            add = start + int(r() * span * 0.9)
            if r() < 0.3:
                shared = pool[int(r() * len(pool))]
                upd = shared if shared >= add else add + int(r() * (end - add))
            else:
                upd = add + int(r() * (end - add))
            status = _weighted(rng, entity.status_weights) if entity.status_weights else 0
            deleted = r() < entity.deleted_rate
            if entity.deleted_status is not None:
                if deleted:
                    status = entity.deleted_status
                deleted = status == entity.deleted_status
            archived = (not deleted) and r() < entity.archived_rate
            self._append_index(self._new_id(rng, pos), add, upd, status, deleted, archived)

    def _new_id(self, rng: random.Random, pos: int) -> Any:
        if self.int_ids:
            return pos + 1
        if self.entity.id_kind == "uuid":
            return uuid_from(rng)
        return f"{rng.getrandbits(64):016x}"

    def _append_index(
        self, record_id: Any, add: int, upd: int, status: int, deleted: bool, archived: bool
    ) -> int:
        pos = len(self.add_ts)
        self.ids.append(record_id)
        if not self.int_ids or record_id != pos + 1:
            self.id_to_pos[record_id] = pos
        self.add_ts.append(add)
        self.upd_ts.append(upd)
        self.status.append(status)
        self.deleted.append(1 if deleted else 0)
        self.archived.append(1 if archived else 0)
        return pos

    def __len__(self) -> int:
        return len(self.add_ts)

    def pos_of(self, record_id: Any) -> int | None:
        if self.int_ids:
            try:
                number = int(record_id)
            except (TypeError, ValueError):
                return None
            if 1 <= number <= len(self) and self.ids[number - 1] == number:
                return number - 1
            return self.id_to_pos.get(number)
        return self.id_to_pos.get(str(record_id))

    def row(self, pos: int) -> Row:
        return Row(
            pos,
            self.ids[pos],
            self.add_ts[pos],
            self.upd_ts[pos],
            self.status[pos],
            bool(self.deleted[pos]),
            bool(self.archived[pos]),
        )

    def counted(self) -> int:
        if self.entity.counted == "not_deleted":
            return len(self) - sum(self.deleted)
        return len(self) - len(self.gone)

    # ---- records --------------------------------------------------------------------------
    def record(self, pos: int) -> dict[str, Any]:
        found = self.overrides.get(pos)
        if found is not None:
            return found
        found = self.cache.get(pos)
        if found is not None:
            return found
        built = self.build(pos)
        if self.cache_enabled:
            self.cache[pos] = built
        return built

    def build(self, pos: int) -> dict[str, Any]:
        entity = self.entity
        world = self.world
        rng = random.Random(self.salt ^ (pos * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF))
        row = self.row(pos)
        fmt = FORMATTERS[entity.time_style]
        record = entity.build(world, rng, row, fmt)
        plan = world.plans[entity.shape_key]
        for name, filler in plan.fillers:
            if name not in record:
                record[name] = filler(rng, world)
        if entity.field_set is not None:
            pool = world.custom_value_pool(entity.field_set)
            # Shared, read-only dict: records of one world draw from a pool of value sets.
            # A field set without custom fields (activities until a test adds one) adds nothing.
            if pool:
                record["custom_fields"] = pool[int(rng.random() * len(pool))][0]
        if entity.flat_field_set is not None:
            pool = world.custom_value_pool(entity.flat_field_set)
            record.update(pool[int(rng.random() * len(pool))][1])
        for count_field, child in CHILD_COUNTS.get(entity.name, ()):
            # As in Pipedrive, a count on the parent's row matches the child list it counts.
            record[count_field] = len(world.children[child].rows_for_pos(pos))
        ordered = {name: record.pop(name) for name in plan.order if name in record}
        ordered.update(record)
        return ordered

    def records(self) -> Iterator[dict[str, Any]]:
        for pos in range(len(self)):
            yield self.record(pos)

    def touch(self, pos: int) -> None:
        """Forget cached renderings of one record after it changed."""
        self.fragments.pop(pos, None)
        self.version += 1

    def forget_all(self) -> None:
        self.cache.clear()
        self.fragments.clear()
        self.version += 1


class ChildTable:
    """Records below a parent record, built per parent on demand (deterministic)."""

    def __init__(self, world: World, child: ChildDef) -> None:
        self.world = world
        self.child = child
        self.salt = mix_seed(world.seed, child.name)
        self.cache: dict[Any, list[dict[str, Any]]] = {}
        # Children removed from a parent that stays: parent position -> remaining rows.
        self.overrides: dict[int, list[dict[str, Any]]] = {}

    def parent_table(self) -> Table:
        return self.world.tables[self.child.parent]

    def rows_for_pos(self, parent_pos: int) -> list[dict[str, Any]]:
        parent = self.parent_table()
        if parent.deleted[parent_pos]:
            return []  # children of deleted records are gone with them
        found = self.overrides.get(parent_pos)
        if found is not None:
            return found
        found = self.cache.get(parent_pos)
        if found is not None:
            return found
        rng = random.Random(self.salt ^ (parent_pos * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF))
        rows = self.child.build(self.world, rng, parent.row(parent_pos), parent)
        plan = self.world.plans[self.child.shape_key]
        for index, row in enumerate(rows):
            for name, filler in plan.fillers:
                if name not in row:
                    row[name] = filler(rng, self.world)
            ordered = {name: row.pop(name) for name in plan.order if name in row}
            ordered.update(row)
            rows[index] = ordered
        if parent.cache_enabled:
            self.cache[parent_pos] = rows
        return rows

    def dataset(self) -> list[dict[str, Any]]:
        parent = self.parent_table()
        key = self.child.parent_key
        result: list[dict[str, Any]] = []
        for pos in range(len(parent)):
            for row in self.rows_for_pos(pos):
                if key is not None and key not in row:
                    result.append({key: parent.ids[pos], **row})
                else:
                    result.append(row)
        return result

    def count(self) -> int:
        parent = self.parent_table()
        return sum(len(self.rows_for_pos(pos)) for pos in range(len(parent)))


class World:
    """Everything the sandbox serves, built from (seed, scale)."""

    def __init__(
        self,
        seed: int,
        scale: float,
        company: Company = DEFAULT_COMPANY,
        counts: Mapping[str, int] | None = None,
        seats: int | None = None,
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.company = company
        counts = dict(counts or {})
        unknown = set(counts) - {entity.name for entity in ENTITIES}
        if unknown:
            raise ValueError(f"counts name unknown entities: {', '.join(sorted(unknown))}")
        # Seats are the active users: ``seats`` of them, then one deactivated user. Without
        # seats, the default world's 12 users, the eighth of them deactivated.
        if seats is not None:
            if seats < 1:
                raise ValueError(f"seats must be >= 1, got {seats}")
            counts["users"] = seats + 1
        self.inactive_user_pos = seats if seats is not None else DEFAULT_INACTIVE_USER_POS
        self.lock = threading.RLock()
        self.plans: dict[str, builders.Plan] = {}
        for key, shape in SHAPES.items():
            style = "v1" if key.startswith("v1") else "v2"
            self.plans[key] = builders.compile_plan(shape["item"], style)
        self.fields = FieldRegistry(seed, builtin_field_sets())
        self.refs: dict[str, int] = {}
        for entity in ENTITIES:
            self.refs[entity.name] = counts.get(entity.name, _count_for(entity, scale))
        self.tables = Tables(self)
        self.children: dict[str, ChildTable] = {
            child.name: ChildTable(self, child) for child in CHILDREN
        }
        self._pools: dict[str, tuple[int, list[tuple[dict[str, Any], dict[str, Any]]]]] = {}

    def custom_value_pool(self, set_name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Custom field value sets (v2 ``custom_fields`` dict, v1 flat keys) for records.

        Building 30 values per record dominated record cost, so each record picks one of
        ``CUSTOM_POOL_SIZE`` deterministic sets.  A set's values never change when a field is
        added later: each set draws from its own RNG, field after field.  Empty while the
        field set has no custom fields."""
        definitions = self.fields.custom(set_name)
        if not definitions:
            return []
        found = self._pools.get(set_name)
        if found is not None and found[0] == len(definitions):
            return found[1]
        pool = []
        for index in range(CUSTOM_POOL_SIZE):
            rng = random.Random(mix_seed(self.seed, set_name, "values", index))
            values: dict[str, Any] = {}
            flat: dict[str, Any] = {}
            for definition in definitions:
                present, value = v2_value(definition, rng, self.refs)
                if present:
                    values[definition.code] = value
                    flat.update(v1_flat(definition, value))
            pool.append((values, flat))
        self._pools[set_name] = (len(definitions), pool)
        return pool

    # ---- field metadata -------------------------------------------------------------------
    def field_records(self, entity: str, style: str | None = None) -> list[dict[str, Any]] | None:
        """The ``*Fields`` items of a field entity, in its own item style or in ``style``
        ("v1"/"v2") for a field set that both API versions list (``/activityFields``)."""
        spec = FIELD_ENTITIES.get(entity)
        if spec is None:
            return None
        set_name, own_style = spec
        style = style or own_style
        defs = self.fields.sets[set_name]
        if style == "v2":
            return [definition.v2_item() for definition in defs]
        return [definition.v1_item(notes_style=(set_name == "note")) for definition in defs]

    # ---- generic access --------------------------------------------------------------------
    def entity_names(self) -> list[str]:
        return [*self.tables, *self.children, *FIELD_ENTITIES]

    def dataset(self, entity: str) -> list[dict[str, Any]]:
        with self.lock:
            if entity in self.tables:
                return list(self.tables[entity].records())
            if entity in self.children:
                return self.children[entity].dataset()
            fields = self.field_records(entity)
            if fields is not None:
                return fields
        raise KeyError(entity)

    def expected_counts(self, streams: Iterable[str] | None = None) -> dict[str, int]:
        """Records a full sync delivers per stream; pass ``streams`` to count only those
        (child streams cost one build per parent record, which matters at large scales)."""
        wanted = set(streams) if streams is not None else None
        unknown = (wanted or set()) - {*self.entity_names(), CUSTOM_FIELDS_STREAM}
        if unknown:
            raise KeyError(", ".join(sorted(unknown)))
        counts: dict[str, int] = {}
        with self.lock:
            for name in self.entity_names():
                if wanted is not None and name not in wanted:
                    continue
                if name in self.tables:
                    counts[name] = self.tables[name].counted()
                elif name in self.children:
                    counts[name] = self.children[name].count()
                else:
                    counts[name] = len(self.field_records(name) or [])
            if wanted is None or CUSTOM_FIELDS_STREAM in wanted:
                # One row per custom field of every field set (leads repeat the deal ones).
                counts[CUSTOM_FIELDS_STREAM] = sum(
                    len(self.fields.custom(set_name)) for set_name, _ in FIELD_ENTITIES.values()
                )
        return counts


class Tables(Mapping[str, Table]):
    """The world's tables, each generated on first use: a benchmark that only reads deals
    at a million-deal scale does not pay for a million-row index of every other entity."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._defs = {entity.name: entity for entity in ENTITIES}
        self._built: dict[str, Table] = {}
        self._lock = threading.RLock()

    def __getitem__(self, name: str) -> Table:
        table = self._built.get(name)
        if table is not None:
            return table
        entity = self._defs[name]  # KeyError for unknown names, as a dict would
        with self._lock:
            table = self._built.get(name)
            if table is None:
                table = Table(self._world, entity, self._world.refs[name])
                self._built[name] = table
            return table

    def __contains__(self, name: object) -> bool:
        return name in self._defs

    def __iter__(self) -> Iterator[str]:
        return iter(self._defs)

    def __len__(self) -> int:
        return len(self._defs)


class Dataset(Mapping[str, list[dict[str, Any]]]):
    """``sb.dataset``: entity name -> canonical records (rebuilt while the entity changes)."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._memo: dict[str, tuple[Any, list[dict[str, Any]]]] = {}

    def _version(self, entity: str) -> Any:
        world = self._world
        if entity in world.tables:
            return world.tables[entity].version
        if entity in world.children:
            return world.tables[world.children[entity].child.parent].version
        return tuple(len(defs) for defs in world.fields.sets.values())

    def __getitem__(self, entity: str) -> list[dict[str, Any]]:
        if entity not in self._world.entity_names():
            raise KeyError(entity)
        version = self._version(entity)
        memo = self._memo.get(entity)
        if memo is None or memo[0] != version:
            memo = (version, self._world.dataset(entity))
            self._memo[entity] = memo
        return memo[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._world.entity_names())

    def __len__(self) -> int:
        return len(self._world.entity_names())


def _count_for(entity: EntityDef, scale: float) -> int:
    if entity.scaled:
        return max(1, round(entity.base_count * scale))
    return entity.base_count


# ---- registries -----------------------------------------------------------------------------

ENTITIES: tuple[EntityDef, ...] = (
    EntityDef("users", "v1 /users", 12, builders.user, time_style="v1"),
    EntityDef("currencies", "v1 /currencies", 6, builders.currency, time_style="v1"),
    EntityDef("activity_types", "v1 /activityTypes", 8, builders.activity_type, time_style="v1"),
    EntityDef("pipelines", "v2 /pipelines", 3, builders.pipeline),
    EntityDef("stages", "v2 /stages", 15, builders.stage),
    EntityDef(
        "deals",
        "v2 /deals",
        2000,
        builders.deal,
        scaled=True,
        statuses=("open", "won", "lost", "deleted"),
        status_weights=(0.55, 0.22, 0.18, 0.05),
        deleted_status=3,
        archived_rate=0.05,
        field_set="deal",
        counted="all",
    ),
    EntityDef(
        "persons",
        "v2 /persons",
        1500,
        builders.person,
        scaled=True,
        deleted_rate=0.02,
        field_set="person",
    ),
    EntityDef(
        "organizations",
        "v2 /organizations",
        600,
        builders.organization,
        scaled=True,
        deleted_rate=0.02,
        field_set="organization",
    ),
    EntityDef(
        "activities",
        "v2 /activities",
        3000,
        builders.activity,
        scaled=True,
        deleted_rate=0.02,
        # No custom fields unless a test adds some (sb.add_custom_field("activities", ...)):
        # the v2 /activities item schema lists none, so the default world keeps it that way.
        field_set="activity",
    ),
    EntityDef(
        "products",
        "v2 /products",
        300,
        builders.product,
        scaled=True,
        deleted_rate=0.03,
        field_set="product",
    ),
    EntityDef("boards", "v2 /boards", 3, secondary.board),
    EntityDef("phases", "v2 /phases", 12, secondary.phase),
    EntityDef(
        "projects",
        "v2 /projects",
        60,
        secondary.project,
        scaled=True,
        statuses=("open", "completed", "canceled", "deleted"),
        status_weights=(0.6, 0.25, 0.1, 0.05),
        deleted_status=3,
        archived_rate=0.1,
        field_set="project",
        # Listed with status=...,deleted, as the tap asks for them (like deals).
        counted="all",
    ),
    EntityDef("tasks", "v2 /tasks", 200, secondary.task, scaled=True),
    EntityDef("project_templates", "v2 /projectTemplates", 3, secondary.project_template),
    EntityDef(
        "lead_labels", "v1 /leadLabels", 5, secondary.lead_label, id_kind="uuid", time_style="iso"
    ),
    EntityDef("lead_sources", "v1 /leadSources", 4, secondary.lead_source),
    EntityDef(
        "leads",
        "v1 /leads",
        500,
        secondary.lead,
        scaled=True,
        id_kind="uuid",
        time_style="iso",
        archived_rate=0.12,
        flat_field_set="deal",
    ),
    EntityDef("notes", "v1 /notes", 1500, secondary.note, scaled=True, time_style="v1"),
    EntityDef("files", "v1 /files", 300, secondary.file_record, scaled=True, time_style="v1"),
    EntityDef(
        "call_logs",
        "v1 /callLogs",
        200,
        secondary.call_log,
        scaled=True,
        id_kind="hex",
        time_style="iso",
    ),
    EntityDef(
        "mail_threads",
        "v1 /mailbox/mailThreads",
        400,
        secondary.mail_thread,
        scaled=True,
        time_style="iso",
    ),
    EntityDef("filters", "v1 /filters", 10, secondary.filter_record, time_style="v1"),
    EntityDef("goals", "v1 /goals/find", 5, secondary.goal, id_kind="hex"),
    EntityDef("roles", "v1 /roles", 4, secondary.role, time_style="v1"),
    EntityDef("permission_sets", "v1 /permissionSets", 4, secondary.permission_set, id_kind="uuid"),
    EntityDef("webhooks", "v1 /webhooks", 3, secondary.webhook, time_style="iso"),
    EntityDef(
        "organization_relationships",
        "v1 /organizationRelationships",
        30,
        secondary.organization_relationship,
        scaled=True,
        time_style="v1",
    ),
)
CHILDREN: tuple[ChildDef, ...] = (
    ChildDef(
        "note_comments", "notes", "v1 /notes/{id}/comments", secondary.note_comments, "note_id"
    ),
    ChildDef(
        "mail_messages",
        "mail_threads",
        "v1 /mailbox/mailThreads/{id}/mailMessages",
        secondary.mail_messages,
    ),
    ChildDef("role_assignments", "roles", "v1 /roles/{id}/assignments", secondary.role_assignments),
    ChildDef(
        "permission_set_assignments",
        "permission_sets",
        "v1 /permissionSets/{id}/assignments",
        secondary.permission_set_assignments,
    ),
    ChildDef("deal_flow", "deals", "v1 /deals/{id}/flow", secondary.flow, "deal_id"),
    ChildDef("deal_changelog", "deals", "v1 /deals/{id}/changelog", secondary.changelog, "deal_id"),
    ChildDef(
        "deal_participants",
        "deals",
        "v1 /deals/{id}/participants",
        secondary.deal_participants,
        "deal_id",
    ),
    ChildDef("person_flow", "persons", "v1 /persons/{id}/flow", secondary.flow, "person_id"),
    ChildDef(
        "person_changelog",
        "persons",
        "v1 /persons/{id}/changelog",
        secondary.changelog,
        "person_id",
    ),
    ChildDef(
        "organization_changelog",
        "organizations",
        "v1 /organizations/{id}/changelog",
        secondary.changelog,
        "org_id",
    ),
    ChildDef(
        "organization_flow",
        "organizations",
        "v1 /organizations/{id}/flow",
        secondary.flow,
        "org_id",
    ),
    ChildDef("deal_products", "deals", "v2 /deals/products", secondary.deal_products),
    ChildDef("deal_installments", "deals", "v2 /deals/installments", secondary.deal_installments),
    ChildDef("deal_followers", "deals", "v2 /deals/{id}/followers", secondary.followers, "deal_id"),
    ChildDef(
        "person_followers",
        "persons",
        "v2 /persons/{id}/followers",
        secondary.followers,
        "person_id",
    ),
    ChildDef(
        "organization_followers",
        "organizations",
        "v2 /organizations/{id}/followers",
        secondary.followers,
        "org_id",
    ),
    ChildDef(
        "product_followers",
        "products",
        "v2 /products/{id}/followers",
        secondary.followers,
        "product_id",
    ),
    ChildDef(
        "product_variations",
        "products",
        "v2 /products/{id}/variations",
        secondary.product_variations,
    ),
)
# Parent entity -> (its ``*_count`` field, the child list that field counts).
CHILD_COUNTS: dict[str, tuple[tuple[str, str], ...]] = {
    "deals": (
        ("followers_count", "deal_followers"),
        ("participants_count", "deal_participants"),
        ("products_count", "deal_products"),
    ),
    "persons": (("followers_count", "person_followers"),),
    "organizations": (("followers_count", "organization_followers"),),
}
# The tap's field metadata stream: no API entity, counted from the field sets.
CUSTOM_FIELDS_STREAM = "custom_fields"
# entity name -> (field set, item style)
FIELD_ENTITIES: dict[str, tuple[str, str]] = {
    "deal_fields": ("deal", "v2"),
    "person_fields": ("person", "v2"),
    "organization_fields": ("organization", "v2"),
    "product_fields": ("product", "v2"),
    "activity_fields": ("activity", "v2"),
    "project_fields": ("project", "v2"),
    "note_fields": ("note", "v1"),
    "lead_fields": ("lead", "v1"),
}
# Built-in fields listed by the ``*Fields`` endpoints: the item schema's properties, plus the
# optional ``include_fields`` ones flagged ``is_optional_response_field``.
FIELD_SET_SHAPES = {
    "deal": "v2 /deals",
    "person": "v2 /persons",
    "organization": "v2 /organizations",
    "product": "v2 /products",
    "activity": "v2 /activities",
    "project": "v2 /projects",
    "note": "v1 /notes",
    "lead": "v1 /leads",
}
NOTE_FIELD_NAMES = (
    "content",
    "deal_id",
    "lead_id",
    "org_id",
    "person_id",
    "project_id",
    "user_id",
    "add_time",
    "update_time",
    "pinned_to_deal_flag",
)


def optional_fields(shape_key: str) -> tuple[str, ...]:
    """The ``include_fields`` values of an endpoint (comma-joined combinations split)."""
    params = SHAPES.get(shape_key, {}).get("params", {})
    values: list[str] = []
    for combo in params.get("include_fields", {}).get("enum", []):
        for value in str(combo).split(","):
            if value and value not in values:
                values.append(value)
    return tuple(values)


def builtin_field_sets() -> dict[str, list[tuple[str, str, bool]]]:
    result: dict[str, list[tuple[str, str, bool]]] = {}
    for set_name, shape_key in FIELD_SET_SHAPES.items():
        properties = SHAPES.get(shape_key, {}).get("item", {}).get("properties", {})
        optional = optional_fields(shape_key)
        entries: list[tuple[str, str, bool]] = []
        for name, schema in properties.items():
            if name == "custom_fields":
                continue
            if set_name == "note" and name not in NOTE_FIELD_NAMES:
                continue
            entries.append((name, builtin_type(name, schema), name in optional))
        for name in optional:
            if name not in properties:
                kind = "int" if name.endswith(("_count", "_id")) else "varchar"
                entries.append((name, kind, True))
        result[set_name] = entries
    return result


def fields_of(record_fields: list[FieldDef]) -> list[str]:
    return [definition.code for definition in record_fields]
