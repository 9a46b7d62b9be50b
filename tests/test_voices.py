"""Fetching Piper voices (voicebot.tts.voices) from a loopback stand-in for the piper-voices repository."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
from pathlib import Path

import pytest

from voicebot import cli
from voicebot.config import Config
from voicebot.downloads import ModelFetchError
from voicebot.tts import voices
from voicebot.tts.piper_engine import find_voice
from voicebot.tts.voices import fetch_piper_voice, voice_folder

NAME = "es_MX-claude-high"
FOLDER = "es/es_MX/claude/high/"
FILES = {
    f"{FOLDER}{NAME}.onnx": b"not really an onnx model",
    f"{FOLDER}{NAME}.onnx.json": json.dumps({"audio": {"sample_rate": 22050}}).encode(),
}


def serve_voice(served: Path, *, md5_of: dict[str, str] | None = None, listed: bool = True) -> None:
    """Writes the voice's files and a voices.json like the repository's (md5_of overrides digests)."""
    for path, data in FILES.items():
        (served / path).parent.mkdir(parents=True, exist_ok=True)
        (served / path).write_bytes(data)
    entry = {
        path: {"size_bytes": len(data), "md5_digest": (md5_of or {}).get(path, hashlib.md5(data).hexdigest())}
        for path, data in FILES.items()
    }
    index = {NAME: {"key": NAME, "quality": "high", "files": entry}} if listed else {}
    (served / "voices.json").write_text(json.dumps(index))


def closed_loopback_port() -> int:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return port


def test_the_repository_layout_follows_the_voice_name() -> None:
    assert voice_folder("es_MX-claude-high") == "es/es_MX/claude/high/"
    assert voice_folder("fa_IR-amir-medium") == "fa/fa_IR/amir/medium/"
    assert voice_folder("ca_ES-upc_ona-x_low") == "ca/ca_ES/upc_ona/x_low/"
    assert voices.PIPER_VOICES_URL.endswith("/resolve/v1.0.0/")  # a pinned revision, never main


def test_fetch_installs_a_verified_voice_once(loopback_server: tuple[str, Path]) -> None:
    base_url, served = loopback_server
    serve_voice(served)
    dest = served.parent / "voices"

    path = fetch_piper_voice(NAME, dest, base_url=base_url)

    assert path == dest / f"{NAME}.onnx" and path.read_bytes() == FILES[f"{FOLDER}{NAME}.onnx"]
    assert sorted(p.name for p in dest.iterdir()) == [f"{NAME}.onnx", f"{NAME}.onnx.json"]  # no staging
    assert find_voice(NAME, [dest]) == path
    for file in served.rglob("*"):
        if file.is_file():
            file.unlink()  # a second fetch must not download again
    assert fetch_piper_voice(NAME, dest, base_url=base_url) == path


def test_fetch_rejects_a_file_whose_md5_differs_and_installs_nothing(
    loopback_server: tuple[str, Path],
) -> None:
    base_url, served = loopback_server
    serve_voice(served, md5_of={f"{FOLDER}{NAME}.onnx": "0" * 32})
    dest = served.parent / "voices"

    with pytest.raises(
        ModelFetchError, match=rf"{NAME}\.onnx has MD5 \w+, expected 0{{32}}: download discarded"
    ):
        fetch_piper_voice(NAME, dest, base_url=base_url)
    assert list(dest.iterdir()) == []


def test_fetch_of_a_voice_the_index_does_not_list_installs_nothing(loopback_server: tuple[str, Path]) -> None:
    base_url, served = loopback_server
    serve_voice(served, listed=False)
    dest = served.parent / "voices"

    with pytest.raises(ModelFetchError, match=rf"voice {NAME} is not listed in .*voices\.json"):
        fetch_piper_voice(NAME, dest, base_url=base_url)
    assert list(dest.iterdir()) == []


def test_a_pinned_sha256_wins_over_the_index(
    loopback_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, served = loopback_server
    serve_voice(served)
    (served / "voices.json").unlink()  # with every file pinned, the index is not needed
    dest = served.parent / "voices"
    pins = {path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()}
    monkeypatch.setattr(voices, "PINNED_SHA256", {**pins, f"{FOLDER}{NAME}.onnx": "f" * 64})

    with pytest.raises(ModelFetchError, match=r"SHA-256 \w+, expected f{64}"):
        fetch_piper_voice(NAME, dest, base_url=base_url)
    assert list(dest.iterdir()) == []

    monkeypatch.setattr(voices, "PINNED_SHA256", pins)
    assert fetch_piper_voice(NAME, dest, base_url=base_url).is_file()


def test_fetch_offline_fails_naming_the_host_and_the_espeak_fallback(tmp_path: Path) -> None:
    offline = f"http://127.0.0.1:{closed_loopback_port()}/"

    with pytest.raises(ModelFetchError, match=r"could not reach 127\.0\.0\.1 .*espeak-ng fallback voice"):
        fetch_piper_voice(NAME, tmp_path, base_url=offline)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["es-claude-high", "es_MX-claude", "es_MX-claude-ultra", "../es_MX-x-high"])
def test_a_malformed_voice_name_is_refused_before_any_download(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelFetchError, match=r"is not a Piper voice name: expected <language>_<REGION>"):
        fetch_piper_voice(name, tmp_path / "voices", base_url="http://127.0.0.1:9/")
    assert not (tmp_path / "voices").exists()


def voices_config(voices_dir: Path) -> Config:
    config = Config()
    return config.replace(tts=config.tts.replace(voices_dir=str(voices_dir)))


def test_provision_fetches_only_configured_voices_that_are_missing(tmp_path: Path) -> None:
    config = voices_config(tmp_path)
    (tmp_path / "fa_IR-amir-medium.onnx").write_bytes(b"model")
    (tmp_path / "fa_IR-amir-medium.onnx.json").write_text("{}")

    # en_US-joe-medium is installed as a package, fa by hand: only es is left to fetch.
    assert cli._missing_voices(config) == ["es_MX-claude-high"]


def test_models_fetch_piper_reports_a_bad_name_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(action="fetch", name="piper:not-a-voice")

    assert cli.cmd_models(args, voices_config(tmp_path)) == 1
    assert "'not-a-voice' is not a Piper voice name" in capsys.readouterr().err
