"""Deletes and merges: full reads closed by ``ACTIVATE_VERSION``.

Pipedrive cannot list most deleted records (persons, organizations, activities, products,
notes, leads, files ...), nor merged-away ones, nor a follower, participant or product taken
off its parent. What it can do is list everything that still exists. A full read of a stream
whose records all carry one table version, closed by ``ACTIVATE_VERSION`` with that version,
lets the target retire every row the read did not deliver: ``target-postgres`` sets
``_sdc_deleted_at`` (keeping the row's last values) or, with ``hard_delete``, deletes it.

* Streams read in full on every run (no bookmark: configuration lists, fields, projects,
  boards and phases ...) close every run this way. It costs nothing extra.
* Incremental streams (deals, persons, organizations, activities, products, notes, leads,
  files and the children read per changed parent) are read in full once every
  ``sweep_interval_days`` (a "sweep"; ``sweep_now`` forces one). Runs in between stay
  incremental; their records carry the last sweep's version, so the next activation
  retires them unless the sweep delivers them again, which it does for every row that
  still exists. (target-postgres also retires rows without a version; the SDK's generic
  SQL targets do not, so every record carries one.)
* Rows a list returns as deleted (deals and projects) carry ``_sdc_deleted_at`` and the
  version 0, older than any read: retired with their last values, and removed by the next
  activation under ``hard_delete``.

The state of each stream says when its last sweep started (``swept_at``, and its version
``swept_version``) and, while one is under way, its version (``sweep_version``): an
interrupted sweep resumes from its bookmark with the same version, and its activation then
covers the rows both attempts delivered. Nothing is activated after a failed or refused
read, so a partial read never retires rows.
"""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime, timedelta

from tap_pipedrive.sdk_private import activate_version, set_stream_version, stream_version

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Iterable

    from singer_sdk.streams import Stream

DEFAULT_SWEEP_INTERVAL_DAYS = 7
SWEEP_VERSION = "sweep_version"
SWEPT_AT = "swept_at"
SWEPT_VERSION = "swept_version"
# The version of rows a list returns as deleted: older than every read.
RETIRED_VERSION = 0
# Set on a stream read in full this run: its read ends with ACTIVATE_VERSION.
CLOSES_FULL_READ = "closes_full_read"
# target-postgres (0.8.1) soft-deletes with an UPDATE whose version parameter is named
# "version": SQLAlchemy refuses it for a table that has a column of that name, and the load
# fails. Such streams (webhooks, mail threads, a custom field named "Version") are left out.
UNSAFE_COLUMN = "version"
# What a sweep forgets of a stream's (or partition's) state: it reads from the start.
_BOOKMARK_KEYS = (
    "replication_key",
    "replication_key_value",
    "boundary_ids",
    "boundary_parents",
    "progress_markers",
)


def table_version(moment: datetime) -> int:
    """A table version that grows with time: milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


def _version_time(version: int) -> str:
    moment = datetime.fromtimestamp(version / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: t.Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _is_incremental(stream: Stream) -> bool:
    return stream.replication_method == "INCREMENTAL"


def plan_full_reads(
    streams: Iterable[Stream],
    *,
    now: datetime,
    interval_days: int,
    force: bool,
    logger: logging.Logger,
) -> None:
    """Give every selected stream read in full this run its table version.

    Runs before any record is read (and before pages are fetched ahead), because a sweep
    clears the stream's bookmarks.
    """
    version = table_version(now)
    interval = timedelta(days=interval_days)
    sweeping = []
    for stream in streams:
        if not stream.selected:
            continue
        if UNSAFE_COLUMN in stream.schema.get("properties", {}):
            logger.warning(
                "Stream %s has a column named %r: no ACTIVATE_VERSION is sent for it, so its "
                "deleted rows are not retired (target-postgres cannot soft-delete rows of "
                "such a table)",
                stream.name,
                UNSAFE_COLUMN,
            )
            continue
        if not _is_incremental(stream):
            # Read in full every run: every run can retire what is gone.
            # The SDK stamps RECORD messages with ``_stream_version`` (private; the public
            # ``emit_activate_version_messages`` activates before the read, which would
            # retire every row of a read that then fails).
            set_stream_version(stream, version)
            setattr(stream, CLOSES_FULL_READ, True)
            continue
        state = stream.stream_state
        resumed = state.get(SWEEP_VERSION)
        last = _parse(state.get(SWEPT_AT))
        if isinstance(resumed, int):
            set_stream_version(stream, resumed)
            sweeping.append(f"{stream.name} (resumed)")
        elif force or last is None or now - last >= interval:
            _forget_bookmarks(state)
            state[SWEEP_VERSION] = version
            set_stream_version(stream, version)
            sweeping.append(stream.name)
        else:
            # Between sweeps: the rows carry the last sweep's version.
            previous = state.get(SWEPT_VERSION)
            set_stream_version(stream, previous if isinstance(previous, int) else None)
            continue
        setattr(stream, CLOSES_FULL_READ, True)
    if sweeping:
        logger.info("Full read closed by ACTIVATE_VERSION (sweep) of: %s", ", ".join(sweeping))


def _forget_bookmarks(state: dict[str, t.Any]) -> None:
    for entry in (state, *state.get("partitions", ())):
        for key in _BOOKMARK_KEYS:
            entry.pop(key, None)


def close_full_read(stream: Stream, *, refused: bool) -> None:
    """After a stream's complete read: activate its version, so the target retires the rest."""
    version = stream_version(stream)
    if version is None or not stream.selected or not getattr(stream, CLOSES_FULL_READ, False):
        return
    if refused:
        # Nothing was read: activating would retire every row. An unfinished sweep stays
        # due (its version is kept) and resumes on the next run.
        return
    activate_version(stream, version)
    if _is_incremental(stream):
        state = stream.stream_state
        state.pop(SWEEP_VERSION, None)
        state[SWEPT_AT] = _version_time(version)
        state[SWEPT_VERSION] = version
        stream.state_manager.is_flushed = False
    setattr(stream, CLOSES_FULL_READ, False)
