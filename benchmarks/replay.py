"""A loopback server that answers from memory, so the server is never what a benchmark measures.

``ReplayServer`` forwards every request it has not seen to the sandbox, keeps the answer, and
serves it from memory afterwards: a warm-up run records, the measured run replays. Requests
are keyed by path and query without credentials, so the tap (``x-api-token`` header) and the
peer (``?api_token=``) share nothing by accident but each replays its own requests.

Two extras:

- ``/v1/dealFields`` (and the person, organization, product and activity sets) for the peer
  (singer-io tap-pipedrive 2.1.0 builds its schemas from them): built from the sandbox's
  ``/api/v2/...Fields`` in the v1 item shape (``key``, ``name``, ``field_type``), since the
  sandbox serves only the v2 endpoints.
- ``SyntheticDeals``: ``/api/v2/deals`` of any size (1,000,000 rows and more) made from one
  real sandbox page, ids and update times shifted per page, for the memory benchmark.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec

CREDENTIAL_PARAMS = {"api_token"}
FORWARDED_HEADERS = ("x-api-token", "authorization", "accept", "user-agent")
KEPT_HEADERS = ("content-type", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


class Answer(t.NamedTuple):
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class SyntheticDeals:
    """``/api/v2/deals`` with ``total`` rows, built page by page from one template page."""

    def __init__(self, template: list[dict], total: int, start_epoch: int = 1_700_000_000) -> None:
        self.template = template
        self.total = total
        self.start_epoch = start_epoch
        self.pages_served = 0

    def page(self, query: dict[str, str]) -> bytes:
        limit = max(1, min(int(query.get("limit") or 100), 500))
        offset = int(query.get("cursor") or 0)
        count = max(0, min(limit, self.total - offset))
        rows = []
        for index in range(count):
            row = dict(self.template[index % len(self.template)])
            position = offset + index
            row["id"] = position + 1
            # Ascending update times (one second apart), as the tap asks for.
            row["update_time"] = _rfc3339(self.start_epoch + position)
            rows.append(row)
        following = offset + count
        cursor = str(following) if following < self.total else None
        self.pages_served += 1
        body = {"success": True, "data": rows, "additional_data": {"next_cursor": cursor}}
        return msgspec.json.encode(body)


def _rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class ReplayServer:
    """Record-and-replay proxy in front of the sandbox (loopback only)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.cache: dict[str, Answer] = {}
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.log: list[str] = []  # request keys, in arrival order
        self.synthetic: SyntheticDeals | None = None
        # Seconds added to every answer (the latency benchmark's round trip).
        self.latency = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._local = threading.local()

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> str:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                answer = replay.answer(self.path, self.headers)
                if replay.latency:
                    time.sleep(replay.latency)
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: t.Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset_counters(self) -> None:
        with self.lock:
            self.hits = self.misses = 0
            self.log = []

    # --- answers ---------------------------------------------------------------------------------
    def answer(self, raw_path: str, headers: t.Any) -> Answer:
        path, _, raw_query = raw_path.partition("?")
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        query = dict(pairs)
        key = path + "?" + urlencode(sorted(p for p in pairs if p[0] not in CREDENTIAL_PARAMS))
        with self.lock:
            self.log.append(key)
        if self.synthetic is not None and path in ("/api/v2/deals", "/api/v2/deals/archived"):
            body = self.synthetic.page(query) if path == "/api/v2/deals" else _EMPTY_V2
            return Answer(200, (("content-type", "application/json"),), body)
        with self.lock:
            found = self.cache.get(key)
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
        v1_fields = _V1_FIELDS.fullmatch(path)
        if v1_fields and v1_fields.group(1) in V2_FIELD_SETS:
            found = self._v1_fields(v1_fields.group(1), query, headers)
        else:
            found = self._forward(raw_path, headers)
        if found.status == 200:
            with self.lock:
                self.cache[key] = found
        return found

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port)
            self._local.connection = connection
        return connection

    def _forward(self, raw_path: str, headers: t.Any) -> Answer:
        sent = {name: headers[name] for name in FORWARDED_HEADERS if headers.get(name)}
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request("GET", raw_path, headers=sent)
                response = connection.getresponse()
                body = response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
                continue
            kept = tuple(
                (name, value)
                for name, value in response.getheaders()
                if name.lower() in KEPT_HEADERS
            )
            return Answer(response.status, kept, body)
        raise AssertionError("unreachable")

    def _v1_fields(self, field_set: str, query: dict[str, str], headers: t.Any) -> Answer:
        """The v1 item shape the peer reads (key, name, field_type), from the v2 endpoint."""
        token = query.get("api_token") or headers.get("x-api-token") or ""
        items: list[dict] = []
        cursor = None
        while True:
            params = {"limit": "500", "api_token": token}
            if cursor:
                params["cursor"] = cursor
            answer = self._forward(f"/api/v2/{field_set}Fields?" + urlencode(params), headers)
            if answer.status != 200:
                return answer
            body = json.loads(answer.body)
            for field in body.get("data") or []:
                items.append(
                    {
                        "key": field["field_code"],
                        "name": field["field_name"],
                        "field_type": field["field_type"],
                        "edit_flag": bool(field.get("is_custom_field")),
                        "options": field.get("options"),
                    }
                )
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                break
        start = int(query.get("start") or 0)
        body_v1 = {
            "success": True,
            "data": items[start:] or None,
            "additional_data": {
                "pagination": {
                    "start": start,
                    "limit": len(items),
                    "more_items_in_collection": False,
                }
            },
        }
        return Answer(200, (("content-type", "application/json"),), json.dumps(body_v1).encode())


_V1_FIELDS = re.compile(r"(?:/api)?/v1/(\w+)Fields")
V2_FIELD_SETS = ("deal", "person", "organization", "product", "activity")
_EMPTY_V2 = b'{"success":true,"data":[],"additional_data":{"next_cursor":null}}'
