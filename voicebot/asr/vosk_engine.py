"""Vosk (Kaldi) streaming recognition with optional runtime grammars.

One ``vosk.Model`` per recognizer, shared by every call; each stream gets its own ``KaldiRecognizer``
so utterances never share decoder state. The VAD decides where an utterance ends: Vosk's own
endpoint flag from ``AcceptWaveform`` is ignored (without a ``Result()`` call Vosk keeps decoding the
whole utterance as one) and ``finish()`` flushes with ``FinalResult()``.

Results carry per-word confidences (``SetWords``) and no alternatives: with ``SetMaxAlternatives``
Vosk switches to an n-best JSON whose words have no confidences and whose scores are unnormalised
lattice costs, which the dialogue's 0-1 confidence thresholds cannot use.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import vosk

from voicebot.asr.base import RecognitionHints, Transcript, Word
from voicebot.audio import SAMPLE_RATE
from voicebot.errors import ModelNotFoundError

logger = logging.getLogger("voicebot.asr")

# Level -1 still prints Kaldi warnings; the two a grammar can trigger (model without runtime graphs,
# word missing from the lexicon) are detected here and logged through `logging` instead.
vosk.SetLogLevel(-2)

# Vosk's garbage word for out-of-grammar speech; models name it differently in their lexicon.
GRAMMAR_UNKNOWN_WORD = "[unk]"
_UNKNOWN_WORD_SYMBOLS = ("[unk]", "<UNK>", "<unk>")


def supports_runtime_grammar(model_path: Path) -> bool:
    """Whether Vosk can compose a grammar at runtime for this model.

    That needs a lookahead graph (``HCLr.fst`` + ``Gr.fst``, small and "-lgraph" models). A model with
    a static ``HCLG.fst`` (the large ones) makes Vosk log "Runtime graphs are not supported by this
    model" and decode the full vocabulary anyway. Vosk itself loads HCLG first when both exist.
    """
    # Models with am/final.mdl keep their graph under graph/; older ones keep everything at the top.
    graph_dir = model_path / "graph" if (model_path / "am" / "final.mdl").exists() else model_path
    return not (graph_dir / "HCLG.fst").exists() and (graph_dir / "HCLr.fst").exists()


class VoskStream:
    """One utterance on its own KaldiRecognizer."""

    def __init__(self, recognizer: vosk.KaldiRecognizer, unknown_word: str | None) -> None:
        self._recognizer = recognizer
        self._unknown_word = unknown_word
        self._partial = ""

    def _known_words(self, text: str) -> list[str]:
        return [word for word in text.split() if word != self._unknown_word]

    def accept(self, pcm: bytes) -> str | None:
        # The return value is Vosk's endpointer, which we deliberately ignore (see module docstring).
        self._recognizer.AcceptWaveform(pcm)
        partial = " ".join(self._known_words(json.loads(self._recognizer.PartialResult())["partial"]))
        if not partial or partial == self._partial:
            return None
        self._partial = partial
        return partial

    def peek(self) -> None:
        return None  # Vosk decodes while the caller speaks: its final result is already cheap

    def finish(self) -> Transcript:
        result = json.loads(self._recognizer.FinalResult())
        recognised = result.get("result", [])
        words = tuple(
            Word(word=entry["word"], start=entry["start"], end=entry["end"], confidence=entry["conf"])
            for entry in recognised
            if entry["word"] != self._unknown_word
        )
        # Out-of-grammar stretches count as zero-confidence words, so they pull the utterance down.
        confidence = sum(word.confidence for word in words) / len(recognised) if recognised else 0.0
        return Transcript(text=" ".join(word.word for word in words), confidence=confidence, words=words)


class VoskRecognizer:
    """A Vosk model loaded once; ``open_stream`` is cheap and safe to call from any thread."""

    name = "vosk"

    def __init__(self, model_path: Path, language: str) -> None:
        if not model_path.is_dir():
            raise ModelNotFoundError(f"Vosk model directory not found: {model_path}")
        self.language = language
        self.model_path = model_path
        try:
            self.model = vosk.Model(str(model_path))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise ModelNotFoundError(f"{model_path} is not a loadable Vosk model ({exc})") from exc
        self.supports_grammar = supports_runtime_grammar(model_path)
        self.unknown_word = next(
            (symbol for symbol in _UNKNOWN_WORD_SYMBOLS if self.model.vosk_model_find_word(symbol) >= 0), None
        )
        logger.info(
            "Vosk model %s loaded (%s, runtime grammars %s)",
            model_path,
            language,
            "supported" if self.supports_grammar else "not supported: grammars fall back to open vocabulary",
        )

    def _grammar_json(self, grammar: tuple[str, ...]) -> str | None:
        """The grammar as Vosk expects it, or None to decode with the open vocabulary.

        Vosk silently drops words missing from the lexicon, which would turn "check balance" into
        "check"; phrases with such words are left out instead, with a warning for the flow's author.
        """
        if not self.supports_grammar:
            logger.warning("model %s has a static graph: ignoring grammar %s", self.model_path, grammar)
            return None
        phrases = []
        for phrase in grammar:
            if phrase == GRAMMAR_UNKNOWN_WORD:
                continue  # added below under the model's own name for it
            missing = [word for word in phrase.split() if self.model.vosk_model_find_word(word) < 0]
            if missing:
                logger.warning("grammar phrase %r left out: %s not in the Vosk lexicon", phrase, missing)
            else:
                phrases.append(phrase)
        if not phrases:
            logger.warning("no grammar phrase is in the Vosk lexicon: using the open vocabulary")
            return None
        if self.unknown_word:
            phrases.append(self.unknown_word)
        return json.dumps(phrases, ensure_ascii=False)

    def open_stream(self, hints: RecognitionHints | None = None) -> VoskStream:
        grammar = self._grammar_json(hints.grammar) if hints and hints.grammar else None
        if grammar is None:
            recognizer = vosk.KaldiRecognizer(self.model, SAMPLE_RATE)
        else:
            recognizer = vosk.KaldiRecognizer(self.model, SAMPLE_RATE, grammar)
        recognizer.SetWords(True)
        return VoskStream(recognizer, self.unknown_word)
