"""Spoken numbers as ASR writes them ("one two three four", "fifty dollars") turned into values.

English and Spanish number words go through text2num; Persian (which text2num does not know) is
read here. Digits may come in any script: Persian (۰-۹) and Arabic-Indic (٠-٩) digits count as
digits whatever the caller's language. Unknown languages are read as English.
"""

from __future__ import annotations

import re

from text_to_num import alpha2digit

# Persian and Arabic-Indic digits (and the Arabic decimal and thousands separators) as ASCII.
_DIGIT_SCRIPTS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩٫٬", "01234567890123456789.,")

# Callers say "oh" for zero in account and card numbers; "a hundred" means "one hundred".
_SPOKEN_ZERO = re.compile(r"\b(?:oh|o)\b")
_INDEFINITE_ARTICLE = re.compile(r"\ba\s+(?=hundred|thousand|million)")
_REPEATED_DIGIT = re.compile(r"\b(double|triple)\s+(\d)\b")
_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DOLLARS_AND_CENTS = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:dollars?|bucks?)\s*(?:and\s+)?(\d{1,2})\s*(?:cents?)?\b"
)
_CENTS_ONLY = re.compile(r"^\D*?(\d{1,2})\s*cents?\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_REPEAT_COUNT = {"double": 2, "triple": 3}

# Spanish. text2num reads "centavos" as the fraction 1/100, so the word is swapped for a mark first;
# it lacks the unaccented "veintidos"/"veintitres" and the "veintiún" said before a noun.
_ES_CENTS_WORD = re.compile(r"\bcentavos?\b")
_ES_CENTS_MARK = "¢"
_ES_SPELLINGS = {"veintidos": "veintidós", "veintitres": "veintitrés", "veintiun": "veintiuno"}
_ES_SPELLING = re.compile(r"\b(?:veintidos|veintitres|veintiun|veintiún|veintiuna)\b")
# "un"/"una" is the article ("un momento") unless a number word or a currency follows it.
_ES_ARTICLE = re.compile(
    r"(?<!\by )\b(?:un|una)\b(?!\s+(?:mil\b|mill[oó]n|millones|d[oó]lar|centavo|peso|¢))"
)
# Spain writes 1.250,50; the Americas 1,250.50: a separator before exactly 3 digits groups thousands.
_GROUPING_SEPARATOR = re.compile(r"(?<=\d)[.,](?=\d{3}(?!\d))")
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")
_ES_DOLLARS_AND_CENTS = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:d[oó]lar(?:es)?|pesos?)\s*(?:(?:con|y)\s+)?(\d{1,2})\s*(?:¢)?(?!\d)"
)
# "dos mil con cincuenta centavos": the currency left out.
_ES_UNITS_AND_CENTS = re.compile(r"(\d+(?:\.\d+)?)\s+(?:con|y)\s+(\d{1,2})\s*¢")
_ES_CENTS_ONLY = re.compile(r"^\D*?(\d{1,2})\s*¢")

# Persian: letters that Arabic keyboards and recognisers write instead (ي ك ة ى), the tatweel and
# the short-vowel marks; a ZWNJ (half space) separates words like a space.
_FA_LETTERS = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک", "ة": "ه", "ۀ": "ه", "ـ": None, "\u200c": " "})
_FA_MARKS = re.compile("[\u064b-\u065f\u0670]")
_FA_UNITS = {
    "صفر": 0,
    "یک": 1,
    "دو": 2,
    "سه": 3,
    "چهار": 4,
    "چار": 4,
    "پنج": 5,
    "شش": 6,
    "شیش": 6,
    "هفت": 7,
    "هشت": 8,
    "نه": 9,
    "ده": 10,
    "یازده": 11,
    "دوازده": 12,
    "سیزده": 13,
    "چهارده": 14,
    "پانزده": 15,
    "پونزده": 15,
    "شانزده": 16,
    "شونزده": 16,
    "هفده": 17,
    "هیفده": 17,
    "هجده": 18,
    "هیجده": 18,
    "نوزده": 19,
    "بیست": 20,
    "سی": 30,
    "چهل": 40,
    "پنجاه": 50,
    "شصت": 60,
    "هفتاد": 70,
    "هشتاد": 80,
    "نود": 90,
    "صد": 100,
    "یکصد": 100,
    "دویست": 200,
    "سیصد": 300,
    "چهارصد": 400,
    "چارصد": 400,
    "پانصد": 500,
    "پونصد": 500,
    "ششصد": 600,
    "شیشصد": 600,
    "هفتصد": 700,
    "هشتصد": 800,
    "نهصد": 900,
}
_FA_MULTIPLIERS = {"هزار": 1000, "میلیون": 10**6, "میلیارد": 10**9}
_FA_AND = "و"
_FA_ONE = "یه"  # colloquial "one", also "a": a number only before a multiplier ("یه میلیون")
_FA_WEEK = "شنبه"
_FA_TOKEN = re.compile(r"\d+(?:\.\d+)?|\w+|\s+|.")
_FA_DOLLARS_AND_CENTS = re.compile(r"(\d+(?:\.\d+)?)\s*دلار\s*(?:و\s*)?(\d{1,2})(?!\d)\s*(?:سنت)?")
_FA_CENTS_ONLY = re.compile(r"^\D*?(\d{1,2})\s*سنت")

SUPPORTED_LANGUAGES = ("en", "es", "fa")


def _base_language(language: str) -> str:
    """ "es-MX" -> "es"; languages not read here -> "en"."""
    base = language.lower().replace("_", "-").split("-")[0]
    return base if base in SUPPORTED_LANGUAGES else "en"


def _to_digits(text: str, language: str = "en") -> str:
    """Lowercases and rewrites number words as digits; threshold 0 so a lone "one" converts too."""
    text = text.lower().translate(_DIGIT_SCRIPTS)
    if language == "es":
        text = _ES_CENTS_WORD.sub(_ES_CENTS_MARK, text)
        text = _ES_SPELLING.sub(lambda m: _ES_SPELLINGS.get(m.group(), "veintiuno"), text)
        return alpha2digit(_ES_ARTICLE.sub("", text), "es", threshold=0)
    if language == "fa":
        return _fa_to_digits(text)
    return alpha2digit(_INDEFINITE_ARTICLE.sub("one ", text), "en", threshold=0)


def _fa_to_digits(text: str) -> str:
    """Persian number words as digits: "صد و بیست و پنج دلار" -> "125 دلار", "یک دو سه" -> "1 2 3".

    Words join into one number through "و" ("بیست و پنج") when the new word fits below the last
    one's place, and multipliers scale what precedes them ("دو هزار و پانصد"); otherwise a new
    number starts, so digits read one by one stay separate.
    """
    text = _FA_MARKS.sub("", text.translate(_FA_LETTERS))
    tokens = [part for token in _FA_TOKEN.findall(text) for part in _fa_split_joined(token)]
    out: list[str] = []
    number: _FaNumber | None = None
    pending: list[str] = []  # spaces and an "و" after the number, kept if no number word follows
    for index, token in enumerate(tokens):
        if token.isspace() or (token == _FA_AND and number is not None):
            if number is None:
                out.append(token)
            else:
                pending.append(token)
            continue
        value = _fa_value(token, tokens, index)
        joined = _FA_AND in pending
        if number is not None and value is not None and number.add(value, joined):
            pending = []
            continue
        if number is not None:
            out.append(number.text())
            out.extend(pending)
            pending = []
            number = None
        if value is not None:
            number = _FaNumber(value, token)
        else:
            out.append(token)
    if number is not None:
        out.append(number.text())
        out.extend(pending)
    return "".join(out)


def _fa_split_joined(token: str) -> list[str]:
    """Number words written together, as they are once the half-spaces between them are dropped
    (the NLU's normaliser drops them): "صدوبیست" -> "صد و بیست", "دوهزار" -> "دو هزار" (as
    tokens); any other token as it is."""
    if _fa_word(token) or not token[0].isalpha():
        return [token]

    def words(rest: str) -> list[str] | None:
        if _fa_word(rest):
            return [rest]
        for cut in range(len(rest) - 1, 0, -1):
            head, tail = rest[:cut], rest[cut:]
            if not _fa_word(head):
                continue
            if tail.startswith(_FA_AND) and (more := words(tail[1:])):
                return [head, " ", _FA_AND, " ", *more]
            if tail.startswith(tuple(_FA_MULTIPLIERS)) and (more := words(tail)):
                return [head, " ", *more]
        return None

    return words(token) or [token]


def _fa_word(token: str) -> bool:
    return token in _FA_UNITS or token in _FA_MULTIPLIERS


def _fa_value(token: str, tokens: list[str], index: int) -> float | None:
    following = next((t for t in tokens[index + 1 : index + 3] if not t.isspace()), "")
    if following == _FA_WEEK:  # سه‌شنبه (Tuesday), پنج‌شنبه: a day, not a number
        return None
    if token in _FA_UNITS:
        return _FA_UNITS[token]
    if token in _FA_MULTIPLIERS:
        return _FA_MULTIPLIERS[token]
    if token[0].isdigit() and token.replace(".", "", 1).isdigit():
        return float(token) if "." in token else int(token)
    if token == _FA_ONE:
        return 1 if following in _FA_MULTIPLIERS or following == "صد" else None
    return None


class _FaNumber:
    """A Persian number being read: the finished multiplier groups and the group under way."""

    def __init__(self, value: float, word: str) -> None:
        self.word: str | None = word  # the text while it is one word, so "۰۹۱۲" keeps its 0
        self.total: float = 0
        self.group: float = 0
        self.last_place = 10**12  # the place value the next word must fit below
        self._start(value)

    def _start(self, value: float) -> None:
        if value in _FA_MULTIPLIERS.values():
            self.total, self.last_place = value, value
        else:
            self.group, self.last_place = value, _place(value)

    def add(self, value: float, joined: bool) -> bool:
        """Takes the next word into this number; False when it starts a new one."""
        taken = self._add(value, joined)
        if taken:
            self.word = None
        return taken

    def _add(self, value: float, joined: bool) -> bool:
        written_in_digits = self.word is not None and self.word[0].isdigit()
        if value == 0 or (written_in_digits and value not in _FA_MULTIPLIERS.values()):
            return False  # "۲ میلیون" is two million, but "۰۹۱۲ و صفر" two numbers
        if value in _FA_MULTIPLIERS.values():
            if joined:
                return False
            if self.group == 0 and self.total and value > self.total:  # "هزار میلیون"
                self.total *= value
            elif self.group and (not self.total or value < self.total):
                self.total += self.group * value
                self.group = 0
            else:
                return False
            self.last_place = value
            return True
        if value == 100 and not joined and 0 < self.group < 10:  # "نه صد", written apart, is 900
            self.group *= 100
            self.last_place = 100
            return True
        after_multiplier = self.group == 0 and self.total > 0  # "دو هزار پانصد", the "و" left out
        if not (joined or after_multiplier) or value >= self.last_place or isinstance(value, float):
            return False
        self.group += value
        self.last_place = _place(value)
        return True

    def text(self) -> str:
        if self.word is not None and self.word[0].isdigit():
            return self.word
        value = self.total + self.group
        return f"{value:g}" if isinstance(value, float) and not value.is_integer() else str(int(value))


def _place(value: float) -> int:
    """The place a word fills: 20 -> 10 (a unit may follow), 300 -> 100, 7 -> 1, 15 -> 1."""
    return 1 if value < 20 else 10 ** (len(str(int(value))) - 1)


def spoken_digits(text: str, *, language: str = "en") -> str:
    """The digits a caller read out, in order: "one two three four" -> "1234", "oh four" -> "04".

    Filler words ("uh", "my pin is") are ignored; grouped numbers keep their digits ("twelve thirty
    four" -> "1234"), and "double five" -> "55". Spanish ("uno dos tres") and Persian ("یک دو سه")
    likewise, and digits in any script ("۱۲۳").
    """
    language = _base_language(language)
    text = text.lower().translate(_DIGIT_SCRIPTS)
    if language == "en":
        text = _SPOKEN_ZERO.sub("zero", text)
    converted = _to_digits(text, language)
    if language == "en":
        converted = _REPEATED_DIGIT.sub(lambda m: m.group(2) * _REPEAT_COUNT[m.group(1)], converted)
    return "".join(ch for ch in converted if "0" <= ch <= "9")


def parse_amount(text: str, *, language: str = "en") -> float | None:
    """A money amount: "fifty dollars" -> 50.0, "$1,250.50" -> 1250.5, "two dollars and five cents"
    -> 2.05; "cincuenta dólares con cinco centavos" -> 50.05, "صد و بیست و پنج دلار" -> 125.0;
    None when the text holds no number."""
    language = _base_language(language)
    converted = _to_digits(text, language).replace("$", " ")
    if language == "en":
        converted = _THOUSANDS_SEPARATOR.sub("", converted)
        dollars_and_cents, cents_only = _DOLLARS_AND_CENTS, _CENTS_ONLY
    else:
        converted = _DECIMAL_COMMA.sub(".", _GROUPING_SEPARATOR.sub("", converted))
        if language == "es":
            dollars_and_cents, cents_only = _ES_DOLLARS_AND_CENTS, _ES_CENTS_ONLY
        else:
            dollars_and_cents, cents_only = _FA_DOLLARS_AND_CENTS, _FA_CENTS_ONLY
    if match := dollars_and_cents.search(converted) or (
        language == "es" and _ES_UNITS_AND_CENTS.search(converted)
    ):
        return float(match.group(1)) + int(match.group(2)) / 100
    if match := cents_only.search(converted):
        return int(match.group(1)) / 100
    if match := _NUMBER.search(converted):
        return float(match.group())
    return None
