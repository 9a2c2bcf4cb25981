"""Value normalisation: timestamps to RFC 3339 UTC, odd values to null with a counted warning."""

from __future__ import annotations

import logging
import typing as t
from collections import Counter
from datetime import UTC, date, datetime

_EMPTY_DATE_PREFIXES = ("0000", "0001-01-01")


class CoercionLog:
    """Counts values that had to be coerced, warning once per field and summing up at the end."""

    # singer-sdk 0.55 hands streams a LoggerAdapter.
    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[t.Any]) -> None:
        self._logger = logger
        self.counts: Counter[str] = Counter()

    def coerced(self, field: str, value: object, outcome: str = "null") -> None:
        if field not in self.counts:
            self._logger.warning(
                "Field %r had the unusable value %s; emitted as %s (further cases are counted)",
                field,
                _preview(value),
                outcome,
            )
        self.counts[field] += 1

    def summary(self) -> None:
        for field, count in sorted(self.counts.items()):
            self._logger.warning("Field %r: %d value(s) coerced in this run", field, count)


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def to_rfc3339(value: object) -> str | None:
    """Return ``value`` as an RFC 3339 UTC timestamp, or None when it is no real time.

    Raises ValueError for a string that is not a timestamp at all.
    Fast paths cover the two shapes Pipedrive sends almost always: v2's
    ``2024-05-01T10:20:30Z`` and v1's ``2024-05-01 10:20:30`` (UTC without a zone).
    """
    if not isinstance(value, str):
        raise ValueError(value)
    length = len(value)
    if value.startswith(_EMPTY_DATE_PREFIXES) or value[5:7] == "00" or value[8:10] == "00":
        return None
    # Already RFC 3339 UTC: kept exactly as sent, fraction included. Each endpoint writes
    # one fixed shape (v2 whole seconds, v1 leads/calls/mail milliseconds), so bookmarks
    # stay comparable as text within a stream.
    if (
        value[-1] == "Z"
        and length >= 20
        and value[10] == "T"
        and (length == 20 or (value[19] == "." and value[20:-1].isdigit()))
        and _plausible(value)
    ):
        return value
    if length == 19 and value[10] == " " and _plausible(value):
        return f"{value[:10]}T{value[11:]}Z"
    if length == 10 and value[4] == "-" and value[7] == "-":
        # A bare date where a timestamp is declared: midnight UTC.
        _check_date(value)
        return f"{value}T00:00:00Z"
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Offsets are converted to UTC; the fraction keeps millisecond precision if it had one.
    timespec = "milliseconds" if parsed.microsecond else "seconds"
    return parsed.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _plausible(value: str) -> bool:
    """Cheap range check of ``YYYY-MM-DD?HH:MM:SS`` by text comparison (no parsing)."""
    return (
        value[:4].isdigit()
        and value[4] == "-"
        and value[7] == "-"
        and "01" <= value[5:7] <= "12"
        and "01" <= value[8:10] <= "31"
        and "00" <= value[11:13] <= "23"
        and "00" <= value[14:16] <= "59"
        and "00" <= value[17:19] <= "60"
        # Days 29 to 31 exist in some months only: 2024-02-30 is no time at all.
        and (value[8:10] <= "28" or _is_calendar_date(value[:10]))
    )


def _is_calendar_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def to_date(value: object) -> str | None:
    """Return ``value`` as ``YYYY-MM-DD``, or None for an empty date such as ``0000-00-00``."""
    if not isinstance(value, str):
        raise ValueError(value)
    if value.startswith(_EMPTY_DATE_PREFIXES) or value[5:7] == "00" or value[8:10] == "00":
        return None
    head = value[:10]
    _check_date(head)
    return head


def _check_date(text: str) -> None:
    """Raise ValueError unless ``text`` is a real ``YYYY-MM-DD`` date (e.g. not 2024-02-30).

    ``date.fromisoformat`` is C code, many times cheaper than ``strptime``; the shape
    check keeps it from accepting the other ISO spellings it knows (``20240101``).
    """
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise ValueError(text)
    date.fromisoformat(text)


def strip_nul_characters(body: object) -> set[str]:
    """Remove NUL characters from every string of a decoded response, in place.

    PostgreSQL (and other targets) cannot store NUL in text, so one such character would
    stop a whole load. Returns the names of the row fields that held one (rows are the
    objects under ``data``), for the coercion warning.
    """
    fields: set[str] = set()
    if not isinstance(body, dict):
        return fields
    data = body.get("data")
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        if isinstance(row, dict):
            for key, value in row.items():
                cleaned = _without_nul(value)
                if cleaned is not value:
                    row[key] = cleaned
                    fields.add(key)
    for key, value in body.items():
        if key != "data":
            body[key] = _without_nul(value)
    return fields


def _without_nul(value: object) -> object:
    """``value`` with NUL removed from its strings; the very same object when it had none."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, list):
        items = [_without_nul(item) for item in value]
        return (
            items if any(new is not old for new, old in zip(items, value, strict=True)) else value
        )
    if isinstance(value, dict):
        pairs = {key: _without_nul(item) for key, item in value.items()}
        changed = any(pairs[key] is not item for key, item in value.items())
        return pairs if changed else value
    return value


class TimestampPaths:
    """Where a schema declares date-times and dates, at any depth, found once per stream.

    Pipedrive writes v1 timestamps (``2020-07-07 10:29:47``) inside nested objects too, such
    as the person of a deal participant. ``apply`` rewrites every such value in place: RFC
    3339 UTC for ``date-time``, ``YYYY-MM-DD`` for ``date``, null (counted) for what is no
    time. It visits only the properties that are timestamps or hold some further down, so a
    schema without nested timestamps costs no more than its top-level fields.
    """

    __slots__ = ("date_lists", "date_time_lists", "date_times", "dates", "object_lists", "objects")

    def __init__(
        self, schema: dict[str, t.Any], path: str = "", skip: frozenset[str] = frozenset()
    ) -> None:
        date_times: list[tuple[str, str]] = []
        dates: list[tuple[str, str]] = []
        date_time_lists: list[tuple[str, str]] = []
        date_lists: list[tuple[str, str]] = []
        objects: list[tuple[str, TimestampPaths]] = []
        object_lists: list[tuple[str, TimestampPaths]] = []
        for name, prop in (schema.get("properties") or {}).items():
            if name in skip or not isinstance(prop, dict):
                continue
            where = f"{path}{name}"
            fmt = prop.get("format")
            if fmt == "date-time":
                date_times.append((name, where))
            elif fmt == "date":
                dates.append((name, where))
            elif "properties" in prop:
                nested = TimestampPaths(prop, f"{where}.")
                if nested:
                    objects.append((name, nested))
            elif isinstance(prop.get("items"), dict):
                items = prop["items"]
                item_format = items.get("format")
                if item_format == "date-time":
                    date_time_lists.append((name, f"{where}[]"))
                elif item_format == "date":
                    date_lists.append((name, f"{where}[]"))
                elif "properties" in items:
                    nested = TimestampPaths(items, f"{where}[].")
                    if nested:
                        object_lists.append((name, nested))
        self.date_times = tuple(date_times)
        self.dates = tuple(dates)
        self.date_time_lists = tuple(date_time_lists)
        self.date_lists = tuple(date_lists)
        self.objects = tuple(objects)
        self.object_lists = tuple(object_lists)

    def __bool__(self) -> bool:
        return bool(
            self.date_times
            or self.dates
            or self.date_time_lists
            or self.date_lists
            or self.objects
            or self.object_lists
        )

    def apply(self, row: dict[str, t.Any], coercions: CoercionLog) -> None:
        # The two loops every record runs are written out: no call per value.
        for name, where in self.date_times:
            value = row.get(name)
            if value is not None:
                try:
                    converted = to_rfc3339(value)
                except (ValueError, TypeError, IndexError):
                    converted = None
                row[name] = converted
                if converted is None:
                    coercions.coerced(where, value)
        for name, where in self.dates:
            value = row.get(name)
            if value is not None:
                try:
                    converted = to_date(value)
                except (ValueError, TypeError, IndexError):
                    converted = None
                row[name] = converted
                if converted is None:
                    coercions.coerced(where, value)
        for name, where in self.date_time_lists:
            values = row.get(name)
            if values.__class__ is list:
                row[name] = [_converted(to_rfc3339, v, where, coercions) for v in values]
        for name, where in self.date_lists:
            values = row.get(name)
            if values.__class__ is list:
                row[name] = [_converted(to_date, v, where, coercions) for v in values]
        for name, nested in self.objects:
            value = row.get(name)
            if value.__class__ is dict:
                nested.apply(value, coercions)
        for name, nested in self.object_lists:
            values = row.get(name)
            if values.__class__ is list:
                for item in values:
                    if item.__class__ is dict:
                        nested.apply(item, coercions)


def _converted(
    convert: t.Callable[[object], str | None], value: object, where: str, coercions: CoercionLog
) -> str | None:
    if value is None:
        return None
    try:
        result = convert(value)
    except (ValueError, TypeError, IndexError):
        result = None
    if result is None:
        coercions.coerced(where, value)
    return result


def format_timestamp(moment: datetime) -> str:
    """Format a datetime for Pipedrive's ``updated_since`` (RFC 3339, UTC, seconds)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
