"""A host the user did not configure, and the transport faults that point at it.

``Elsewhere`` is a loopback server standing for any other host: it records every request it
receives (target, headers, body) and answers like Pipedrive would, so that a client
following a redirect to it, or taking it for a company, carries on as if all were well.
It also answers absolute-URI requests, so it can stand in for an HTTP proxy too, and serves
https with a given certificate.

The transport faults are answers no real Pipedrive gives; ``sb.faults.add`` takes them:

* ``redirect`` (``status``, ``location``): a 3xx pointing at ``location`` + the path asked
  for. Also on ``/oauth/token`` when the fault's path names it.
* ``huge_body`` (``size``, ``delimited`` = ``"length"`` or ``"close"``): a 200 whose body
  is valid JSON padded with whitespace to ``size`` bytes.
* ``gzip_bomb`` (``size``): the same padded body, gzip-encoded (about 1/1000 of ``size``).
* ``drip`` (``interval``, ``from`` = ``"start"`` or ``"body"``): a normal answer sent one
  byte every ``interval`` seconds, from the status line on or from the body on.
"""

from __future__ import annotations

import functools
import json
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

TRANSPORT_KINDS = ("redirect", "huge_body", "gzip_bomb", "drip")
# An empty page: a client that accepts it as a page carries on normally.
EMPTY_PAGE = {
    "success": True,
    "data": [],
    "additional_data": {"next_cursor": None, "pagination": {"more_items_in_collection": False}},
}
_PAD_BLOCK = b" " * (1 << 20)


@dataclass
class Received:
    """One request as the other host saw it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def credentials(self) -> list[str]:
        """Names of credential headers the request carried."""
        return [name for name in ("x-api-token", "authorization") if name in self.headers]


@dataclass
class Elsewhere:
    """``with Elsewhere() as other: other.url; other.received``."""

    token_answer: dict[str, Any] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    # (certificate file, key file): serve https with them.
    tls: tuple[str, str] | None = None
    _server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Elsewhere:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                owner.received.append(Received(self.command, self.path, headers, body))
                path = urlsplit(self.path).path
                payload = owner.token_answer if path.endswith("/oauth/token") else EMPTY_PAGE
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "use Elsewhere as a context manager"
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_port}"

    def with_credentials(self) -> list[Received]:
        return [request for request in self.received if request.credentials]


# ---- the faults, as the sandbox's handler sends them --------------------------------------


def _padded(size: int) -> tuple[bytes, bytes]:
    """Head and tail of an empty page whose whitespace makes it ``size`` bytes in all."""
    text = json.dumps(EMPTY_PAGE).encode()
    return text[:-1], text[-1:]


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """An empty page padded to ``size`` bytes of JSON, gzip-compressed."""
    head, tail = _padded(size)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(head)]
    remaining = max(0, size - len(head) - len(tail))
    while remaining > 0:
        block = _PAD_BLOCK[: min(remaining, len(_PAD_BLOCK))]
        parts.append(packer.compress(block))
        remaining -= len(block)
    parts.append(packer.compress(tail))
    parts.append(packer.flush())
    return b"".join(parts)


def send_transport_fault(handler: BaseHTTPRequestHandler, kind: str, params: dict) -> None:
    """Answer ``handler``'s request with the transport fault ``kind``."""
    wfile = handler.wfile
    if kind == "redirect":
        status = int(params.get("status", 307))
        location = str(params["location"]).rstrip("/") + handler.path
        answer = (
            f"HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\n"
            "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
        )
        wfile.write(answer.encode("latin-1"))
        return
    if kind == "drip":
        interval = float(params.get("interval", 0.5))
        body = json.dumps(EMPTY_PAGE).encode()
        whole = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        handler.close_connection = True
        start = len(whole) - len(body) if params.get("from") == "body" else 0
        wfile.write(whole[:start])
        for index in range(start, len(whole)):
            wfile.write(whole[index : index + 1])
            wfile.flush()
            time.sleep(interval)
        return
    size = int(params.get("size", 200 << 20))
    handler.close_connection = True
    if kind == "gzip_bomb":
        body = gzip_bomb(size)
        wfile.write(
            (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body
        )
        return
    head, tail = _padded(size)
    length = f"Content-Length: {size}\r\n" if params.get("delimited", "length") == "length" else ""
    wfile.write(
        (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n"
        ).encode()
        + head
    )
    remaining = size - len(head) - len(tail)
    while remaining > 0:
        block = _PAD_BLOCK[: min(remaining, len(_PAD_BLOCK))]
        wfile.write(block)
        remaining -= len(block)
    wfile.write(tail)
