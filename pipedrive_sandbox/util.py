"""Small deterministic helpers shared by the sandbox modules (time formats, text pools)."""

from __future__ import annotations

import calendar
import hashlib
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

# Generated data lives strictly inside this window; the sandbox clock starts after it.
DATA_START = calendar.timegm((2023, 1, 1, 0, 0, 0))
DATA_END = calendar.timegm((2026, 6, 30, 23, 59, 59))
CLOCK_START = calendar.timegm((2026, 7, 1, 0, 0, 0))

COMPANY_ID = 7001
COMPANY_DOMAIN = "sandbox-company"
COMPANY_NAME = "Sandbox Company OÜ"


@dataclass(frozen=True)
class Company:
    """One Pipedrive company: its id, name and subdomain show up in its records."""

    id: int = COMPANY_ID
    name: str = COMPANY_NAME
    domain: str = COMPANY_DOMAIN


DEFAULT_COMPANY = Company()


_DAYS: dict[int, str] = {}


def fmt_date(ts: int) -> str:
    day = ts // 86400
    text = _DAYS.get(day)
    if text is None:
        text = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
        _DAYS[day] = text
    return text


def _clock_of(ts: int) -> str:
    hours, rest = divmod(ts % 86400, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}"


# Formatting runs for every timestamp of every served record, hence the day cache above.
def fmt_v2(ts: int) -> str:
    return f"{fmt_date(ts)}T{_clock_of(ts)}Z"


def fmt_v1(ts: int) -> str:
    return f"{fmt_date(ts)} {_clock_of(ts)}"


def fmt_iso_ms(ts: int) -> str:
    return f"{fmt_date(ts)}T{_clock_of(ts)}.000Z"


FORMATTERS = {"v2": fmt_v2, "v1": fmt_v1, "iso": fmt_iso_ms}


def parse_timestamp(text: str) -> int | None:
    """Parse RFC 3339 / ISO 8601 (``Z``, offsets, fractions) into epoch seconds; None if bad."""
    value = text.strip()
    if not value:
        return None
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if len(value) == 10:  # a bare date means midnight UTC
        value += "T00:00:00+00:00"
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def mix_seed(*parts: object) -> int:
    """A stable 64-bit integer from arbitrary parts (``hash()`` is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hex_key(*parts: object) -> str:
    """A 40-character hex key like Pipedrive's custom field hashes."""
    return hashlib.sha1(repr(parts).encode("utf-8"), usedforsecurity=False).hexdigest()


def uuid_from(rng: random.Random) -> str:
    value = rng.getrandbits(128)
    raw = f"{value:032x}"
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:32]}"


FIRST_NAMES = (
    "Anna",
    "José",
    "Zoë",
    "Łukasz",
    "Søren",
    "Chloé",
    "Mário",
    "Ayşe",
    "Björn",
    "Olivia",
    "Liam",
    "Noah",
    "Emma",
    "Mia",
    "Lucas",
    "François",
    "Jürgen",
    "Renée",
    "Siân",
    "Nguyễn",
    "太郎",
    "美咲",
    "伟",
    "Дмитрий",
    "Αλέξανδρος",
    "Maarja",
    "Kai",
    "Oğuz",
    "Ines",
    "Raúl",
)
LAST_NAMES = (
    "Tamm",
    "Müller",
    "García",
    "O'Brien",
    "Nowak",
    "Kowalczyk",
    "Smith",
    "Johansson",
    "Dubois",
    "Rossi",
    "Silva",
    "Yılmaz",  # noqa: RUF001 - a real Turkish name, not a typo
    "Novák",
    "Kask",
    "Lee",
    "山田",
    "佐藤",
    "王",
    "Иванов",
    "Παπαδόπουλος",
    "van der Berg",
    "D'Angelo",
    "Ó Súilleabháin",
    "Brown",
    "Virtanen",
)
COMPANY_WORDS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Müller GmbH",
    "Hooli",
    "Société Générale de Test",
    "株式会社サンプル",
    "Ωmega",
    "Café Olé 🚀",
    "Nordic Ørsted",
    "Tallinn Tech OÜ",
    "北京示例",
    "Soylent",
    "Vandelay",
    "Cyberdyne",
    "Wonka 🍫",
    "Aperture",
)
COMPANY_SUFFIXES = ("", " Ltd", " AS", " Inc.", " & Co", " Group", " SA", " (EU)")
DEAL_WORDS = (
    "Renewal",
    "Expansion",
    "Pilot",
    "Licence",
    "Consulting",
    "Onboarding",
    "Upgrade",
    "Migration",
    "Rollout",
    "Support plan",
    "Pilote",
    "Ausbau",
    "導入",
    "Extensión",
    "🚀 Launch",
)
PHRASES = (
    "Follow up next week",
    "Sent the proposal",
    "Price négociation",
    "Budget approved ✅",
    "Call back — asked for a demo",
    "見積もりを送付",
    "Needs legal review",
    "Kunde möchte Rabatt",
    "",
    "Quarterly check-in",
    "Emoji test 😀🎉",
    "Line one\nLine two",
    'Quote "special" chars',
    "Tab\tseparated",
    "Ünïcödé everywhere",
    "Дополнительная информация",
)
CITIES = (
    ("Tallinn", "Harju maakond", "EE", "10115"),
    ("Berlin", "Berlin", "DE", "10117"),
    ("São Paulo", "São Paulo", "BR", "01000-000"),
    ("東京", "東京都", "JP", "100-0001"),
    ("New York", "New York", "US", "10001"),
    ("Zürich", "Zürich", "CH", "8001"),
)
STREETS = (
    "Narva mnt",
    "Unter den Linden",
    "Avenida Paulista",
    "丸の内",
    "Broadway",
    "Bahnhofstrasse",
)
CURRENCIES = (
    ("EUR", "Euro", "€", 2),
    ("USD", "US Dollar", "$", 2),
    ("GBP", "British Pound", "£", 2),
    ("JPY", "Japanese Yen", "¥", 0),
    ("SEK", "Swedish Krona", "kr", 2),
    ("BTC", "Bitcoin (custom)", "₿", 8),
)
TIMEZONES = (
    (7, "Europe/Tallinn"),
    (1, "Europe/Berlin"),
    (25, "Asia/Tokyo"),
    (61, "America/New_York"),
)


def person_name(rng: random.Random) -> tuple[str, str]:
    return FIRST_NAMES[int(rng.random() * len(FIRST_NAMES))], LAST_NAMES[
        int(rng.random() * len(LAST_NAMES))
    ]


def company_name(rng: random.Random) -> str:
    return (
        COMPANY_WORDS[int(rng.random() * len(COMPANY_WORDS))]
        + COMPANY_SUFFIXES[int(rng.random() * len(COMPANY_SUFFIXES))]
    )


def address(rng: random.Random, with_formatted: bool = False) -> dict[str, str]:
    city, region, country, postal = CITIES[int(rng.random() * len(CITIES))]
    street = STREETS[int(rng.random() * len(STREETS))]
    number = str(1 + int(rng.random() * 200))
    value = f"{street} {number}, {postal} {city}, {country}"
    result = {
        "value": value,
        "country": country,
        "admin_area_level_1": region,
        "admin_area_level_2": "",
        "locality": city,
        "sublocality": "",
        "route": street,
        "street_number": number,
        "subpremise": "",
        "postal_code": postal,
    }
    if with_formatted:
        result["formatted_address"] = value
    return result
