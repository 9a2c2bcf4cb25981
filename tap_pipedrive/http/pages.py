"""One answer of Pipedrive's as a value: ``Page``, and the decoding of its body.

A page's envelope (``additional_data``: the next cursor or offset) is read as soon as the
answer arrives, by whichever thread fetched it, without decoding the rows. The rows are
decoded once, on demand, by the thread writing them. Nothing is kept on the ``requests``
objects: a ``Page`` holds the bytes and what was learnt about them.
"""

from __future__ import annotations

import typing as t
import zlib
from dataclasses import dataclass, field

import msgspec

from tap_pipedrive.errors import PipedriveAPIError
from tap_pipedrive.normalize import strip_nul_characters


class JSONTooDeep(ValueError):
    """A body nested deeper than Python's recursion limit lets it be decoded."""


class _Envelope(msgspec.Struct):
    """What paging and the checks of a page need; ``data`` is skipped over, not decoded."""

    additional_data: t.Any = None
    data: msgspec.Raw = msgspec.Raw(b"null")


_json_decoder = msgspec.json.Decoder()
_envelope_decoder = msgspec.json.Decoder(_Envelope)


def _decode(decoder: msgspec.json.Decoder[t.Any], content: bytes) -> t.Any:
    try:
        return decoder.decode(content)
    except UnicodeDecodeError as exc:
        # msgspec reports bytes that are not UTF-8 as a UnicodeDecodeError; for the tap it
        # is a garbled body like any other.
        msg = f"Body is not valid UTF-8 ({exc.reason})"
        raise msgspec.DecodeError(msg) from None
    except RecursionError:
        # Real answers nest a few levels; asking again would bring the same body.
        raise JSONTooDeep("JSON nested too deeply to read") from None


def decode_json(content: bytes) -> t.Any:
    """A whole JSON body; malformed bytes raise ``msgspec.DecodeError``."""
    return _decode(_json_decoder, content)


def decode_envelope(content: bytes) -> _Envelope:
    """The envelope of a body that must be a JSON object (else ``msgspec.ValidationError``)."""
    envelope: _Envelope = _decode(_envelope_decoder, content)
    return envelope


_FALSY_JSON = (b"null", b"[]", b"{}", b"false", b'""', b"0")
# What the first byte of a JSON value says it is.
_JSON_KINDS = {ord("["): "list", ord("{"): "object", ord("n"): "null", ord('"'): "string"}


def fingerprint(rows: memoryview | bytes) -> tuple[int, int]:
    """Size and CRC of a page's raw rows.

    Cheap enough for every page (about 0.5 ms per MB, outside the GIL). Only several
    repeats in a row count, so a chance collision of two real pages changes nothing, and
    a server that forged one could as well have sent an error.
    """
    view = memoryview(rows)
    return view.nbytes, zlib.crc32(view)


def json_type(value: t.Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "list",
        dict: "object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


@dataclass(eq=False)
class Page:
    """One answered request: its rows (decoded on demand) and what paging needs of it.

    ``additional_data`` is the envelope's object ({} when absent). ``has_rows`` and
    ``rows_kind`` describe ``data`` without decoding it; ``fingerprint`` identifies its
    bytes (paging that serves the same rows again is a loop).
    """

    path: str
    status: int
    body: bytes
    # The stream the page was read for (named in messages).
    stream: str = ""
    additional_data: dict[str, t.Any] = field(default_factory=dict)
    has_rows: bool = False
    rows_kind: str = "null"
    fingerprint: tuple[int, int] = (0, 0)
    # The query parameter and value this page was asked with ({} for the first page).
    asked: dict[str, str] = field(default_factory=dict)
    # Tokens billed, attempts made, seconds the answer took.
    cost: int = 0
    attempts: int = 1
    elapsed: float = 0.0
    # A per-parent request whose parent is gone (404/410): an empty last page.
    gone: bool = False
    # Whether paging goes on after this page even if it holds no rows, and the token of
    # the page after it (None at the end of the list); both set by the client.
    continue_if_empty: bool = False
    next_token: int | str | None = None
    _decoded: t.Any = field(default=None, repr=False)
    # Fields whose text had NUL characters removed when the body was decoded.
    nul_fields: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def read(cls, path: str, status: int, body: bytes, **facts: t.Any) -> Page:
        """A page from a body that is a JSON object; decoding errors propagate.

        Raises ``msgspec.ValidationError`` when the body is JSON but not an object,
        ``msgspec.DecodeError`` when it is not JSON, ``JSONTooDeep``, and a paging error
        when ``additional_data`` is not an object.
        """
        envelope = decode_envelope(body)
        raw = memoryview(envelope.data)
        present = raw.nbytes > 8 or bytes(raw).replace(b" ", b"") not in _FALSY_JSON
        # msgspec hands over the value without surrounding whitespace.
        first = raw[0] if raw.nbytes else ord("n")
        kind = _JSON_KINDS.get(first, "number" if first in b"-0123456789" else "boolean")
        additional = envelope.additional_data
        if additional is not None and not isinstance(additional, dict):
            what = f"sent additional_data as a {json_type(additional)}, not an object"
            raise PipedriveAPIError(f"Pipedrive's paging for {path} {what}; stopping")
        return cls(
            path=path,
            status=status,
            body=body,
            additional_data=additional or {},
            has_rows=present,
            rows_kind=kind,
            fingerprint=fingerprint(raw),
            **facts,
        )

    def json(self) -> t.Any:
        """The whole body, decoded once (NUL characters removed from text)."""
        if self._decoded is None:
            try:
                decoded = decode_json(self.body)
            except JSONTooDeep:
                # The envelope, decoded on another thread, may have had more stack to spare.
                raise too_deep(describe(self.path, self.stream)) from None
            # JSON can only carry NUL as this escape: the check costs one scan of the bytes.
            if b"\\u0000" in self.body:
                self.nul_fields = sorted(strip_nul_characters(decoded))
            self._decoded = decoded
        return self._decoded

    def forget_decoded(self) -> None:
        """Drop the decoded body of a page that waits in a buffer (it is decoded again)."""
        if self.body:
            self._decoded = None

    def data(self) -> t.Any:
        """The envelope's ``data``, decoded."""
        body = self.json()
        return body.get("data") if isinstance(body, dict) else None

    def rows(self, rows: t.Any = None) -> list[dict[str, t.Any]]:
        """The rows of ``data`` (or of ``rows``), which must be objects; an object alone is one."""
        if rows is None:
            rows = self.data()
        if rows is None:
            return []
        if isinstance(rows, dict):
            return [rows]
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            kind = json_type(rows) if not isinstance(rows, list) else "list holding non-objects"
            msg = (
                f"Unexpected JSON from Pipedrive for {describe(self.path, self.stream)}: "
                f"data is a {kind}, not a list of rows"
            )
            raise PipedriveAPIError(msg)
        return rows

    def row_count(self) -> int:
        data = self.data()
        return len(data) if isinstance(data, list | dict) else 0


def describe(path: str, stream: str) -> str:
    """A request as messages name it: the path only (query strings are not logged)."""
    return f"GET {path} (stream {stream})" if stream else f"GET {path}"


def too_deep(where: str) -> PipedriveAPIError:
    msg = (
        f"Unexpected JSON from Pipedrive for {where}: nested too deeply "
        "to read (real answers nest a few levels)"
    )
    return PipedriveAPIError(msg)
