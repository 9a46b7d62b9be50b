"""Downloading a model file over HTTP(S): fails fast offline and says what the product does without it.

Shared by the stages that fetch models (ASR's Vosk models, TTS's Piper voices); verifying what
arrived and installing it is the caller's job.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from voicebot.errors import VoicebotError


class ModelFetchError(VoicebotError):
    """A model could not be downloaded or verified; nothing was installed."""


def _resolves_within(host: str, timeout_s: float) -> bool:
    """Name lookup ignores socket timeouts and can block for tens of seconds on an offline machine."""
    resolved: list[bool] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, None)
            resolved.append(True)
        except OSError:
            resolved.append(False)

    lookup = threading.Thread(target=resolve, daemon=True)
    lookup.start()
    lookup.join(timeout_s)
    return resolved == [True]


def download(url: str, path: Path, timeout_s: float, fallback: str) -> str:
    """Streams ``url`` into ``path``; returns the SHA-256 of what arrived.

    ``timeout_s`` bounds the name lookup and each connect/read. ``fallback`` is the sentence saying
    what the product does without the model (e.g. "speech recognition will use the Whisper fallback
    where it covers the language"); every ModelFetchError ends with it.
    """
    host = urllib.parse.urlsplit(url).hostname
    unreachable = f"could not reach {host} to download {url}"
    if host and not _resolves_within(host, timeout_s):
        raise ModelFetchError(f"{unreachable} (host name does not resolve); {fallback}")
    try:
        response = urllib.request.urlopen(url, timeout=timeout_s)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ModelFetchError(f"{unreachable} ({getattr(exc, 'reason', exc)}); {fallback}") from exc
    digest = hashlib.sha256()
    with response, path.open("wb") as out:
        try:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise ModelFetchError(f"download of {url} was interrupted ({exc}); {fallback}") from exc
    return digest.hexdigest()
