"""The :class:`Sandbox`: a local, deterministic fake of the Pipedrive API (v1, v2, OAuth)."""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipedrive_sandbox.company import CompanyPreset, Plan, plan_named
from pipedrive_sandbox.data import FIELD_ENTITIES, Dataset, Table, World
from pipedrive_sandbox.faults import FaultRegistry
from pipedrive_sandbox.fields import v1_flat, v2_value
from pipedrive_sandbox.listing import Lister
from pipedrive_sandbox.oauth import OAuthState, _same
from pipedrive_sandbox.server import BurstLimiter, RequestRecord, SandboxServer
from pipedrive_sandbox.util import CLOCK_START, DEFAULT_COMPANY, FORMATTERS, Company, mix_seed

FIELD_KEYS = ("name", "field_type", "options")
# Entities Pipedrive merges -> the properties of other records that point at them.
MERGE_LINKS = {
    "persons": ("person_id",),
    "organizations": ("org_id", "organization_id"),
    "deals": ("deal_id",),
}
# Entity names accepted by add_custom_field -> field set.
FIELD_SET_OF = {
    "deals": "deal",
    "deal": "deal",
    "leads": "deal",
    "persons": "person",
    "person": "person",
    "organizations": "organization",
    "organization": "organization",
    "products": "product",
    "product": "product",
    "activities": "activity",
    "activity": "activity",
    "projects": "project",
    "project": "project",
}


class Sandbox:
    """A Pipedrive look-alike served on 127.0.0.1 (see ``pipedrive_sandbox/__init__.py``)."""

    def __init__(
        self,
        seed: int = 1,
        scale: float = 1.0,
        api_token: str = "sandbox-api-token",
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        access_token_ttl: float = 3600,
        rotate_refresh_tokens: bool = True,
        latency: float = 0.0,
        burst_limit: int | None = 80,
        burst_window: float = 2.0,
        daily_budget: int | None = None,
        port: int = 0,
        company: Company = DEFAULT_COMPANY,
        counts: Mapping[str, int] | None = None,
        plan: str | None = None,
        seats: int | None = None,
    ) -> None:
        """``counts`` sets some entities' record counts (instead of ``scale``); ``seats``
        makes that many active users (plus one deactivated). ``plan`` (see
        :data:`pipedrive_sandbox.company.PLANS`) sets the burst limits per token kind in
        place of ``burst_limit`` and, with ``seats``, the daily token budget unless
        ``daily_budget`` is given."""
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if burst_limit is not None and burst_limit < 1:
            raise ValueError(f"burst_limit must be >= 1 or None, got {burst_limit}")
        self.plan: Plan | None = plan_named(plan) if plan is not None else None
        self.plan_key = plan.lower() if plan is not None else None
        if daily_budget is None and self.plan is not None and seats is not None:
            daily_budget = self.plan.daily_budget(seats)
        self.seed = seed
        self.scale = scale
        self.counts = dict(counts or {})
        self.seats = seats
        self.latency = latency
        self.burst_limit = burst_limit
        self.daily_budget = daily_budget
        self.port = port
        self.company = company
        self.access_token_ttl = access_token_ttl
        self.burst_window = burst_window
        # The sandbox's own credentials, for tests that configure a client against it.
        self.api_token = api_token
        self.client_id = client_id
        self.client_secret = client_secret
        self._api_token = api_token
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._clock_offset = 0.0
        self._last_stamp = 0
        self.world = World(seed, scale, company, counts, seats)
        self.dataset = Dataset(self.world)
        self.lister = Lister(self.world)
        self.faults = FaultRegistry()
        self.limiter = BurstLimiter(
            burst_limit,
            burst_window,
            None
            if self.plan is None
            else {kind: self.plan.burst_limit(kind) for kind in ("api_token", "oauth")},
        )
        self.oauth = OAuthState(
            client_id,
            client_secret,
            api_token,
            access_token_ttl,
            rotate_refresh_tokens,
            self._clock,
            company.domain,
        )
        self.oauth.companies[company.domain] = self
        # Further companies behind this sandbox's OAuth server (see add_company).
        self.other_companies: list[Sandbox] = []
        self.requests: list[RequestRecord] = []
        self.token_calls: list[dict[str, Any]] = []
        self.tokens_spent = 0
        self._daily_spent = 0
        self._rate_limited = 0
        self._daily_budget_429s = 0
        self.day = 1
        self._server: SandboxServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_company(cls, preset: CompanyPreset, **kwargs: Any) -> Sandbox:
        """A sandbox shaped like ``preset`` (see :func:`pipedrive_sandbox.company.company_preset`);
        ``kwargs`` go to the constructor (``plan=None`` keeps the data and seats but drops
        the plan's limits and budget)."""
        arguments: dict[str, Any] = {
            "scale": preset.scale,
            "counts": preset.counts,
            "plan": preset.plan,
            "seats": preset.seats,
        }
        arguments.update(kwargs)
        return cls(**arguments)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        self._server = SandboxServer(self, self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="pipedrive-sandbox",
            daemon=True,
        )
        self._thread.start()
        for other in self.other_companies:
            other.start()
        return self

    def add_company(
        self,
        domain: str,
        *,
        name: str | None = None,
        company_id: int | None = None,
        seed: int | None = None,
    ) -> Sandbox:
        """Another company the same OAuth app can be authorized for.

        It has its own data (another seed, its own company id and name in the records
        that carry them), its own API server on another loopback port (its
        ``api_domain``) and its own API token, and it shares this sandbox's OAuth
        server and client: the consent page then asks which company to authorize,
        and each company's API accepts only its own access tokens.
        """
        if domain in self.oauth.companies:
            raise ValueError(f"the sandbox already has a company {domain!r}")
        number = len(self.other_companies) + 1
        company = Company(
            id=company_id if company_id is not None else self.company.id + number,
            name=name or f"{domain.replace('-', ' ').title()} Ltd",
            domain=domain,
        )
        other = Sandbox(
            seed=seed if seed is not None else mix_seed(self.seed, domain) % 1_000_000,
            scale=self.scale,
            api_token=f"{self._api_token}-{domain}",
            client_id=self.client_id,
            client_secret=self.client_secret,
            access_token_ttl=self.access_token_ttl,
            latency=self.latency,
            burst_limit=self.burst_limit,
            burst_window=self.burst_window,
            daily_budget=self.daily_budget,
            company=company,
            counts=self.counts,
            plan=self.plan_key,
            seats=self.seats,
        )
        # One OAuth server for every company: codes and tokens live here.
        other.oauth = self.oauth
        self.oauth.companies[domain] = other
        self.other_companies.append(other)
        if self._server is not None:
            other.start()
        return other

    def stop(self) -> None:
        for other in self.other_companies:
            other.stop()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_port}"

    # ---- clock -------------------------------------------------------------------------------
    def _clock(self) -> float:
        return CLOCK_START + (time.monotonic() - self._t0) + self._clock_offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(max(self._clock(), self._last_stamp), tz=UTC)

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward (OAuth code and access token expiry use it)."""
        self._clock_offset += seconds

    def _stamp(self) -> int:
        with self._lock:
            self._last_stamp = max(int(self._clock()), self._last_stamp + 1)
            return self._last_stamp

    # ---- auth, budget, logs (used by the HTTP handler) ----------------------------------------
    def check_api_token(self, token: str) -> bool:
        return _same(token, self._api_token)

    def issue_refresh_token(self) -> str:
        """A valid refresh token of this company."""
        return self.oauth.issue_refresh_token(self.company.domain)

    def expire_access_tokens(self) -> None:
        self.oauth.expire_access_tokens()

    def budget_allows(self, cost: int) -> bool:
        with self._lock:
            return self.daily_budget is None or self._daily_spent + cost <= self.daily_budget

    def charge(self, cost: int) -> None:
        with self._lock:
            self.tokens_spent += cost
            self._daily_spent += cost

    def reset_daily_budget(self) -> None:
        with self._lock:
            self._daily_spent = 0

    def new_day(self) -> dict[str, Any]:
        """Midnight in the company's time zone: the daily budget starts again, and the
        sandbox clock moves on a day (records changed from now on carry later times)."""
        with self._lock:
            self._daily_spent = 0
            self.day += 1
        self.advance_clock(86400)
        return {"day": self.day, "daily_budget": self.daily_budget, "now": self.now().isoformat()}

    def count_429(self, daily_budget: bool = False) -> None:
        with self._lock:
            self._rate_limited += 1
            if daily_budget:
                self._daily_budget_429s += 1

    def log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def log_token_call(self, grant_type: str, status: int, error: str | None) -> None:
        with self._lock:
            self.token_calls.append(
                {"grant_type": grant_type, "status": status, "error": error, "time": time.time()}
            )

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": len(self.requests),
                "tokens_spent": self.tokens_spent,
                "daily_tokens_spent": self._daily_spent,
                "daily_budget": self.daily_budget,
                "day": self.day,
                "rate_limited": self._rate_limited,
                "daily_budget_429s": self._daily_budget_429s,
                "plan": self.plan.name if self.plan is not None else None,
                "seats": self.seats,
                "token_calls": len(self.token_calls),
            }

    def expected_counts(self, streams: list[str] | None = None) -> dict[str, int]:
        """Per stream: how many records a full sync delivers (see the package docstring).

        ``streams`` restricts the answer to some streams, which is much cheaper at large
        scales (child streams are counted by building every parent's children)."""
        return self.world.expected_counts(streams)

    # ---- mutations -----------------------------------------------------------------------------
    def _table(self, entity: str) -> Table:
        table = self.world.tables.get(entity)
        if table is None:
            raise ValueError(
                f"entity {entity!r} cannot be mutated; choose one of {sorted(self.world.tables)}"
            )
        return table

    def _pos(self, table: Table, record_id: Any) -> int:
        pos = table.pos_of(record_id)
        if pos is None:
            raise KeyError(f"{table.entity.name} id {record_id!r} does not exist")
        return pos

    def _store(self, table: Table, pos: int, record: dict[str, Any], stamp: int) -> dict[str, Any]:
        entity = table.entity
        fmt = FORMATTERS[entity.time_style]
        for name in ("update_time", "modified"):  # users carry "modified" instead
            if name in record:
                record[name] = fmt(stamp)
                break
        table.upd_ts[pos] = stamp
        if entity.statuses and record.get("status") in entity.statuses:
            table.status[pos] = entity.statuses.index(record["status"])
        if entity.deleted_status is not None:
            deleted = table.status[pos] == entity.deleted_status
        else:
            deleted = bool(record.get("is_deleted")) or record.get("active_flag") is False
        table.deleted[pos] = 1 if deleted else 0
        if "is_deleted" in record:
            record["is_deleted"] = deleted
        table.archived[pos] = 1 if record.get("is_archived") else 0
        table.overrides[pos] = record
        table.cache.pop(pos, None)
        table.touch(pos)
        return copy.deepcopy(record)

    def update_record(self, entity: str, id: Any, **changes: Any) -> dict[str, Any]:
        """Apply ``changes``; update_time becomes :meth:`now` (later than any other)."""
        world = self.world
        with world.lock:
            table = self._table(entity)
            pos = self._pos(table, id)
            record = copy.deepcopy(table.record(pos))
            if table.entity.deleted_status is not None:
                deleted_name = table.entity.statuses[table.entity.deleted_status]
                if changes.get("is_deleted") is True:
                    changes.setdefault("status", deleted_name)
                elif changes.get("is_deleted") is False and record.get("status") == deleted_name:
                    changes.setdefault("status", "open")
            record.update(changes)
            return self._store(table, pos, record, self._stamp())

    def delete_record(self, entity: str, id: Any) -> dict[str, Any]:
        """Soft delete (``is_deleted`` / ``status=deleted`` for deals) with a new update_time."""
        table = self._table(entity)
        changes: dict[str, Any] = {"is_deleted": True}
        if table.entity.deleted_status is not None:
            changes["status"] = table.entity.statuses[table.entity.deleted_status]
        with self.world.lock:
            record = table.record(self._pos(table, id))
            if "active_flag" in record:
                changes["active_flag"] = False
            if "is_deleted" not in record:
                changes.pop("is_deleted")
                if "active_flag" not in record:
                    changes["is_deleted"] = True  # no flag of its own: hidden from lists
        return self.update_record(entity, id, **changes)

    def merge_records(self, entity: str, id: Any, into: Any) -> dict[str, Any]:
        """Merge record ``id`` into ``into`` (persons, organizations, deals), as Pipedrive does.

        The merged-away record vanishes from every list (deleted deals included) with its
        children; records that pointed at it point at ``into`` now, each with a new
        update_time, and ``into`` is updated. Returns the kept record.
        """
        links = MERGE_LINKS.get(entity)
        if links is None:
            raise ValueError(f"only {sorted(MERGE_LINKS)} can be merged, not {entity!r}")
        world = self.world
        with world.lock:
            table = self._table(entity)
            pos = self._pos(table, id)
            self._pos(table, into)
            if id == into:
                raise ValueError("a record cannot be merged into itself")
            table.gone.add(pos)
            table.deleted[pos] = 1
            table.touch(pos)
            for other in world.tables.values():
                for other_pos in range(len(other)):
                    if other is table and other_pos == pos:
                        continue
                    record = other.record(other_pos)
                    moved = {name: into for name in links if record.get(name) == id}
                    if moved and "id" in record:
                        self.update_record(other.entity.name, record["id"], **moved)
            return self.update_record(entity, into)

    def remove_child(self, entity: str, parent_id: Any, index: int = 0) -> dict[str, Any]:
        """Take one child row off a parent that stays (a follower, a participant, a deal
        product ...); the parent's update_time does not change. Returns the removed row."""
        world = self.world
        child = world.children.get(entity)
        if child is None:
            raise ValueError(
                f"{entity!r} is not a child entity; choose one of {sorted(world.children)}"
            )
        with world.lock:
            parent = child.parent_table()
            pos = self._pos(parent, parent_id)
            rows = list(child.rows_for_pos(pos))
            if not 0 <= index < len(rows):
                raise KeyError(f"{entity} of {parent_id!r} has no row {index}")
            removed = rows.pop(index)
            child.overrides[pos] = rows
            parent.version += 1  # the dataset of the children changed, the parent did not
            return copy.deepcopy(removed)

    def delete_field_option(
        self, field_set: str, field_code: str, option_id: int
    ) -> dict[str, Any]:
        """Delete one option of an enum or set custom field; v1 lists it under
        ``options_deleted`` from now on. Returns the field's v2 item."""
        world = self.world
        with world.lock:
            found = [f for f in world.fields.sets.get(field_set, []) if f.code == field_code]
            if not found or found[0].options is None:
                raise KeyError(f"{field_set} field {field_code!r} has no options")
            definition = found[0]
            options = definition.options or []
            kept = [option for option in options if option["id"] != option_id]
            if len(kept) == len(options):
                raise KeyError(f"{field_set} field {field_code!r} has no option {option_id}")
            gone = next(option for option in options if option["id"] == option_id)
            definition.options = kept
            definition.extra.setdefault("options_deleted", []).append(
                {"id": gone["id"], "label": gone["label"]}
            )
            definition.update_ts = self._stamp()
            return definition.v2_item()

    def add_record(self, entity: str, **fields: Any) -> dict[str, Any]:
        """Create a record (new id, add_time = update_time = now) from generated defaults."""
        world = self.world
        with world.lock:
            table = self._table(entity)
            stamp = self._stamp()
            rng = random.Random(mix_seed(self.seed, entity, "added", len(table)))
            pos = table._append_index(table._new_id(rng, len(table)), stamp, stamp, 0, False, False)
            record = table.build(pos)
            record.update(fields)
            fmt = FORMATTERS[table.entity.time_style]
            if "add_time" in record:
                record["add_time"] = fmt(stamp)
            if "id" in record or table.int_ids:
                record["id"] = table.ids[pos]
            return self._store(table, pos, record, stamp)

    def add_custom_field(
        self, entity: str, name: str, field_type: str, options: list[str] | None = None
    ) -> dict[str, Any]:
        """A new custom field on the entity's ``*Fields`` plus values on its records."""
        set_name = FIELD_SET_OF.get(entity)
        if set_name is None:
            raise ValueError(
                f"entity {entity!r} has no custom fields; choose one of {sorted(FIELD_SET_OF)}"
            )
        world = self.world
        with world.lock:
            definition = world.fields.add_custom(set_name, name, field_type, options)
            for table in world.tables.values():
                flat = table.entity.flat_field_set == set_name
                if table.entity.field_set != set_name and not flat:
                    continue
                for pos, record in table.overrides.items():
                    rng = random.Random(mix_seed(self.seed, definition.code, pos))
                    present, value = v2_value(definition, rng, world.refs)
                    if not present:
                        continue
                    if flat:
                        record.update(v1_flat(definition, value))
                    else:
                        record.setdefault("custom_fields", {})[definition.code] = value
                table.forget_all()
            return definition.v2_item()

    # ---- control plane (HTTP /_sandbox/*) --------------------------------------------------------
    def control(
        self, method: str, name: str, payload: dict[str, Any], query: dict[str, str]
    ) -> Any:
        if method == "GET" and name == "counts":
            streams = query.get("streams")
            return self.expected_counts(streams.split(",") if streams else None)
        if method == "GET" and name.startswith("dataset/"):
            entity = name[len("dataset/") :]
            if entity not in self.world.entity_names():
                raise KeyError(entity)
            return self.dataset[entity]
        if method == "GET" and name == "requests":
            return [record.to_dict() for record in list(self.requests)]
        if method == "DELETE" and name == "requests":
            self.clear_requests()
            return {"cleared": True}
        if method == "GET" and name == "stats":
            return self.stats()
        if method == "GET" and name == "faults":
            return self.faults.active()
        if method == "POST" and name == "faults":
            params = dict(payload)
            kind = params.pop("kind", None)
            if not kind:
                raise ValueError("fault needs a 'kind'")
            self.faults.add(kind, **params)
            return {"added": kind}
        if method == "POST" and name == "faults/random_mix":
            self.faults.random_mix(int(payload.get("seed", 0)), float(payload.get("rate", 0.1)))
            return {"added": "random_mix"}
        if method == "DELETE" and name == "faults":
            self.faults.clear()
            return {"cleared": True}
        if method == "POST" and name == "mutate":
            return self._mutate(payload)
        if method == "POST" and name == "clock":
            self.advance_clock(float(payload.get("advance", 0)))
            return {"now": self.now().isoformat()}
        if method == "POST" and name == "expire_tokens":
            self.expire_access_tokens()
            return {"expired": True}
        if method == "POST" and name == "reset_daily_budget":
            self.reset_daily_budget()
            return {"reset": True}
        if method == "POST" and name == "new_day":
            return self.new_day()
        if method == "POST" and name == "refresh_token":
            return {"refresh_token": self.issue_refresh_token()}
        raise KeyError(f"{method} /_sandbox/{name}")

    def _mutate(self, payload: dict[str, Any]) -> Any:
        action = payload.get("action")
        entity = payload.get("entity", "")
        changes = payload.get("changes") or {}
        if action == "update":
            return self.update_record(entity, payload.get("id"), **changes)
        if action == "delete":
            return self.delete_record(entity, payload.get("id"))
        if action == "add":
            return self.add_record(entity, **changes)
        if action == "merge":
            return self.merge_records(entity, payload.get("id"), payload.get("into"))
        if action == "remove_child":
            return self.remove_child(entity, payload.get("parent_id"), int(payload.get("index", 0)))
        if action == "add_custom_field":
            spec = {**changes, **{k: v for k, v in payload.items() if k in FIELD_KEYS}}
            return self.add_custom_field(
                entity, spec.get("name", ""), spec.get("field_type", ""), spec.get("options")
            )
        raise ValueError(
            f"unknown mutate action {action!r} "
            "(update, delete, add, merge, remove_child, add_custom_field)"
        )


__all__ = ["FIELD_ENTITIES", "Sandbox"]
