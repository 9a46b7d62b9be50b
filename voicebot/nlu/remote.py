"""NLU from a separate Rasa server (`rasa run --enable-api`), for deployments that keep Rasa's memory
and start-up time out of the telephony process."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from voicebot.errors import VoicebotError
from voicebot.nlu.base import NluResult
from voicebot.nlu.rasa_engine import no_match, result_from_rasa


class RemoteNluError(VoicebotError):
    """The Rasa server could not be reached or answered with an error."""


class RemoteRasaNlu:
    """Parses over HTTP; one connection pool shared by all calls (create and close it in one loop)."""

    name = "remote"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily: aiohttp sessions must be made inside the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def parse(self, text: str) -> NluResult:
        if not text.strip():
            return no_match(text)
        endpoint = f"{self.url}/model/parse"
        try:
            async with self._client().post(endpoint, json={"text": text}) as response:
                if response.status != 200:
                    body = (await response.text())[:200]
                    raise RemoteNluError(f"Rasa server at {endpoint} answered HTTP {response.status}: {body}")
                parse_data: dict[str, Any] = await response.json()
        except asyncio.TimeoutError as exc:
            raise RemoteNluError(
                f"Rasa server at {endpoint} did not answer within {self._timeout.total:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise RemoteNluError(
                f"cannot reach the Rasa server at {endpoint} ({exc}); start it with "
                "`rasa run --enable-api -m models/nlu/<language>` or set nlu.engine: rasa"
            ) from exc
        return result_from_rasa(text, parse_data)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
