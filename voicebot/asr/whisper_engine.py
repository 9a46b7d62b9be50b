"""faster-whisper (CTranslate2) recognition of whole utterances.

Whisper decodes a complete 30 s window at a time, so a stream only buffers audio and recognises it
in ``finish()``: re-running it on a growing buffer for partials would cost a full encoder pass
(~0.5 s of CPU for tiny.en) every time, more than the 2-core machine can spare per call.

Recognition hints are accepted and not used. Measured with tiny.en on Piper speech, passing them as
``hotwords`` (the same prompt slot as ``initial_prompt``) made silence and noise come out as loops
of the hint words ("balance, balance, ..."), appended words after real speech ("yes, please
please", "$1,000,000,..."), raised word error on clean speech from 0 to 0.09 and more than doubled
the CPU time per utterance.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from faster_whisper import WhisperModel

from voicebot.asr.base import RecognitionHints, Transcript, Word
from voicebot.audio import SAMPLE_RATE
from voicebot.audio.wav import samples_from_pcm
from voicebot.errors import ModelNotFoundError

logger = logging.getLogger("voicebot.asr")

# Beam 5 vs greedy, tiny.en int8, 1 thread, 10 Piper utterances: same CPU time within noise
# (~0.5 s each), WER 0.023 vs 0.105 at 5 dB SNR (equal on clean audio).
BEAM_SIZE = 5
# Shorter than any word: Whisper pads it to 30 s and tends to invent text for it.
MIN_AUDIO_SECONDS = 0.1
# On noise tiny.en can produce a long, confident repetition ("I'm going to go ahead and put it in
# here, and I'm ...", no_speech_prob 0.96) that faster-whisper keeps because its avg_logprob is high.
# Segments failing either threshold (faster-whisper's defaults) are dropped.
MAX_COMPRESSION_RATIO = 2.4
MAX_NO_SPEECH_PROB = 0.6
# Speech needs about 3-4 tokens a second; the cap stops such a loop (measured: 2.7 s of CPU for 2 s
# of noise) long before Whisper's 224-token limit.
MAX_TOKENS_PER_SECOND = 10


class WhisperStream:
    """Buffers one utterance's audio; recognition happens in ``finish()``."""

    def __init__(self, model: WhisperModel, language: str) -> None:
        self._model = model
        self._language = language
        self._audio = bytearray()

    def accept(self, pcm: bytes) -> str | None:
        self._audio.extend(pcm)
        return None  # no partials: see module docstring

    def peek(self) -> Transcript:
        return self._transcribe(bytes(self._audio))

    def finish(self) -> Transcript:
        return self.peek()  # nothing to flush: the whole utterance is in the buffer

    def _transcribe(self, audio: bytes) -> Transcript:
        seconds = len(audio) / (SAMPLE_RATE * 2)
        if seconds < MIN_AUDIO_SECONDS:
            return Transcript(text="", confidence=0.0)
        segments, _info = self._model.transcribe(
            samples_from_pcm(audio),
            language=self._language,
            beam_size=BEAM_SIZE,
            temperature=0.0,  # no sampling fallback: bounded latency; a poor decode shows as low confidence
            vad_filter=False,  # our endpointer already cut the utterance
            condition_on_previous_text=False,
            word_timestamps=True,  # measured ~2 % extra CPU; gives per-word probabilities
            max_new_tokens=10 + int(MAX_TOKENS_PER_SECOND * seconds),
        )
        # transcribe() is lazy: decoding happens here.
        segments = [
            segment
            for segment in segments
            if segment.compression_ratio <= MAX_COMPRESSION_RATIO
            and segment.no_speech_prob <= MAX_NO_SPEECH_PROB
        ]
        text = "".join(segment.text for segment in segments).strip()
        if not text:
            return Transcript(text="", confidence=0.0)
        words = tuple(
            Word(word=word.word.strip(), start=word.start, end=word.end, confidence=word.probability)
            for segment in segments
            for word in segment.words or ()
        )
        # Duration-weighted mean of each segment's token probability, discounted by the model's own
        # belief that the segment holds no speech; zero-length segments still count a little.
        durations = [max(segment.end - segment.start, 0.01) for segment in segments]
        scores = [math.exp(segment.avg_logprob) * (1.0 - segment.no_speech_prob) for segment in segments]
        confidence = sum(d * s for d, s in zip(durations, scores, strict=True)) / sum(durations)
        return Transcript(text=text, confidence=min(max(confidence, 0.0), 1.0), words=words)


class WhisperRecognizer:
    """A faster-whisper model loaded once; ``num_workers`` lets that many calls transcribe at once."""

    name = "whisper"

    def __init__(self, model_path: Path, language: str = "en", threads: int = 1, workers: int = 2) -> None:
        if not (model_path / "model.bin").is_file():
            raise ModelNotFoundError(f"faster-whisper model not found: {model_path} has no model.bin")
        self.language = language
        self.model = WhisperModel(
            str(model_path), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=workers
        )
        logger.info(
            "Whisper model %s loaded (%s, %d threads, %d workers)", model_path, language, threads, workers
        )

    def open_stream(self, hints: RecognitionHints | None = None) -> WhisperStream:
        return WhisperStream(self.model, self.language)  # hints unused: see module docstring
