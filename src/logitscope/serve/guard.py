"""ASGI middleware for what a local server must refuse before any route runs.

- **Host header** (DNS rebinding, as Jupyter does): a page on ``evil.example`` whose DNS later points
  at 127.0.0.1 sends ``Host: evil.example``; only the bound host, ``localhost``, loopback addresses
  and names passed with ``--allow-host`` are accepted. When bound to all interfaces
  (``0.0.0.0``/``::``) any IP-literal Host is accepted too: a rebinding attack needs a name.
- **Origin**: a cross-site ``fetch`` carries ``Origin``; one whose host is not accepted is refused.
- **Body size**: bodies over the limit get 413 without being buffered beyond it.
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

LOOPBACK = {"localhost", "127.0.0.1", "::1"}
ALL_INTERFACES = {"0.0.0.0", "::", ""}


def host_name(value: str) -> str:
    """``"example.com:8000"`` → ``"example.com"``, ``"[::1]:8000"`` → ``"::1"`` (lower-cased)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` names a server bound to ``bind`` accepts.

    Args:
        bind: the address the server listens on.
        extra: further names (``--allow-host``).
    """

    def __init__(self, bind: str, extra=()) -> None:
        self.names = LOOPBACK | {host_name(bind)} | {host_name(h) for h in extra}
        self.any_ip = host_name(bind) in ALL_INTERFACES or bind in ALL_INTERFACES

    def allows(self, name: str) -> bool:
        if name in self.names:
            return True
        return _is_ip(name) and (self.any_ip or ipaddress.ip_address(name).is_loopback)


async def _send_json(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Refuse foreign Host/Origin headers (403) and oversized bodies (413) before the app sees them.

    Args:
        app: the ASGI app.
        policy: accepted host names.
        max_body: largest request body in bytes.
        headers: added to every response (security headers).
    """

    def __init__(self, app, *, policy: HostPolicy, max_body: int, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.policy = policy
        self.max_body = max_body
        self.extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        inner_send = send

        async def send(message):  # noqa: F811 - add the security headers to every response
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message = dict(
                    message, headers=list(message.get("headers", [])) + [h for h in self.extra if h[0] not in have]
                )
            await inner_send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = host_name(headers.get("host", ""))
        if not self.policy.allows(host):
            return await _send_json(
                send,
                403,
                f"Host {headers.get('host', '')!r} is not allowed (DNS-rebinding protection); open the URL "
                "printed at start, or add the name with --allow-host",
            )
        origin = headers.get("origin")
        if origin is not None and not self.policy.allows(host_name(urlsplit(origin).netloc)):
            return await _send_json(send, 403, f"cross-origin request from {origin!r} refused")
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await _send_json(send, 413, f"request body over {self.max_body} bytes")
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:  # read the (bounded) body once, then replay it to the app
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await _send_json(send, 413, f"request body over {self.max_body} bytes")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
