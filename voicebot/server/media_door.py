"""Who may open the media WebSocket, decided before the upgrade (docs/media-websocket.md).

- A browser (the request has an Origin header) must come from an allowed origin (``media_origins``;
  by default the server's own) and bring a token: the softphone page's, signed and short-lived, which
  another site's page cannot read. This stops a web page from using its visitors' browsers to call.
- A gateway (no Origin) brings the gateway token (``media_gateway_token``) as ``Authorization:
  Bearer`` or ``?token=``; with none configured, it must connect from ``media_gateway_networks``.
- At most ``max_media_connections`` at once, and ``max_media_connections_per_address`` of those
  admitted by a softphone token from one address (a gateway carries all its calls from one).

A refusal is 403 (who) or 503 (how many), logged, and counted in
``voicebot_protocol_failures_total{line="media", reason=...}`` (see voicebot/transports/line.py).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from aiohttp import web

from voicebot.config import ServerConfig
from voicebot.server.auth import SignedTokens, same_secret
from voicebot.transports.line import count_failure

log = logging.getLogger("voicebot.media")
RETRY_AFTER_S = 5  # what a refusal for capacity tells the client to wait


class MediaDoor:
    def __init__(self, settings: ServerConfig, tokens: SignedTokens) -> None:
        self.settings = settings
        self.tokens = tokens
        self.networks = [ipaddress.ip_network(n, strict=False) for n in settings.media_gateway_networks]
        self.open = 0  # media connections now, every kind
        self.by_address: Counter[str] = Counter()  # those admitted by a softphone token, by address

    def softphone_token(self) -> str:
        return self.tokens.issue(self.settings.media_token_ttl_s, time.time())

    @contextmanager
    def admit(self, request: web.Request) -> Iterator[None]:
        """Holds a place for the connection while the block runs; raises the refusal (403 or 503)."""
        address = request.remote or ""
        refusal, by_softphone = self._who(request, address)
        if refusal is not None:
            self._refuse(address, refusal, web.HTTPForbidden(text=f"media connection refused: {refusal}"))
        if self.open >= self.settings.max_media_connections:
            self._refuse(address, "over_capacity", self._busy("too many media connections"))
        if by_softphone and self.by_address[address] >= self.settings.max_media_connections_per_address:
            self._refuse(address, "address_over_capacity", self._busy("too many media connections from here"))
        self.open += 1
        if by_softphone:
            self.by_address[address] += 1
        try:
            yield
        finally:
            self.open -= 1
            if by_softphone:
                self.by_address[address] -= 1
                if not self.by_address[address]:
                    del self.by_address[address]

    def _who(self, request: web.Request, address: str) -> tuple[str | None, bool]:
        """The refusal's reason (None: admitted), and whether a softphone token admitted it."""
        origin = request.headers.get("Origin")
        if origin is not None and not self._allowed_origin(origin, request):
            return "foreign_origin", False
        token = _presented_token(request)
        gateway_token = self.settings.media_gateway_token
        if token is not None:
            if gateway_token is not None and same_secret(token, gateway_token):
                return None, False
            verdict = self.tokens.check(token, time.time()) if self.settings.softphone else SignedTokens.BAD
            if verdict == SignedTokens.VALID:
                return None, True
            return ("expired_token" if verdict == SignedTokens.EXPIRED else "bad_token"), False
        if origin is not None or gateway_token is not None:
            return "no_token", False
        return (None if self._trusted_network(address) else "address_not_allowed"), False

    def _allowed_origin(self, origin: str, request: web.Request) -> bool:
        allowed = self.settings.media_origins or [f"{request.scheme}://{request.host}"]
        return origin.lower() in (entry.lower() for entry in allowed)

    def _trusted_network(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # not an IP connection (a Unix socket): nothing to trust it by
            return False
        return any(ip in network for network in self.networks)

    @staticmethod
    def _busy(text: str) -> web.HTTPServiceUnavailable:
        return web.HTTPServiceUnavailable(text=text, headers={"Retry-After": str(RETRY_AFTER_S)})

    @staticmethod
    def _refuse(address: str, reason: str, response: web.HTTPException) -> NoReturn:
        log.warning("media connection from %s refused: %s", address or "?", reason)
        count_failure("media", reason)
        raise response


def _presented_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme == "Bearer" and value:
        return value
    return request.query.get("token")
