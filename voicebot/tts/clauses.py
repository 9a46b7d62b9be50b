"""Where to cut what the bot says so that its first words are heard sooner.

Piper synthesises a whole sentence before any of it can play, in a time about proportional to its
length (~85 ms per second of speech on one thread here), so a long first sentence keeps the caller
waiting. Cut after its first clause, the first synthesis is short. The cut falls where the voice
pauses anyway, and sounds like it: a clause synthesised alone ends in 140-180 ms of silence, about
the pause Piper makes at a comma within a sentence (160-280 ms).
"""

from __future__ import annotations

import re

DASHES = "-\u2013\u2014"
# A comma, semicolon or colon before a space (not the comma of "1,234"), or a dash between spaces.
_CLAUSE_END = re.compile(rf"[,;:](?=\s)|\s[{DASHES}](?=\s)")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
LONG_SENTENCE_WORDS = 8  # a first sentence of more words than this is cut ...
MIN_CLAUSE_WORDS = 3  # ... after its first clause of at least this many words


def first_clause(text: str) -> tuple[str, str]:
    """``text`` cut after the first clause of a long first sentence: ("Our branch is open 9 AM to
    5 PM Monday to Friday,", "9 AM to 1 PM on Saturday."); (text, "") when there is none."""
    sentence_end = _SENTENCE_END.search(text)
    sentence = text[: sentence_end.end()] if sentence_end else text
    if len(sentence.split()) <= LONG_SENTENCE_WORDS:
        return text, ""
    for boundary in _CLAUSE_END.finditer(sentence):
        clause, rest = _cut(text, boundary)
        if len(clause.split()) >= MIN_CLAUSE_WORDS:
            return clause, rest
    return text, ""


def opening_clause(text: str) -> tuple[str, str]:
    """``text`` cut after its first clause or sentence, whatever their length: ("Done.", "50 dollars
    has been moved ..."); (text, "") when it is one clause."""
    ends = [m for m in (_CLAUSE_END.search(text), _SENTENCE_END.search(text)) if m is not None]
    if not ends:
        return text, ""
    return _cut(text, min(ends, key=lambda m: m.end()))


def fixed_opening(template: str) -> str | None:
    """A prompt template's opening clause when no value is filled into it ("Just to check," of
    "Just to check, you want to {intent_label}. Is that right?"): the same words start every text
    made from it, so they can be synthesised once, in advance. None when a value comes first or the
    template is one clause."""
    opening, rest = opening_clause(template)
    return opening if rest and "{" not in opening else None


def _cut(text: str, boundary: re.Match[str]) -> tuple[str, str]:
    clause, rest = text[: boundary.end()].strip(), text[boundary.end() :].strip()
    if boundary.group()[-1] in DASHES:
        # Said alone, a clause cut at a dash ends with a comma: the same pause, and a clause's tune.
        clause = clause.rstrip(DASHES + " ") + ","
    return clause, rest
