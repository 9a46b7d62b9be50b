"""espeak-ng (Debian's `espeak-ng`) as a second synthesis engine: formant speech in many languages
and voice variants. It serves languages with no Piper voice installed, and it gives the tests and
benchmarks callers that do not sound like the bot's own Piper voice.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator

import soundfile

from voicebot.audio import SAMPLE_RATE
from voicebot.audio.codecs import resample
from voicebot.errors import ModelNotFoundError, VoicebotError

# Sentence ends: espeak-ng speaks a whole text at once, so sentences are split here to stream them.
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
SYNTHESIS_TIMEOUT_S = 30


class EspeakError(VoicebotError):
    """espeak-ng failed on a text."""


class EspeakSynthesizer:
    """``voice`` is an espeak-ng voice, optionally with a variant (``en-us``, ``en-gb+f3``, ``es``);
    ``speed`` in words per minute, ``pitch`` 0-99."""

    def __init__(self, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise ModelNotFoundError("espeak-ng is not installed (Debian package espeak-ng; `make setup`)")
        self._binary = binary
        self.voice = voice
        self.speed = speed
        self.pitch = pitch
        self.name = f"espeak-ng {voice} s{speed} p{pitch}"

    def synthesize(self, text: str) -> Iterator[bytes]:
        """16 kHz mono s16le, one chunk per sentence."""
        for sentence in _SENTENCE_END.split(text.strip()):
            if sentence:
                yield self._speak(sentence)

    def _speak(self, text: str) -> bytes:
        command = [self._binary, "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch), "--stdout"]
        try:
            # The text goes on stdin so that one starting with "-" is not read as an option.
            done = subprocess.run(
                command, input=text.encode(), capture_output=True, check=True, timeout=SYNTHESIS_TIMEOUT_S
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = (getattr(exc, "stderr", b"") or b"").decode(errors="replace").strip()
            raise EspeakError(f"espeak-ng voice {self.voice!r} failed: {stderr or exc}") from exc
        samples, rate = soundfile.read(io.BytesIO(done.stdout), dtype="int16")
        return resample(samples.tobytes(), rate, SAMPLE_RATE)
