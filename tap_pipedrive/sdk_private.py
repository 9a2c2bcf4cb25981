"""Every use of the Singer SDK's private surface, in one place, each with its reason.

The tap keeps to the SDK's public API wherever it has one. What it cannot do without
private names is reached through this module only (tests/test_sdk_surface.py fails when
another module reaches past it, and when the SDK changes any name or signature listed
here), so an SDK upgrade is checked in one file.

Private methods the tap *overrides* stay in their classes, where they read best; they are
listed in ``OVERRIDDEN`` with the SDK class they come from, and the test checks their
signatures against the installed SDK.
"""

from __future__ import annotations

import typing as t

# --config=ENV: the SDK's own parser of one setting's variable, and the decorator the SDK
# declares the overridden config_jsonschema class property with (tap.py).
from singer_sdk.configuration._dict_config import parse_environment_config

# Records: the SDK's own deselection of properties and its clock, for the RECORD path
# compiled for speed (streams/base.py: _generate_record_messages).
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.helpers._classproperty import classproperty

# Fetch-ahead plans a request from the bookmark the SDK will settle on, without creating
# the state entry the public get_context_state would (streams/bookmarks.py).
from singer_sdk.helpers._state import get_state_if_exists

# Conformance compiled once per schema (conform.py): the SDK's own type tests, so records
# conform exactly as the SDK's per-record walk would.
from singer_sdk.helpers._typing import (
    _is_exclusive_boolean_type,
    is_object_type,
    is_uniform_list,
    to_json_compatible,
)
from singer_sdk.helpers._util import utc_now

if t.TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context
    from singer_sdk.plugin_base import PluginBase
    from singer_sdk.streams import Stream

__all__ = [
    "OVERRIDDEN",
    "activate_version",
    "classproperty",
    "env_var_prefix",
    "get_state_if_exists",
    "input_schema",
    "is_exclusive_boolean_type",
    "is_object_type",
    "is_uniform_list",
    "parse_environment_config",
    "pop_deselected_record_properties",
    "set_stream_version",
    "state_partition",
    "stream_version",
    "tap_of",
    "to_json_compatible",
    "utc_now",
    "write_state",
]

is_exclusive_boolean_type = _is_exclusive_boolean_type

# Private SDK methods the tap overrides: (SDK class, method, its parameters, why).
OVERRIDDEN: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    (
        "singer_sdk.streams.core:Stream",
        "_generate_record_messages",
        ("self", "record"),
        "speed: one compiled conformance per schema instead of a walk per record",
    ),
    (
        "singer_sdk.streams.core:Stream",
        "_write_state_message",
        ("self",),
        "every STATE carries the day's token spend; a run past its cap stops right after one",
    ),
    (
        "singer_sdk.tap_base:Tap",
        "_set_compatible_replication_methods",
        ("self",),
        "the one hook at the start of sync_all (final): sweeps, budget and fetch-ahead plans",
    ),
    (
        "singer_sdk.plugin_base:PluginBase",
        "_validate_config",
        ("self", "raise_errors"),
        "secrets are masked before validation quotes them; one line per bad setting",
    ),
    (
        "singer_sdk.plugin_base:PluginBase",
        "_env_var_config",
        ("cls",),
        "--config=ENV: one line per bad variable, and numbers read as numbers",
    ),
    (
        "singer_sdk.plugin_base:PluginBase",
        "_handle_termination",
        ("self", "signum", "frame"),
        "correctness: a signal must not write a STATE covering a record never written",
    ),
)


def env_var_prefix(plugin: type[PluginBase] | PluginBase) -> str:
    """The prefix of the plugin's settings variables (TAP_PIPEDRIVE_), as the SDK builds it."""
    prefix: str = plugin._env_var_prefix
    return prefix


def tap_of(stream: Stream) -> Tap:
    """The tap a stream belongs to (the SDK keeps it as ``_tap``, with no public accessor)."""
    return stream._tap


def input_schema(stream: Stream) -> dict[str, t.Any] | None:
    """The stream's schema in the catalog a sync was given (public only as effective_schema,
    which falls back to the schema being built from it)."""
    schema: dict[str, t.Any] | None = stream._input_schema
    return schema


def state_partition(stream: Stream, context: Context | None) -> Context | None:
    """The state partition of a context, as the SDK keys its state entries."""
    return stream._get_state_partition_context(context)


def write_state(stream: Stream) -> None:
    """Emit the stream's STATE now (after a chunk of parents, not only after a page)."""
    stream._write_state_message()


def stream_version(stream: Stream) -> int | None:
    """The table version of this run's read (ACTIVATE_VERSION); None when not versioned."""
    version: int | None = stream._stream_version
    return version


def set_stream_version(stream: Stream, version: int | None) -> None:
    """Give a full read (a sweep) its version, or resume the version of an unfinished one."""
    stream._stream_version = version


def activate_version(stream: Stream, version: int) -> None:
    """The SDK's writer of ACTIVATE_VERSION: it honours stream maps and aliases."""
    stream._write_activate_version_message(version)
