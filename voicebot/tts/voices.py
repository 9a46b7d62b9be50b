"""Fetching Piper voices from the official piper-voices repository, pinned to one revision."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from voicebot.downloads import ModelFetchError, download
from voicebot.tts.piper_engine import CONFIG_SUFFIX, MODEL_SUFFIX

logger = logging.getLogger(__name__)

# rhasspy/piper-voices at its tag v1.0.0: the files under a tag never change.
PIPER_VOICES_URL = "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0/"
VOICES_INDEX = "voices.json"  # per voice: its files with size_bytes and md5_digest
FETCH_TIMEOUT_S = 5.0  # per name lookup/connect/read; an offline machine must not stall `make setup`
# SHA-256 of voice files by their path in the repository (e.g.
# "es/es_MX/claude/high/es_MX-claude-high.onnx"). Empty for now: the digests could not be computed
# where this was written (no internet). A file pinned here is checked against its pin alone; any
# other file against the MD5 that the same revision's voices.json gives for it.
PINNED_SHA256: dict[str, str] = {}

QUALITIES = ("x_low", "low", "medium", "high")
_VOICE_NAME = re.compile(
    rf"(?P<family>[a-z]{{2,3}})_[A-Z]{{2}}-(?P<speaker>\w+)-(?P<quality>{'|'.join(QUALITIES)})"
)


def voice_folder(name: str) -> str:
    """The repository folder of voice ``name``: ``es_MX-claude-high`` -> ``es/es_MX/claude/high/``."""
    match = _VOICE_NAME.fullmatch(name)
    if match is None:
        raise ModelFetchError(
            f"{name!r} is not a Piper voice name: expected <language>_<REGION>-<speaker>-<quality> "
            f"(e.g. es_MX-claude-high) with quality one of {', '.join(QUALITIES)}"
        )
    locale = name.split("-", 1)[0]
    return f"{match['family']}/{locale}/{match['speaker']}/{match['quality']}/"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _listed_files(index_path: Path, url: str, name: str, fallback: str) -> dict[str, Any]:
    """The ``files`` entry of voice ``name`` in the downloaded voices.json."""
    try:
        voices = json.loads(index_path.read_text(encoding="utf-8"))
        files = voices[name]["files"] if name in voices else None
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFetchError(
            f"{url} is not a piper-voices index ({exc}); nothing installed; {fallback}"
        ) from exc
    if not isinstance(files, dict):
        raise ModelFetchError(
            f"voice {name} is not listed in {url}; pick another voice or a newer revision; {fallback}"
        )
    return files


def fetch_piper_voice(
    name: str,
    dest: Path,
    *,
    base_url: str = PIPER_VOICES_URL,
    timeout_s: float = FETCH_TIMEOUT_S,
) -> Path:
    """Downloads Piper voice ``name`` (``<language>_<REGION>-<speaker>-<quality>``) into ``dest``.

    The files are ``<base_url><language>/<language>_<REGION>/<speaker>/<quality>/<name>.onnx`` and
    ``.onnx.json``, from the piper-voices revision pinned in ``PIPER_VOICES_URL``. Verification: a
    file with a digest in ``PINNED_SHA256`` must match that SHA-256; every other file must match the
    size and MD5 that the same revision's ``voices.json`` lists for it (the repository publishes
    MD5 only). ``dest`` is normally the configured ``tts.voices_dir``. Everything is staged in a
    hidden folder inside ``dest`` and moved in with ``os.replace`` (model first, its JSON config,
    which makes the voice visible, last), so a failure leaves no voice behind.
    Returns the model path; a voice already in ``dest`` is returned without downloading.
    ModelFetchError for a malformed name, an unreachable host or a file that does not verify.
    """
    folder = voice_folder(name)
    model, config = dest / f"{name}{MODEL_SUFFIX}", dest / f"{name}{CONFIG_SUFFIX}"
    if model.is_file() and config.is_file():
        return model
    fallback = (
        f"language {folder.split('/')[0]} will be spoken by its espeak-ng fallback voice instead of {name}"
    )
    files = [f"{folder}{name}{MODEL_SUFFIX}", f"{folder}{name}{CONFIG_SUFFIX}"]
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{name}.") as staging:
        listed: dict[str, Any] = {}
        if any(path not in PINNED_SHA256 for path in files):
            index_url = f"{base_url}{VOICES_INDEX}"
            index_path = Path(staging) / VOICES_INDEX
            download(index_url, index_path, timeout_s, fallback)
            listed = _listed_files(index_path, index_url, name, fallback)
        staged = []
        for path in files:
            url = f"{base_url}{urllib.parse.quote(path)}"
            local = Path(staging) / path.rsplit("/", 1)[1]
            sha256 = download(url, local, timeout_s, fallback)
            _verify(url, local, sha256, PINNED_SHA256.get(path), listed.get(path), fallback)
            staged.append(local)
        for local in staged:  # model, then config
            os.replace(local, dest / local.name)
    logger.info("installed Piper voice %s into %s", name, dest)
    return model


def _verify(url: str, local: Path, sha256: str, pinned: str | None, listed: Any, fallback: str) -> None:
    discarded = f"download discarded, nothing installed; {fallback}"
    if pinned is not None:
        if sha256 != pinned:
            raise ModelFetchError(f"{url} has SHA-256 {sha256}, expected {pinned}: {discarded}")
        return
    if not isinstance(listed, dict) or not isinstance(listed.get("md5_digest"), str):
        raise ModelFetchError(f"{VOICES_INDEX} lists no MD5 for {url}, so it cannot be verified: {discarded}")
    size = local.stat().st_size
    if isinstance(listed.get("size_bytes"), int) and size != listed["size_bytes"]:
        raise ModelFetchError(f"{url} has {size} bytes, expected {listed['size_bytes']}: {discarded}")
    md5 = _md5(local)
    if md5 != listed["md5_digest"]:
        raise ModelFetchError(f"{url} has MD5 {md5}, expected {listed['md5_digest']}: {discarded}")
