"""One written form per word for the NLU: what `voicebot train` trains on and what parsing sees.

The same words reach the NLU written in different ways: typed or recognised, with or without accents,
Arabic or Persian letters, Persian or Latin digits, a half-space, a space or nothing between a Persian
prefix and its verb. ``normalise(text, language)`` maps them all to one form, so they are one feature
to every component of the pipeline (tokens, word and character n-grams, CRF features, regexes, lookup
tables and synonyms), not only to the featurizers that fold case or accents themselves. The rules:

every language
    NFKC per character (presentation forms, ligatures and full-width letters become plain letters),
    lowercase, Persian (۰-۹) and Arabic-Indic (٠-٩) digits and their separators (٫ ٬) as Latin (0-9 .
    ,) so regexes and the amount parser see 0-9, invisible format characters (Unicode category Cf:
    bidi marks, zero-width joiners, soft hyphen) removed, whitespace runs as one space, trimmed.
es
    diacritics removed except the tilde of ñ: callers' typing and recognisers drop accents freely
    ("cuanto", "debito", "si"), and the words they tell apart (sí/si, más/mas, cuánto/cuanto) are
    function words the intents do not hinge on; ñ is a letter of its own (año/ano, peña/pena) that
    Spanish keyboards always have. ü becomes u.
fa
    Arabic yeh and alef maksura (ي ى) as Persian yeh (ی), Arabic kaf (ك ڪ) as keheh (ک); teh marbuta
    and the heh variants (ة ۀ ہ ھ ە) as heh (ه) and hamza carriers (أ إ ٱ ؤ) as alef and waw
    (تأیید/تایید, مؤسسه/موسسه), as Persian search and NLP normalisers do; tatweel (ـ) and the harakat
    (vowel marks, shadda, sukun, superscript alef) removed; Arabic comma, semicolon and question
    mark as Latin punctuation.
    The half-space (ZWNJ) is removed and the prefixes می / نمی and the plural suffixes ها / های / ...
    written as separate words are joined to their word: "می‌خوام", "می خوام" and "میخوام" all become
    "میخوام". The joined form is the only one every spelling reaches by rule: going the other way
    ("میخوام" -> "می‌خوام") needs a verb lexicon, since "میلیون", "میز" and "میوه" start with the same
    letters, and a half-space is invisible, easily lost by keyboards and recognisers.

Only whole characters are rewritten, and ``normalise_aligned`` keeps, for every character of the
result, the span of the original it came from: entities found in the normalised text map back to
what the caller said (`Normalised.source_span`), and annotated training spans map forward
(`Normalised.target_span`). Normalising twice gives the same text as normalising once.

This module's source is part of the trained model's fingerprint (`code_fingerprint`): changing a rule
retrains. The libraries for Persian were considered first: hazm's current releases need numpy and
scikit-learn newer than Rasa 3.6 pins (within the pins only hazm 0.7 of 2019 resolves, with nltk
3.3), parsivar pulls in nltk for the same few character tables, and neither keeps character offsets,
which the entity annotations need; the rules are these few tables.
"""

from __future__ import annotations

import hashlib
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rasa.shared.nlu.training_data.training_data import TrainingData

# Every language: digits and their separators, so regexes and the amount parser read 0-9.
_DIGITS = {chr(0x06F0 + d): str(d) for d in range(10)} | {chr(0x0660 + d): str(d) for d in range(10)}
_COMMON = _DIGITS | {"\u066b": ".", "\u066c": ","}  # Arabic decimal and thousands separators

_PERSIAN = _COMMON | {
    "\u064a": "ی",  # ARABIC LETTER YEH
    "\u0649": "ی",  # ARABIC LETTER ALEF MAKSURA
    "\u0643": "ک",  # ARABIC LETTER KAF
    "\u06aa": "ک",  # ARABIC LETTER SWASH KAF
    "\u0629": "ه",  # ARABIC LETTER TEH MARBUTA
    "\u06c0": "ه",  # ARABIC LETTER HEH WITH YEH ABOVE (ۀ)
    "\u06c1": "ه",  # ARABIC LETTER HEH GOAL
    "\u06be": "ه",  # ARABIC LETTER HEH DOACHASHMEE
    "\u06d5": "ه",  # ARABIC LETTER AE
    "\u0623": "ا",  # ARABIC LETTER ALEF WITH HAMZA ABOVE
    "\u0625": "ا",  # ARABIC LETTER ALEF WITH HAMZA BELOW
    "\u0671": "ا",  # ARABIC LETTER ALEF WASLA
    "\u0624": "و",  # ARABIC LETTER WAW WITH HAMZA ABOVE
    "\u060c": ",",  # ARABIC COMMA
    "\u061b": ";",  # ARABIC SEMICOLON
    "\u061f": "?",  # ARABIC QUESTION MARK
}
_PERSIAN_REMOVED = frozenset(
    [chr(0x0640)]  # TATWEEL
    + [chr(c) for c in range(0x064B, 0x0660)]  # harakat: tanwin, fatha ... sukun, hamza above/below
    + [chr(0x0670)]  # SUPERSCRIPT ALEF
    + [chr(c) for c in range(0x0610, 0x061B)]  # honorific and Quranic signs
    + [
        chr(c)
        for c in [*range(0x06D6, 0x06DD), *range(0x06DF, 0x06E5), 0x06E7, 0x06E8, *range(0x06EA, 0x06EE)]
    ]
)
# Written apart from their word as often as with a half-space or joined to it.
_PERSIAN_PREFIXES = frozenset({"می", "نمی"})
_PERSIAN_SUFFIXES = frozenset(
    {"ها", "های", "هایی", "هام", "هامو", "هات", "هاش", "هامون", "هاتون", "هاشون", "هایم", "هایت", "هایش"}
)
_TILDE = "\u0303"


@dataclass(frozen=True)
class Normalised:
    """A normalised text and, for each of its characters, the span of the original it came from."""

    text: str
    original: str
    starts: tuple[int, ...]  # starts[i]: where the original source of text[i] starts
    ends: tuple[int, ...]  # ends[i]: where it ends

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The original's span for the normalised span [start, end) (an entity the NLU found)."""
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"span {start}-{end} is not inside the normalised text")
        return self.starts[start], self.ends[end - 1]

    def target_span(self, start: int, end: int) -> tuple[int, int] | None:
        """The normalised span of the original span [start, end) (an annotated entity); None when
        nothing of it is left (it was only marks or spaces)."""
        first = bisect_left(self.starts, start)
        last = bisect_right(self.ends, end)
        return (first, last) if first < last else None


def _language(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


def _clusters(text: str) -> Iterator[tuple[int, int]]:
    """Spans of a character and the combining marks after it: the units NFKC and accents act on."""
    start = 0
    for index in range(1, len(text) + 1):
        if index == len(text) or not unicodedata.combining(text[index]):
            yield start, index
            start = index


def _strip_spanish_marks(cluster: str) -> str:
    """Removes diacritics, except the tilde of ñ / Ñ."""
    kept = []
    for char in unicodedata.normalize("NFD", cluster):
        if not unicodedata.combining(char) or (char == _TILDE and kept and kept[-1] in "nN"):
            kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept))


def _characters(text: str, language: str) -> list[tuple[str, int, int]]:
    """Each output character with its original span, before spaces are collapsed."""
    table = _PERSIAN if language == "fa" else _COMMON
    removed = _PERSIAN_REMOVED if language == "fa" else frozenset()
    out: list[tuple[str, int, int]] = []
    for start, end in _clusters(text):
        cluster = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text[start:end]).lower())
        if language == "es":
            cluster = _strip_spanish_marks(cluster)
        for char in cluster:
            if char in removed or unicodedata.category(char) == "Cf":
                continue
            out.extend((c, start, end) for c in table.get(char, char))
    return out


def _collapse_spaces(chars: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Whitespace runs as one space spanning the run; none at either end."""
    out: list[tuple[str, int, int]] = []
    for char, start, end in chars:
        if not char.isspace():
            out.append((char, start, end))
        elif out and out[-1][0] == " ":
            out[-1] = (" ", out[-1][1], end)
        elif out:
            out.append((" ", start, end))
    if out and out[-1][0] == " ":
        out.pop()
    return out


def _is_persian_letter(char: str) -> bool:
    return "\u0600" <= char <= "\u06ff" and char.isalpha()


def _join_persian_affixes(chars: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Drops the space after می / نمی and before ها / های ... when they stand as words of their own."""
    text = "".join(c for c, _, _ in chars)
    tokens = text.split(" ")
    drop: set[int] = set()
    position = 0
    for before, after in pairwise(tokens):
        space = position + len(before)
        if (before in _PERSIAN_PREFIXES and _is_persian_letter(after[0])) or (
            after in _PERSIAN_SUFFIXES and _is_persian_letter(before[-1])
        ):
            drop.add(space)
        position = space + 1
    return [c for index, c in enumerate(chars) if index not in drop]


def normalise_aligned(text: str, language: str) -> Normalised:
    """``normalise`` with the original span of every character of the result."""
    lang = _language(language)
    chars = _collapse_spaces(_characters(text, lang))
    if lang == "fa":
        chars = _join_persian_affixes(chars)
    return Normalised(
        text="".join(c for c, _, _ in chars),
        original=text,
        starts=tuple(s for _, s, _ in chars),
        ends=tuple(e for _, _, e in chars),
    )


def normalise(text: str, language: str) -> str:
    """The one written form of ``text`` the NLU of ``language`` (en, es, fa; "es-MX" is es) uses."""
    return normalise_aligned(text, language).text


def code_fingerprint() -> str:
    """A digest of these rules (this file), part of the model's cache key: a changed rule retrains."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


# ----- training data ------------------------------------------------------------------------------


def _normalised_message(message: Any, language: str) -> Any:
    """A copy of an intent example with its text normalised and its entity spans moved along."""
    from rasa.shared.nlu.constants import ENTITIES, TEXT
    from rasa.shared.nlu.training_data.message import Message

    text = message.get(TEXT)
    normalised = normalise_aligned(text, language)
    entities = []
    for entity in message.get(ENTITIES) or []:
        span = normalised.target_span(entity["start"], entity["end"])
        if span is None:
            continue
        moved = dict(entity, start=span[0], end=span[1])
        if str(entity.get("value")) == text[entity["start"] : entity["end"]]:
            moved["value"] = normalised.text[span[0] : span[1]]  # an explicit value (a synonym) stays
        entities.append(moved)
    data = dict(message.data, **{TEXT: normalised.text})
    if entities or ENTITIES in message.data:
        data[ENTITIES] = entities
    return Message(data=data, output_properties=set(message.output_properties))


def normalise_training_data(data: TrainingData, language: str) -> TrainingData:
    """The same NLU data with every example, synonym variant and lookup entry normalised; regexes and
    the canonical values entities map to (what the dialogue compares) are left as they are.

    Raises ValueError when two spellings that normalise alike map to different canonical values.
    """
    from rasa.shared.nlu.training_data.training_data import TrainingData

    synonyms: dict[str, str] = {}
    for variant, canonical in data.entity_synonyms.items():
        key = normalise(variant, language)
        if synonyms.get(key, canonical) != canonical:
            raise ValueError(
                f"'{variant}' is written '{key}' after normalisation, which is a synonym of both "
                f"'{synonyms[key]}' and '{canonical}'"
            )
        synonyms[key] = canonical
    lookups = [
        dict(table, elements=[normalise(str(e), language) for e in table["elements"]])
        if isinstance(table.get("elements"), list)
        else table
        for table in data.lookup_tables
    ]
    return TrainingData(
        [_normalised_message(m, language) for m in data.training_examples],
        entity_synonyms=synonyms,
        regex_features=data.regex_features,
        lookup_tables=lookups,
        responses=data.responses,
    )
