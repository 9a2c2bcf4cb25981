"""HTTP front end of the sandbox: routing, auth, rate limits, faults, control plane."""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from pipedrive_sandbox import envelope
from pipedrive_sandbox.elsewhere import TRANSPORT_KINDS, send_transport_fault
from pipedrive_sandbox.endpoints import ENDPOINTS, Endpoint
from pipedrive_sandbox.faults import Fault
from pipedrive_sandbox.listing import ApiError, dumps
from pipedrive_sandbox.oauth import OAuthError

if TYPE_CHECKING:
    from pipedrive_sandbox.core import Sandbox

UNAUTHORIZED = {
    "success": False,
    "error": "unauthorized access",
    "errorCode": 401,
    "error_info": "Please check developers.pipedrive.com",
}
DAILY_BUDGET_BODY = {
    "success": False,
    "error": "Daily API token budget exceeded",
    "errorCode": 429,
}
BURST_BODY = {
    "success": False,
    "error": "Request over limit",
    "errorCode": 429,
    "error_info": "Please check developers.pipedrive.com",
}
CLOUDFLARE_403 = (
    "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>"
    '<div id="cf-wrapper"><h1>Sorry, you have been blocked</h1>'
    "<p>You are unable to access api.pipedrive.com</p>"
    "<p>Cloudflare Ray ID: 8a1b2c3d4e5f6789</p></div></body></html>"
)
CLOUDFLARE_524 = (
    "<!DOCTYPE html><html><head><title>api.pipedrive.com | 524: A timeout occurred</title>"
    '</head><body><div id="cf-error-details"><h1>A timeout occurred</h1>'
    "<span>Error code 524</span><p>The origin web server timed out responding to this "
    "request.</p><p>Cloudflare Ray ID: 8a1b2c3d4e5f6790</p></div></body></html>"
)
NGINX_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center><hr><center>nginx</center></body></html>"
)
DISABLED_BURST_LIMIT = 100_000
# Error texts of the JSON error bodies an http_error fault can send.
JSON_ERRORS = {
    402: "Company account is not open. Please check your billing details.",
    403: "You do not have permission to access this resource (missing scope or plan feature)",
    404: "Item not found",
    410: "Item has been deleted",
}


@dataclass
class RequestRecord:
    """One logged API request (never holds a secret)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    token_cost: int
    auth_kind: str | None
    endpoint: str | None
    time: float

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BurstLimiter:
    """Rolling-window request counter per token kind ("api_token", "oauth").

    ``limits`` gives a kind a limit of its own (a plan's OAuth limit is four times its
    API-token one); other kinds share ``limit`` (None: no limit)."""

    def __init__(
        self, limit: int | None, window: float, limits: dict[str, int] | None = None
    ) -> None:
        self.limit = limit
        self.limits = dict(limits or {})
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def limit_for(self, key: str) -> int | None:
        return self.limits.get(key, self.limit)

    def shown_limit(self, key: str) -> int:
        """The ``x-ratelimit-limit`` answers carry for ``key``."""
        limit = self.limit_for(key)
        return limit if limit is not None else DISABLED_BURST_LIMIT

    def peek(self, key: str) -> dict[str, str]:
        """The rate limit headers for ``key`` without counting a request."""
        now = time.monotonic()
        limit = self.shown_limit(key)
        with self._lock:
            hits = [hit for hit in self._hits.get(key, ()) if hit > now - self.window]
        reset = math.ceil(hits[0] + self.window - now) if hits else math.ceil(self.window)
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(0, limit - len(hits))),
            "x-ratelimit-reset": str(max(1, reset)),
        }

    def hit(self, key: str) -> tuple[bool, int, int, int]:
        """(allowed, limit, remaining, reset seconds) — counts the request when allowed."""
        now = time.monotonic()
        limited = self.limit_for(key) is not None
        limit = self.shown_limit(key)
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            allowed = not limited or len(hits) < limit
            if allowed:
                hits.append(now)
            reset = math.ceil(hits[0] + self.window - now) if hits else math.ceil(self.window)
            return allowed, limit, max(0, limit - len(hits)), max(1, reset)


# ---- routing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    regex: re.Pattern[str]
    endpoint: Endpoint


def _routes() -> list[Route]:
    routes = []
    for endpoint in ENDPOINTS:
        pattern = re.escape(endpoint.path).replace(re.escape("{id}"), r"(?P<id>[^/]+)")
        routes.append(Route(re.compile(f"^{pattern}/?$"), endpoint))
    # Literal paths must win over ``{id}`` patterns (``/deals/archived`` vs ``/deals/{id}``).
    routes.sort(key=lambda route: "{id}" in route.endpoint.path)
    return routes


ROUTES = _routes()
API_PREFIXES = (("/api/v2", "v2"), ("/api/v1", "v1"), ("/v1", "v1"))


LITERAL_ROUTES = {
    (route.endpoint.version, route.endpoint.path): route.endpoint
    for route in ROUTES
    if "{id}" not in route.endpoint.path
}


def resolve(path: str) -> tuple[Endpoint, str | None] | None:
    for prefix, version in API_PREFIXES:
        if path.startswith(prefix + "/"):
            rest = path[len(prefix) :]
            literal = LITERAL_ROUTES.get((version, rest.rstrip("/")))
            if literal is not None:
                return literal, None
            for route in ROUTES:
                if route.endpoint.version != version:
                    continue
                match = route.regex.match(rest)
                if match:
                    return route.endpoint, match.groupdict().get("id")
            return None
    return None


def is_api_path(path: str) -> bool:
    return any(path.startswith(prefix + "/") for prefix, _ in API_PREFIXES)


# ---- handler ------------------------------------------------------------------------------------


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, sandbox: Sandbox, port: int) -> None:
        self.sandbox = sandbox
        super().__init__(("127.0.0.1", port), SandboxHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection the sandbox reset on purpose, or one the client dropped (a timeout,
        # a killed tap), is part of the test: no traceback on stderr for it.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, ValueError)):
            return
        super().handle_error(request, client_address)


class Headers(dict[str, str]):
    """Request headers with case-insensitive ``get`` (keys are stored lower-case)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


MAX_HEADERS = 100


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SandboxServer
    raw_requestline: bytes
    server_version = "sandbox"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        return None  # keep test output clean; requests are logged in sb.requests instead

    def parse_request(self) -> bool:
        """A lean replacement of the stdlib parser (which goes through ``email`` and costs
        more than the rest of a small request); benchmarks hammer this path."""
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = line
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self.request_version = "HTTP/1.1"
            self.close_connection = True
            self.send_error(400, "Bad request line")
            return False
        self.command, self.path, self.request_version = parts
        headers = Headers()
        for _ in range(MAX_HEADERS + 1):
            raw = self.rfile.readline(65537)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("iso-8859-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            self.close_connection = True
            self.send_error(431, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        return True

    # entry points -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self._read_body()
        try:
            if path.startswith("/_sandbox/"):
                self._control(method, path, query, body)
            elif path.startswith("/oauth/"):
                self._oauth(method, path, query, body)
            elif is_api_path(path):
                self._api(method, path, query)
            else:
                self._send_json(404, {"success": False, "error": "Not found", "errorCode": 404})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # low-level sending ------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json; charset=utf-8",
        headers: dict[str, str] | None = None,
        partial: bool = False,
    ) -> None:
        reason = self.responses.get(status, ("",))[0] if status != 524 else "A Timeout Occurred"
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if partial:
            self.wfile.write(head + body[: max(1, len(body) // 2)])
            self._reset_connection()
            return
        self.wfile.write(head + body)

    def _reset_connection(self) -> None:
        """Abort the TCP connection with a RST, mid-response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, dumps(payload), headers=headers)

    # API ----------------------------------------------------------------------------------------
    def _auth(self, query: dict[str, str]) -> tuple[str | None, bool]:
        sb = self.server.sandbox
        authorization = self.headers.get("Authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token:
                return "bearer", sb.oauth.access_valid(token.strip(), sb.company.domain)
            return "bearer", False
        header_token = self.headers.get("x-api-token")
        if header_token is not None:
            return "api_token", sb.check_api_token(header_token)
        if "api_token" in query:
            return "api_token_query", sb.check_api_token(query["api_token"])
        return None, False

    def _api(self, method: str, path: str, query: dict[str, str]) -> None:
        sb = self.server.sandbox
        started = time.time()
        safe_query = {k: ("<redacted>" if k == "api_token" else v) for k, v in query.items()}
        fault = sb.faults.take(path)
        auth_kind, auth_ok = self._auth(query)
        resolved = resolve(path) if method == "GET" else None
        endpoint = resolved[0] if resolved else None
        limiter_key = "oauth" if auth_kind == "bearer" else "api_token"

        def log(status: int, cost: int = 0) -> None:
            sb.log_request(
                RequestRecord(
                    method,
                    path,
                    safe_query,
                    status,
                    cost,
                    auth_kind,
                    endpoint.key if endpoint else None,
                    started,
                )
            )

        if fault is not None:
            if fault.kind == "slow":
                time.sleep(float(fault.params.get("delay", 1.0)))
            elif fault.kind == "expire_token":
                sb.oauth.expire_access_tokens()
                auth_kind, auth_ok = self._auth(query)
            elif fault.kind in TRANSPORT_KINDS:
                log(0)
                send_transport_fault(self, fault.kind, fault.params)
                return
            elif self._early_fault(fault, log):
                return
        if sb.latency > 0:
            time.sleep(sb.latency)
        if not auth_ok:
            log(401)
            self._send_json(401, UNAUTHORIZED, sb.limiter.peek(limiter_key))
            return
        allowed, limit, remaining, reset = sb.limiter.hit(limiter_key)
        rate_headers = {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
        }
        if fault is not None and fault.kind == "rate_headers":
            rate_headers.update({f"x-ratelimit-{k}": str(v) for k, v in fault.params.items()})
        if not allowed:
            sb.count_429()
            log(429)
            self._send_json(429, BURST_BODY, rate_headers)
            return
        if resolved is None or endpoint is None:
            log(404)
            self._send_json(
                404,
                {
                    "success": False,
                    "error": f"Unknown method {method} {path}",
                    "errorCode": 404,
                    "error_info": "Please check developers.pipedrive.com",
                },
                rate_headers,
            )
            return
        if not sb.budget_allows(endpoint.cost):
            sb.count_429(daily_budget=True)
            log(429)
            # The burst window still has room: that is how clients tell the two 429s apart.
            rate_headers["x-ratelimit-remaining"] = str(max(1, remaining))
            self._send_json(429, DAILY_BUDGET_BODY, rate_headers)
            return
        modes = fault.hostile_modes() if fault is not None and fault.kind == "hostile" else set()
        broken = fault.hostile_modes() if fault is not None and fault.kind == "envelope" else set()
        try:
            asked = envelope.first_page_query(query, broken)
            body = sb.lister.respond(endpoint, resolved[1], asked, modes)
            if broken:
                assert fault is not None
                body = envelope.rewrite(body, broken, query, fault.applied, fault.memory)
        except ApiError as error:
            log(error.status)
            self._send_json(error.status, error.body(), rate_headers)
            return
        sb.charge(endpoint.cost)
        log(200, endpoint.cost)
        if fault is not None and fault.kind == "malformed_json":
            self._send(200, body[: max(1, len(body) // 2)], headers=rate_headers)
            return
        self._send(
            200, body, headers=rate_headers, partial=fault is not None and fault.kind == "reset"
        )

    def _early_fault(self, fault: Fault, log: Callable[[int], None]) -> bool:
        """Faults that replace the whole answer; True when one was sent."""
        sb = self.server.sandbox
        kind = fault.kind
        limiter_key = "oauth" if self.headers.get("Authorization") is not None else "api_token"
        if kind == "burst_429":
            reset = str(fault.params.get("reset", 1))
            sb.count_429()
            log(429)
            self._send_json(
                429,
                BURST_BODY,
                {
                    "x-ratelimit-limit": str(sb.limiter.shown_limit(limiter_key)),
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": reset,
                },
            )
            return True
        if kind == "daily_429":
            sb.count_429(daily_budget=True)
            log(429)
            limit = sb.limiter.shown_limit(limiter_key)
            self._send_json(
                429,
                DAILY_BUDGET_BODY,
                {
                    "x-ratelimit-limit": str(limit),
                    "x-ratelimit-remaining": str(max(1, limit - 1)),
                    "x-ratelimit-reset": "2",
                },
            )
            return True
        if kind == "http_error":
            status = int(fault.params.get("status", 500))
            log(status)
            if status == 524:
                self._send(524, CLOUDFLARE_524.encode(), "text/html; charset=UTF-8")
            elif status == 502:
                self._send(502, NGINX_502.encode(), "text/html")
            elif status == 503:
                self._send_json(
                    503,
                    {
                        "success": False,
                        "error": "Service unavailable: maintenance in progress",
                        "errorCode": 503,
                    },
                )
            else:
                self._send_json(
                    status,
                    {
                        "success": False,
                        "error": fault.params.get("error")
                        or JSON_ERRORS.get(status, "Internal server error"),
                        "errorCode": status,
                        "error_info": "Please check developers.pipedrive.com",
                    },
                )
            return True
        if kind == "html_403":
            log(403)
            self._send(403, CLOUDFLARE_403.encode(), "text/html; charset=UTF-8")
            return True
        return False

    # OAuth --------------------------------------------------------------------------------------
    def _oauth(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        sb = self.server.sandbox
        oauth = sb.oauth
        if method == "GET" and path == "/oauth/authorize":
            status, page = oauth.authorize_page(query)
            self._send(status, page.encode("utf-8"), "text/html; charset=utf-8")
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if method == "POST" and path == "/oauth/authorize/decision":
            status, target = oauth.decide(form)
            if status == 302:
                self._send(302, b"", "text/plain", {"Location": target})
            else:
                self._send(status, target.encode("utf-8"), "text/html; charset=utf-8")
            return
        if method == "POST" and path == "/oauth/token":
            self._token(form, content_type)
            return
        if method == "POST" and path == "/oauth/revoke":
            try:
                oauth.client_from(self.headers.get("Authorization"), form)
            except OAuthError as error:
                self._send_json(error.status, error.body())
                return
            oauth.revoke(form)
            self._send_json(200, {"success": True})
            return
        self._send_json(404, {"error": "not_found", "error_description": "Unknown OAuth path"})

    def _token(self, form: dict[str, str], content_type: str) -> None:
        sb = self.server.sandbox
        grant_type = form.get("grant_type", "")
        fault = sb.faults.take("/oauth/token", scope="token")
        error: OAuthError | None = None
        if fault is not None:
            if fault.kind == "http_error":
                status = int(fault.params.get("status", 500))
                sb.log_token_call(grant_type, status, "http_error")
                self._send_json(
                    status, {"error": "server_error", "error_description": "Internal error"}
                )
                return
            if fault.kind == "redirect":
                sb.log_token_call(grant_type, int(fault.params.get("status", 307)), "redirect")
                send_transport_fault(self, fault.kind, fault.params)
                return
            if fault.kind == "slow":
                time.sleep(float(fault.params.get("delay", 1.0)))
            elif fault.kind == "invalid_grant" and grant_type == "refresh_token":
                error = OAuthError(400, "invalid_grant", "Refresh token has been revoked")
        if error is None and content_type != "application/x-www-form-urlencoded":
            error = OAuthError(400, "invalid_request", "Body must be form-encoded")
        result: dict[str, Any] | None = None
        if error is None:
            try:
                result = sb.oauth.token(form, self.headers.get("Authorization"))
            except OAuthError as raised:
                error = raised
        if error is not None or result is None:
            assert error is not None
            sb.log_token_call(grant_type, error.status, error.error)
            self._send_json(error.status, error.body())
            return
        result.setdefault("api_domain", sb.url)
        sb.log_token_call(grant_type, 200, None)
        reset = fault is not None and fault.kind == "reset"
        self._send(200, dumps(result), partial=reset)

    # control plane ------------------------------------------------------------------------------
    def _control(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        sb = self.server.sandbox
        name = path[len("/_sandbox/") :].rstrip("/")
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            self._send_json(400, {"error": "request body is not JSON"})
            return
        try:
            result = sb.control(method, name, payload, query)
        except KeyError as missing:
            self._send_json(404, {"error": f"unknown: {missing.args[0]}"})
            return
        except (ValueError, TypeError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, result)
