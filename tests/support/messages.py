"""Singer messages compared across runs that differ only in timing."""

from __future__ import annotations

from typing import Any

# State values that are clock readings: signposts, and the table versions of full reads
# (the time a run started).
TIMED_STATE_KEYS = {"replication_key_signpost", "sweep_version", "swept_version", "swept_at"}
# Message fields that differ between any two runs.
PER_RUN_FIELDS = ("time_extracted", "version")


def comparable(messages: list[dict]) -> list[dict]:
    """The messages without what differs between two runs of the same sync."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMED_STATE_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return [strip({k: v for k, v in m.items() if k not in PER_RUN_FIELDS}) for m in messages]
