"""The one HTTP session behind every request, and which hosts may receive credentials.

API calls and token calls both go through ``TransportSession.send``, which:

- never follows a redirect. requests drops ``Authorization`` when a redirect changes host,
  but not the custom ``x-api-token`` header, and a 307/308 re-sends a refresh token or a
  login code in its body. Any 3xx ends the call with one line naming where it pointed.
- honours the standard environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE,
  CURL_CA_BUNDLE) as ``requests.get`` does; ``Session.send`` alone ignores it.
- reads the body in pieces and stops past ``MAX_BODY_BYTES`` once decoded, so a huge body
  or a gzip bomb cannot exhaust memory.
- ends the whole exchange at a deadline (twice the timeout it is given). A socket timeout
  only bounds each read: a server sending one byte at a time would never trip it.

The URL checks decide which hosts are trusted at all: https everywhere except loopback,
no ``user:password@`` in a URL, and an ``api_domain`` only on Pipedrive or on a host the
user configured.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import ipaddress
import itertools
import re
import socket
import threading
import time
import typing as t
from collections.abc import Mapping
from urllib.parse import SplitResult, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from typing_extensions import override
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from tap_pipedrive.errors import ConfigError, PipedriveAPIError

# Far above any real page (500 rows of a few KB each); a body past it is refused, decoded size.
MAX_BODY_BYTES = 128 << 20
# Response bodies are read in pieces of this size (requests itself reads 10 KB at a time).
# Each piece is a trip through the GIL for the thread fetching it, and while the main
# thread is busy writing records every trip can wait a whole switch interval.
BODY_READ_SIZE = 1 << 20
# The whole exchange may take this many times the timeout it is given. A silent server
# trips the timeout of a single read first (and is reported as such); the deadline ends
# the one that keeps every read busy with a trickle of bytes.
DEADLINE_FACTOR = 2
# When the caller gives no timeout (the SDK and the token calls always give one).
DEFAULT_TIMEOUT_SECONDS = 300.0

_PIPEDRIVE_COMPANY_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.pipedrive\.com")


# --- errors ------------------------------------------------------------------------------
class RedirectRefused(PipedriveAPIError):
    """A server answered with a redirect; it is never followed with credentials."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.origin = host_of(response.url or "")
        location = response.headers.get("Location")
        self.target = host_of(urljoin(response.url or "", location)) if location else None
        where = f"to {self.target}" if self.target else "without a Location"
        super().__init__(
            f"{self.origin} answered {self.status}, a redirect {where}: not followed, "
            "the tap sends credentials only to the host it was configured with "
            "(api_url, or api_domain from the OAuth login)"
        )


class BodyTooLarge(PipedriveAPIError):
    """A response body grew past MAX_BODY_BYTES; retrying would fetch it all again."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(
            f"The response from {host_of(response.url or '')} for "
            f"{_printable(urlsplit(response.url or '').path)} is larger than "
            f"{MAX_BODY_BYTES >> 20} MiB: refused (if its rows really are this large, "
            "lower page_size)"
        )


class ResponseDeadlineExceeded(requests.exceptions.ReadTimeout):
    """The whole exchange outlasted its deadline (retried like any timeout)."""


# --- URL checks --------------------------------------------------------------------------
def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only hosts that may be spoken to over plain http."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(url: str) -> str:
    """``host[:port]`` of a URL for messages: never the user name or password it may carry."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unparsable URL"
    if not host:
        return "an unknown host"
    shown = f"[{host}]" if ":" in host else host
    return _printable(f"{shown}:{port}" if port else shown)


def check_url(setting: str, url: t.Any) -> SplitResult:
    """The parts of a configured URL, or one line naming the setting that is wrong.

    The URL itself is quoted only when it carries no ``@``: what comes before one is a
    user name and password, and those are never printed.
    """
    text = str(url)
    quoted = "" if "@" in text else f", got {_printable(text[:80])!r}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        msg = f"{setting} is not a valid URL{quoted}"
        raise ConfigError(msg) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"{setting} must be an http(s) URL with a host{quoted}"
        raise ConfigError(msg)
    if "@" in parts.netloc:
        msg = (
            f"{setting} must not carry a user name or password (user:password@host): "
            "credentials have their own settings"
        )
        raise ConfigError(msg)
    if parts.scheme != "https" and not is_loopback(parts.hostname):
        msg = f"{setting} must use https (plain http only for loopback hosts){quoted}"
        raise ConfigError(msg)
    del port  # read only to reject a malformed one
    return parts


def check_api_domain(api_domain: t.Any, config: Mapping[str, t.Any]) -> str:
    """The company URL to call, if it is one the tap may send the access token to.

    ``api_domain`` comes from the token answer, the token store or the config. It is
    trusted when it is ``https://<company>.pipedrive.com``, or when its host is the one of
    the api_url or oauth_url the user configured (a test server may put each company on
    a port of its own, so the port may differ).
    """
    parts = check_url("api_domain", api_domain)
    host = parts.hostname or ""
    if parts.path.strip("/") or parts.query or parts.fragment:
        msg = f"api_domain must be a scheme and host only, got {host_of(str(api_domain))!r}"
        raise ConfigError(msg)
    if (
        parts.scheme == "https"
        and parts.port in (None, 443)
        and _PIPEDRIVE_COMPANY_HOST.fullmatch(host)
    ):
        return str(api_domain).rstrip("/")
    configured = {
        urlsplit(str(config[key])).hostname for key in ("api_url", "oauth_url") if config.get(key)
    }
    if host in configured:
        return str(api_domain).rstrip("/")
    msg = (
        f"api_domain {parts.scheme}://{host_of(str(api_domain))} is refused: the access token "
        "goes only to https://<company>.pipedrive.com or to the host of the configured "
        "api_url or oauth_url"
    )
    raise ConfigError(msg)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


# --- the deadline watchdog ---------------------------------------------------------------
class _Exchange:
    """One request in flight: its deadline and the connection carrying it."""

    __slots__ = ("connection", "deadline", "done", "expired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connection: HTTPConnection | None = None
        self.done = False
        self.expired = False

    def expire(self) -> bool:
        """Mark the exchange as late and cut its connection; False if it has no socket yet."""
        self.expired = True
        sock = getattr(self.connection, "sock", None)
        if sock is None:
            return False  # still connecting (bounded by the connect timeout): look again soon
        # Wakes the read blocked on this socket (it sees the end of the stream).
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        return True


class _Watchdog:
    """One thread for the whole process that ends exchanges past their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Exchange]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, exchange: _Exchange) -> None:
        with self._cond:
            heapq.heappush(self._heap, (exchange.deadline, next(self._order), exchange))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is exchange:
                self._cond.notify()

    def disarm(self, exchange: _Exchange) -> None:
        # Under the lock: an exchange is either finished or expired, never both halfway.
        with self._cond:
            exchange.done = True

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                exchange = heapq.heappop(self._heap)[2]
                if not exchange.expire():
                    retry_at = time.monotonic() + 0.5
                    heapq.heappush(self._heap, (retry_at, next(self._order), exchange))


_WATCHDOG = _Watchdog()
# The exchange the current thread is sending, so the connection can name itself to it.
_in_flight = threading.local()


class _WatchedHTTPConnection(HTTPConnection):
    @override
    def request(self, *args: t.Any, **kwargs: t.Any) -> None:
        _register(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    @override
    def request(self, *args: t.Any, **kwargs: t.Any) -> None:
        _register(self)
        super().request(*args, **kwargs)


def _register(connection: HTTPConnection) -> None:
    exchange = getattr(_in_flight, "exchange", None)
    if exchange is not None:
        exchange.connection = connection


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections (direct or through an http proxy) the watchdog sees."""

    @override
    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    @override
    def proxy_manager_for(self, proxy: str, **proxy_kwargs: t.Any) -> t.Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools have classes of their own
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


# --- the session -------------------------------------------------------------------------
class TransportSession(requests.Session):
    """The Session of every API and token call (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.mount("https://", _WatchedAdapter())
        self.mount("http://", _WatchedAdapter())

    @override
    def get_redirect_target(self, resp: requests.Response) -> str | None:
        # No redirect is ever followed, whatever a caller asks: requests would otherwise
        # also read a redirect's whole body before ``send`` could look at it.
        return None

    @override
    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        settings = self.merge_environment_settings(
            request.url or "",
            dict(kwargs.get("proxies") or {}),
            True,
            kwargs.get("verify"),
            kwargs.get("cert"),
        )
        kwargs.update(settings, allow_redirects=False, stream=True)
        exchange = _Exchange(time.monotonic() + _deadline_seconds(kwargs.get("timeout")))
        _in_flight.exchange = exchange
        _WATCHDOG.arm(exchange)
        try:
            response = super().send(request, **kwargs)
            _in_flight.exchange = None
            if 300 <= response.status_code < 400:
                response.close()
                raise RedirectRefused(response)
            # Response.content's own cache (requests has no public setter): filled here in
            # large pieces, capped, and read as usual by everything downstream.
            response._content = _read_capped(response, exchange)
        except requests.RequestException:
            if exchange.expired:
                raise ResponseDeadlineExceeded(request=request) from None
            raise
        finally:
            _in_flight.exchange = None
            _WATCHDOG.disarm(exchange)
        if exchange.expired:
            raise ResponseDeadlineExceeded(request=request)
        return response


def _deadline_seconds(timeout: t.Any) -> float:
    seconds = DEFAULT_TIMEOUT_SECONDS
    if isinstance(timeout, (int, float)) and timeout > 0:
        seconds = float(timeout)
    elif isinstance(timeout, tuple):
        seconds = float(sum(part for part in timeout if isinstance(part, (int, float))))
    return seconds * DEADLINE_FACTOR


def _read_capped(response: requests.Response, exchange: _Exchange) -> bytes:
    """What ``Response.content`` does, in large pieces, stopping past MAX_BODY_BYTES."""
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    length = response.headers.get("Content-Length") or ""
    if encoding == "identity" and length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
        response.close()
        raise BodyTooLarge(response)
    body = io.BytesIO()  # getvalue() hands over its buffer: no second copy of the body
    for piece in response.iter_content(BODY_READ_SIZE):
        body.write(piece)
        if body.tell() > MAX_BODY_BYTES:
            response.close()
            raise BodyTooLarge(response)
        if exchange.expired:
            response.close()
            raise ResponseDeadlineExceeded(response=response)
    return body.getvalue()
