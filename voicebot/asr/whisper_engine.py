"""Whisper (CTranslate2) recognition of whole utterances, with the encoder given only what the
utterance needs.

Whisper is trained on 30 s windows, and faster-whisper always encodes one, whatever the utterance's
length: most of the cost of a 2 s answer is the encoder reading 28 s of padding. CTranslate2 accepts
shorter encoder input, so a stream cuts the log-mel features to the utterance plus
``margin_s`` of padding (measured with scripts/bench_asr.py: see README; too short a margin makes
Whisper lose or invent words). A stream buffers audio and recognises it in ``peek()``/``finish()``:
there are no partials, since each would cost an encoder pass.

Recognition hints are accepted and not used as prompts: measured with tiny.en, passing them as
hot-words made silence and noise come out as loops of the hint words and raised word error on
clean speech. The decoder's n-best list is returned as ``alternatives`` instead, for the dialogue
to match against what it expects.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import zlib
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from voicebot.asr.base import RecognitionHints, Transcript
from voicebot.audio import SAMPLE_RATE
from voicebot.audio.wav import samples_from_pcm
from voicebot.errors import ModelNotFoundError

logger = logging.getLogger("voicebot.asr")

# Beam 5 vs greedy, tiny.en int8, 1 thread, 10 Piper utterances: same CPU time within noise,
# WER 0.023 vs 0.105 at 5 dB SNR (equal on clean audio).
BEAM_SIZE = 5
N_BEST = BEAM_SIZE  # hypotheses returned: the best as the transcript, the others as alternatives
# Shorter than any word: Whisper tends to invent text for it.
MIN_AUDIO_SECONDS = 0.1
FRAMES_PER_SECOND = 100  # log-mel frames (10 ms hop)
MAX_FRAMES = 3000  # Whisper's 30 s window
# On noise Whisper can produce a long, confident repetition; text that compresses too well
# (faster-whisper's default limit) or that the model itself thinks is not speech is dropped.
MAX_COMPRESSION_RATIO = 2.4
MAX_NO_SPEECH_PROB = 0.6
# Speech needs about 3-4 tokens a second; the cap stops a loop long before Whisper's 448 tokens.
MAX_TOKENS_PER_SECOND = 10


# A phrase said again and again ("Can I go back? Can I go back?"): with the encoder input cut
# short, Whisper sometimes decodes a short utterance two to four times over (measured by
# scripts/bench_asr.py: 1-4 in 60 utterances), too short a loop for the compression-ratio check.
_REPEATED_PHRASE = re.compile(r"^\s*(.+?)(?:[\s,.!?;:-]+\1)+[\s,.!?;:-]*$", re.IGNORECASE | re.DOTALL)
# More words than a caller says in the time: callers speak ~2-3.5 words a second.
MAX_WORDS_PER_SECOND = 3.0


def collapse_repeats(text: str, speech_seconds: float) -> str:
    """One copy of a phrase that makes up the whole text several times over, when the audio is too
    short to hold them all. Digits are never collapsed: "1 2 1 2" may be an account number."""
    match = _REPEATED_PHRASE.match(text)
    if match is None or any(c.isdigit() for c in text):
        return text
    if len(text.split()) <= MAX_WORDS_PER_SECOND * speech_seconds:
        return text
    return match[1].strip()


def _identified(scores: list[tuple[str, float]], languages: tuple[str, ...]) -> tuple[str, float]:
    """The most likely of ``languages`` by the model's language-token scores ("<|es|>", p), with its
    probability among them alone."""
    among = {token.strip("<|>"): p for token, p in scores if token.strip("<|>") in languages}
    total = sum(among.values())
    if not among or total <= 0:
        return languages[0], 0.0
    best = max(among, key=among.__getitem__)
    return best, among[best] / total


def _compression_ratio(text: str) -> float:
    encoded = text.encode("utf-8")
    return len(encoded) / len(zlib.compress(encoded))


class WhisperStream:
    """Buffers one utterance's audio; recognition happens in ``peek()`` and ``finish()``."""

    def __init__(
        self, recognizer: WhisperRecognizer, identify: tuple[str, ...] = (), threshold: float = 0.0
    ) -> None:
        self._recognizer = recognizer
        self._identify = identify
        self._threshold = threshold
        self._audio = bytearray()

    def accept(self, pcm: bytes) -> str | None:
        self._audio.extend(pcm)
        return None  # no partials: see module docstring

    def peek(self) -> Transcript:
        return self._recognizer.transcribe(bytes(self._audio), self._identify, self._threshold)

    def finish(self) -> Transcript:
        return self.peek()  # nothing to flush: the whole utterance is in the buffer


class WhisperRecognizer:
    """A Whisper model loaded once; ``workers`` calls can transcribe at the same time. A multilingual
    model serves every language: :meth:`for_language` gives a recognizer sharing the loaded model."""

    name = "whisper"

    def __init__(
        self,
        model_path: Path,
        language: str = "en",
        *,
        threads: int = 1,
        workers: int = 2,
        margin_s: float | None = 5.0,
    ) -> None:
        """``margin_s``: padding the encoder sees after the utterance; None encodes the full 30 s."""
        if not (model_path / "model.bin").is_file():
            raise ModelNotFoundError(f"Whisper model not found: {model_path} has no model.bin")
        self.model_name = model_path.name
        self.margin_s = margin_s
        # faster-whisper loads the CTranslate2 model, its tokenizer and the feature extractor;
        # decoding is called directly so the encoder input can be cut.
        loaded = WhisperModel(
            str(model_path), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=workers
        )
        self._model: ctranslate2.models.Whisper = loaded.model
        self._features = loaded.feature_extractor
        self._hf_tokenizer = loaded.hf_tokenizer
        self._prompts: dict[str, list[int]] = {}  # decoder prompt by language, shared by every view
        self.multilingual = self._model.is_multilingual
        tokenizer = self._decoder = self._tokenizer(language)  # decoding is the same in every language
        # faster-whisper's default set (get_suppressed_tokens with [-1]); the same in every language.
        self._suppress = sorted(get_suppressed_tokens(tokenizer, [-1]))
        self.language = language
        logger.info(
            "Whisper %s loaded (%s, %d threads, %d workers, margin %s s)",
            model_path.name,
            language,
            threads,
            workers,
            margin_s,
        )

    def for_language(self, language: str) -> WhisperRecognizer:
        """This model, transcribing ``language`` (no second copy of the model)."""
        self._tokenizer(language)
        view = copy.copy(self)
        view.language = language
        return view

    def _tokenizer(self, language: str) -> Tokenizer:
        if not self.multilingual and language != "en":
            raise ModelNotFoundError(f"Whisper model {self.model_name} is English-only, not {language!r}")
        tokenizer = Tokenizer(
            self._hf_tokenizer,
            self.multilingual,
            task="transcribe",
            language=language if self.multilingual else None,
        )
        self._prompts.setdefault(language, [*tokenizer.sot_sequence, tokenizer.no_timestamps])
        return tokenizer

    def open_stream(self, hints: RecognitionHints | None = None) -> WhisperStream:
        # Phrase hints unused: see module docstring. Languages to identify among: used.
        if hints is None or not self.multilingual:
            return WhisperStream(self)
        identify = tuple(language for language in hints.languages if language in self._prompts)
        return WhisperStream(self, identify, hints.language_threshold)

    def transcribe(self, pcm: bytes, identify: tuple[str, ...] = (), threshold: float = 0.0) -> Transcript:
        """The utterance in :attr:`language`, or, given ``identify``, in whichever of those languages
        (ones this recognizer was made for) the model hears with ``threshold`` or more: encoded
        once for both."""
        seconds = len(pcm) / (SAMPLE_RATE * 2)
        if seconds < MIN_AUDIO_SECONDS:
            return Transcript(text="", confidence=0.0)
        features = ctranslate2.StorageView.from_array(self._encoder_input(samples_from_pcm(pcm))[np.newaxis])
        heard, probability = self.language, 0.0
        if len(identify) > 1:
            features = self._model.encode(features, to_cpu=False)
            heard, probability = _identified(self._model.detect_language(features)[0], identify)
        language = heard if probability >= threshold else self.language
        prompt = self._prompts[language]
        result = self._model.generate(
            features,
            [prompt],
            beam_size=BEAM_SIZE,
            num_hypotheses=N_BEST,
            max_length=len(prompt) + 10 + int(MAX_TOKENS_PER_SECOND * seconds),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        identified = (
            {"language": heard, "language_probability": probability, "text_language": language}
            if identify
            else {}
        )
        if result.no_speech_prob > MAX_NO_SPEECH_PROB:
            return Transcript(text="", confidence=0.0)
        hypotheses = []
        for tokens, score in zip(result.sequences_ids, result.scores, strict=True):
            text = collapse_repeats(self._decoder.decode(tokens).strip(), seconds)
            if text and _compression_ratio(text) <= MAX_COMPRESSION_RATIO and text not in hypotheses:
                # The score is the length-normalised log-probability; discounted by the model's own
                # belief that the audio holds no speech.
                hypotheses.append((text, math.exp(score * len(tokens) / (len(tokens) + 1))))
        if not hypotheses:
            return Transcript(text="", confidence=0.0)
        (text, probability), *others = hypotheses
        confidence = probability * (1.0 - result.no_speech_prob)
        return Transcript(
            text=text,
            confidence=min(max(confidence, 0.0), 1.0),
            alternatives=tuple(other for other, _ in others),
            **identified,  # type: ignore[arg-type]
        )

    def _encoder_input(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel features of the utterance plus the margin of silence (or the full window)."""
        utterance_frames = len(samples) * FRAMES_PER_SECOND // SAMPLE_RATE
        if self.margin_s is None:
            frames = MAX_FRAMES
        else:
            frames = min(MAX_FRAMES, utterance_frames + round(self.margin_s * FRAMES_PER_SECOND))
        frames -= frames % 2  # the encoder's convolution halves the frame count
        padding = max(0, frames * SAMPLE_RATE // FRAMES_PER_SECOND - len(samples))
        features = self._features(samples[: MAX_FRAMES * SAMPLE_RATE // FRAMES_PER_SECOND], padding=padding)
        return np.ascontiguousarray(features[:, :frames], dtype=np.float32)
