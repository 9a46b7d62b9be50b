"""Shared, expensive fixtures: engines are loaded once per test session and shared by all tests."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicebot.config import Config, load_config
from voicebot.demo.bank import AcmeBank, seed
from voicebot.engines import Engines, load_engines, load_synthesizer
from voicebot.nlu.rasa_engine import train
from voicebot.tts.base import Synthesizer


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The project's settings, with the call store and demo bank in a scratch folder."""
    config = load_config()
    # Telephony listens on free ports, so servers of several tests (and a running `make run`) coexist.
    telephony = config.telephony.replace(
        sip=config.telephony.sip.replace(port=0), audiosocket=config.telephony.audiosocket.replace(port=0)
    )
    return config.replace(data_dir=str(tmp_path_factory.mktemp("var")), telephony=telephony)


@pytest.fixture(scope="session")
def engines(config: Config) -> Engines:
    data_dir = config.path(config.nlu.data_dir)
    train(config.language, data_dir, config.path(config.nlu.models_dir))  # no-op when up to date
    return load_engines(config)


@pytest.fixture(scope="session")
def caller_voice(config: Config) -> Synthesizer:
    """Scripted callers speak with Piper a little slower than the bot."""
    return load_synthesizer(config, config.language, length_scale=1.1)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "bank.sqlite3"
    seed(path)
    return path


@pytest.fixture
def db_path(seeded_template: Path, tmp_path: Path) -> Path:
    """A fresh demo bank per test: a copy of one seeded database (seeding hashes PINs slowly on purpose)."""
    path = tmp_path / seeded_template.name
    shutil.copyfile(seeded_template, path)
    return path


@pytest.fixture
def bank(db_path: Path) -> AcmeBank:
    """The demo bank on a fresh copy of its seeded database."""
    return AcmeBank(db_path)


@pytest.fixture
def loopback_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on 127.0.0.1 standing in for a model host; yields (base URL, served folder)."""
    served = tmp_path / "served"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=served)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served
    server.shutdown()
    server.server_close()
