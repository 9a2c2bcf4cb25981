"""Which company an OAuth authorization belongs to, told from its ``api_domain``.

Pipedrive answers every token request with the company's host (``api_domain``).
Two spellings of one host (``https://Acme.pipedrive.com/``,
``https://acme.pipedrive.com:443``) are the same company; different hosts, or the
same host on another port (each sandbox company has its own), are not.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def url_identity(url: str | None) -> str | None:
    """A URL reduced to what names a server: lower-case scheme and host, port, path."""
    text = str(url or "").strip()
    if not text:
        return None
    parts = urlsplit(text)
    try:
        port = parts.port
        host = parts.hostname
    except ValueError:
        port, host = None, None
    if not parts.scheme or not host:
        return text.rstrip("/").lower()
    default_port = {"https": 443, "http": 80}.get(parts.scheme.lower())
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def same_company(first: str | None, second: str | None) -> bool:
    """Whether two api_domain values name the same company (both must be known)."""
    return bool(first) and url_identity(first) == url_identity(second)
