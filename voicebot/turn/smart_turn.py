"""Smart Turn v3.2 (pipecat, BSD-2): the probability that the caller's turn is complete, from the
last 8 s of their audio.

The model file travels inside the ``pipecat-ai`` wheel, whose dependencies conflict with Rasa 3.6's
pins, so provisioning downloads the wheel without dependencies and keeps only the ONNX file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime
from faster_whisper.feature_extractor import FeatureExtractor

from voicebot.audio import SAMPLE_RATE
from voicebot.audio.wav import samples_from_pcm
from voicebot.errors import ModelNotFoundError, VoicebotError

logger = logging.getLogger("voicebot.turn")

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
WHEEL = "pipecat-ai==0.0.108"
WHEEL_MEMBER = f"pipecat/audio/turn/smart_turn/data/{MODEL_FILE}"
WINDOW_SECONDS = 8  # the model's input: the last 8 s, zero-padded in front
FETCH_TIMEOUT_S = 60


class TurnModelFetchError(VoicebotError):
    """The end-of-turn model could not be provisioned; nothing was installed."""


def provision_smart_turn(dest: Path) -> Path:
    """Puts ``MODEL_FILE`` into ``dest`` from the pipecat wheel, checked against its pinned
    SHA-256; an installed file is returned as it is."""
    target = dest / MODEL_FILE
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".smart-turn.") as staging:
        download = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", staging, WHEEL]
        try:
            subprocess.run(download, check=True, capture_output=True, timeout=FETCH_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = (getattr(exc, "stderr", b"") or b"").decode(errors="replace").strip()[-300:]
            raise TurnModelFetchError(
                f"could not download {WHEEL} for the Smart Turn model ({stderr or exc}); "
                "end of turn falls back to silence alone"
            ) from exc
        wheel = next(Path(staging).glob("pipecat_ai-*.whl"))
        try:
            with zipfile.ZipFile(wheel) as archive:
                payload = archive.read(WHEEL_MEMBER)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise TurnModelFetchError(f"{wheel.name} holds no {WHEEL_MEMBER}; nothing installed") from exc
        actual = hashlib.sha256(payload).hexdigest()
        if actual != MODEL_SHA256:
            raise TurnModelFetchError(
                f"{MODEL_FILE} from {wheel.name} has SHA-256 {actual}, expected {MODEL_SHA256}: "
                "nothing installed"
            )
        staged = Path(staging) / MODEL_FILE
        staged.write_bytes(payload)
        os.replace(staged, target)
    logger.info("installed %s into %s", MODEL_FILE, dest)
    return target


class SmartTurn:
    """The loaded model; ``complete()`` is thread-safe (onnxruntime sessions are)."""

    name = "smart-turn-v3.2"

    def __init__(self, path: Path, threads: int = 1) -> None:
        if not path.is_file():
            raise ModelNotFoundError(f"end-of-turn model not found: {path} (run `voicebot models provision`)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's errors have no common public base class
            raise ModelNotFoundError(f"end-of-turn model {path} cannot be loaded ({exc})") from exc
        self._features = FeatureExtractor(feature_size=80, chunk_length=WINDOW_SECONDS)
        self._window = WINDOW_SECONDS * SAMPLE_RATE
        self.path = path

    def complete(self, pcm: bytes) -> float:
        """Probability that the turn whose audio (16 kHz s16le, ending at the pause) is ``pcm`` is over."""
        samples = samples_from_pcm(pcm)[-self._window :]
        padded = np.zeros(self._window, dtype=np.float32)
        padded[self._window - len(samples) :] = samples
        # Whisper-style normalisation of the waveform, as the model was trained with.
        padded = (padded - padded.mean()) / np.sqrt(padded.var() + 1e-7)
        features = self._features(padded, padding=0)[:, : WINDOW_SECONDS * 100]
        (probability,) = self._session.run(None, {"input_features": features[np.newaxis].astype(np.float32)})
        return float(np.asarray(probability).reshape(-1)[0])
