"""Turns amounts, dates, times and digit strings into text a TTS engine reads naturally.

Prompt templates are filled with these strings, so they avoid symbols ("$", "%") and long digit
runs that engines would read as huge numbers. Every function takes the call's language: English
keeps digits (its voices read them well); Spanish ("es") and Persian ("fa") are written in words,
from num2words, so the voice never guesses at digits, separators or agreement. Dates stay
Gregorian in every language. Unknown languages are spoken in English.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, time

from num2words import num2words

# Spelled out rather than taken from `calendar`, whose names follow the process locale; prompts are English.
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

SUPPORTED_LANGUAGES = ("en", "es", "fa")
_MONTHS = {
    "es": (
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ),
    # The Gregorian months as Persian writes them (the calendar is not converted).
    "fa": (
        "ژانویه",
        "فوریه",
        "مارس",
        "آوریل",
        "مه",
        "ژوئن",
        "ژوئیه",
        "اوت",
        "سپتامبر",
        "اکتبر",
        "نوامبر",
        "دسامبر",
    ),
}
_DAYS = {
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "fa": ("دوشنبه", "سه\u200cشنبه", "چهارشنبه", "پنج\u200cشنبه", "جمعه", "شنبه", "یکشنبه"),
}
_ES_DAYS_PLURAL = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábados", "domingos")
_DIGIT_SCRIPTS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_ES_ONE_BEFORE_THOUSANDS = re.compile(r"\b(veinti)?uno(?= (?:mil|mill[oó]n|millones|billones)\b)")
# Spanish "y" is said "e" before an /i/ sound ("Juan e Inés"), but not before "hie", "hia" ("y hielo").
_ES_I_SOUND = re.compile(r"^(?:h?[ií])(?![aeiouáéíóú])", re.IGNORECASE)
_FA_AND = " و "


def _base_language(language: str) -> str:
    """ "es-MX" -> "es"; languages not spoken here -> "en"."""
    base = language.lower().replace("_", "-").split("-")[0]
    return base if base in SUPPORTED_LANGUAGES else "en"


def _es_words(number: int, before_noun: bool = False) -> str:
    """21 -> "veintiuno"; before a masculine noun "veintiún (dólares)", "un millón de (dólares)"."""
    words = _ES_ONE_BEFORE_THOUSANDS.sub(
        lambda m: "veintiún" if m.group(1) else "un", num2words(number, lang="es")
    )
    if before_noun:
        words = re.sub(r"\bveintiuno$", "veintiún", re.sub(r"\buno$", "un", words))
        if words.endswith(("millón", "millones")):
            words += " de"
    return words


def _fa_words(number: int) -> str:
    return str(num2words(number, lang="fa"))


def _words(number: int, language: str) -> str:
    return _es_words(number) if language == "es" else _fa_words(number)


def _decimal_words(whole: int, hundredths: int, language: str) -> str:
    """4, 25 -> "cuatro punto veinticinco" / "چهار ممیز بیست و پنج"; 4, 50 -> "... punto cinco" /
    "چهار و نیم"; 4, 5 -> "cuatro punto cero cinco"."""
    words = _words(whole, language)
    fraction = f"{hundredths:02d}".rstrip("0")
    if not fraction:
        return words
    if language == "fa" and fraction == "5":
        return words + _FA_AND + "نیم"
    said = (
        " ".join(_words(int(d), language) for d in fraction)
        if fraction[0] == "0"
        else _words(int(fraction), language)
    )
    return f"{words} {'punto' if language == 'es' else 'ممیز'} {said}"


def spoken_money(cents: int, *, language: str = "en") -> str:
    """12345 -> "123 dollars and 45 cents"; thousands are grouped so "1,234" reads as a number.

    Spanish: "ciento veintitrés dólares con cuarenta y cinco centavos" ("un dólar", "veintiún
    dólares", "un millón de dólares"); Persian: "صد و بیست و سه دلار و چهل و پنج سنت".
    """
    language = _base_language(language)
    dollars, remainder = divmod(abs(cents), 100)
    parts = []
    if language == "es":
        if dollars or not remainder:
            parts.append(f"{_es_words(dollars, before_noun=True)} {'dólar' if dollars == 1 else 'dólares'}")
        if remainder:
            parts.append(f"{_es_words(remainder, before_noun=True)} centavo{'' if remainder == 1 else 's'}")
        return ("menos " if cents < 0 else "") + " con ".join(parts)
    if language == "fa":
        if dollars or not remainder:
            parts.append(f"{_fa_words(dollars)} دلار")  # Persian counts with the singular noun
        if remainder:
            parts.append(f"{_fa_words(remainder)} سنت")
        return ("منفی " if cents < 0 else "") + _FA_AND.join(parts)
    if dollars or not remainder:
        parts.append(f"{dollars:,} dollar{'' if dollars == 1 else 's'}")
    if remainder:
        parts.append(f"{remainder} cent{'' if remainder == 1 else 's'}")
    return ("minus " if cents < 0 else "") + " and ".join(parts)


def ordinal(number: int, *, language: str = "en") -> str:
    """3 -> "3rd", 11 -> "11th", 22 -> "22nd"; Spanish "tercero" (masculine), Persian "سوم"."""
    language = _base_language(language)
    if language == "es":
        words = str(num2words(number, lang="es", to="ordinal"))
        # num2words writes "décimoprimero"; the joined forms are written without the accent.
        return "decimo" + words[6:] if words.startswith("décimo") and len(words) > 6 else words
    if language == "fa":
        words = _fa_words(number)
        if words.endswith("سه"):
            return words[:-1] + "وم"  # سوم, بیست و سوم
        # سی -> سی‌ام (num2words writes "سیم"), other words take م: یکم, دوم, بیستم.
        return words + ("\u200cام" if words.endswith("ی") else "م")
    suffix = "th" if 11 <= number % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def spoken_date(day: date, *, language: str = "en") -> str:
    """date(2024, 11, 3) -> "November 3rd" (callers know the year); Spanish "tres de noviembre"
    ("primero de noviembre"), without the article, which prompts say ("el {date}", "del {date}");
    Persian "سوم نوامبر". The date stays Gregorian."""
    language = _base_language(language)
    if language == "es":
        number = "primero" if day.day == 1 else _es_words(day.day)
        return f"{number} de {_MONTHS['es'][day.month - 1]}"
    if language == "fa":
        return f"{ordinal(day.day, language='fa')} {_MONTHS['fa'][day.month - 1]}"
    return f"{MONTH_NAMES[day.month - 1]} {ordinal(day.day)}"


def _es_clock(moment: time) -> str:
    """time(9) -> "nueve de la mañana", time(13, 30) -> "una y media de la tarde" (no article)."""
    hour = moment.hour % 12 or 12
    words = "una" if hour == 1 else _es_words(hour)
    if moment.minute:
        minutes = {15: "cuarto", 30: "media"}.get(moment.minute) or _es_words(moment.minute)
        words += f" y {minutes}"
    if moment.hour == 12:
        period = "del mediodía"
    elif 6 <= moment.hour < 12:
        period = "de la mañana"
    elif 13 <= moment.hour < 20:
        period = "de la tarde"
    elif 0 < moment.hour < 6:
        period = "de la madrugada"
    else:
        period = "de la noche"
    return f"{words} {period}"


def _fa_clock(moment: time) -> str:
    """time(9) -> "نه صبح", time(17, 30) -> "پنج و نیم عصر" (without "ساعت")."""
    words = _fa_words(moment.hour % 12 or 12)
    if moment.minute:
        minutes = {15: "ربع", 30: "نیم"}.get(moment.minute) or f"{_fa_words(moment.minute)} دقیقه"
        words += _FA_AND + minutes
    if moment.hour == 12:
        period = "ظهر"
    elif 5 <= moment.hour < 12:
        period = "صبح"
    elif 13 <= moment.hour < 17:
        period = "بعدازظهر"
    elif 17 <= moment.hour < 20:
        period = "عصر"
    elif 0 < moment.hour < 5:
        period = "بامداد"
    else:
        period = "شب"
    return f"{words} {period}"


def spoken_time(moment: time, *, language: str = "en") -> str:
    """time(9) -> "9 AM", time(17, 30) -> "5:30 PM", time(12) -> "12 PM"; Spanish "las nueve de la
    mañana", "la una de la tarde"; Persian "ساعت نه صبح"."""
    language = _base_language(language)
    if language == "es":
        return ("la " if moment.hour % 12 == 1 else "las ") + _es_clock(moment)
    if language == "fa":
        return "ساعت " + _fa_clock(moment)
    hour = moment.hour % 12 or 12
    period = "AM" if moment.hour < 12 else "PM"
    minutes = f":{moment.minute:02d}" if moment.minute else ""
    return f"{hour}{minutes} {period}"


def spoken_digits(digits: str, *, language: str = "en") -> str:
    """ "1234" -> "1 2 3 4", so the engine reads each digit instead of "one thousand ...";
    Spanish "uno dos tres cuatro", Persian "یک دو سه چهار". Persian digits are read too.

    Card numbers are only ever spoken this way, and only their last 4 digits.
    """
    language = _base_language(language)
    digits = digits.translate(_DIGIT_SCRIPTS)
    if language == "en":
        return " ".join(digits)
    return " ".join(_words(int(c), language) if "0" <= c <= "9" else c for c in digits)


def spoken_percent(basis_points: int, *, language: str = "en") -> str:
    """425 -> "4.25 percent", 500 -> "5 percent"; Spanish "cuatro punto veinticinco por ciento",
    Persian "چهار ممیز بیست و پنج درصد" ("چهار و نیم درصد" for 450)."""
    language = _base_language(language)
    if language == "en":
        return f"{basis_points / 100:g} percent"
    whole, hundredths = divmod(abs(basis_points), 100)
    sign = ("menos " if language == "es" else "منفی ") if basis_points < 0 else ""
    unit = "por ciento" if language == "es" else "درصد"
    return f"{sign}{_decimal_words(whole, hundredths, language)} {unit}"


def spoken_list(items: Sequence[str], *, language: str = "en") -> str:
    """["a"] -> "a", ["a", "b"] -> "a and b", ["a", "b", "c"] -> "a, b, and c"; Spanish "a, b y c"
    ("e" before an /i/ sound), Persian "a، b و c"."""
    language = _base_language(language)
    if language == "es":
        if len(items) <= 1:
            return "".join(items)
        conjunction = " e " if _ES_I_SOUND.match(items[-1]) else " y "
        return ", ".join(items[:-1]) + conjunction + items[-1]
    if language == "fa":
        return "، ".join(items[:-1]) + _FA_AND + items[-1] if len(items) > 1 else "".join(items)
    if len(items) <= 2:
        return " and ".join(items)
    return f"{', '.join(items[:-1])}, and {items[-1]}"


def spoken_weekly_hours(hours: Sequence[tuple[int, time, time]], *, language: str = "en") -> str:
    """Opening hours as (weekday 0=Monday, opens, closes) -> "9 AM to 5 PM Monday to Friday, ...";
    Spanish "de lunes a viernes de nueve de la mañana a cinco de la tarde y los sábados de ...",
    Persian "از دوشنبه تا جمعه از ساعت نه صبح تا پنج عصر و شنبه از ساعت ...".

    Consecutive days with the same hours are merged into one range; closed days are left out.
    """
    language = _base_language(language)
    runs: list[tuple[int, int, time, time]] = []  # first day, last day, opens, closes
    for weekday, opens, closes in sorted(hours):
        if runs and runs[-1][1] == weekday - 1 and runs[-1][2:] == (opens, closes):
            runs[-1] = (runs[-1][0], weekday, opens, closes)
        else:
            runs.append((weekday, weekday, opens, closes))
    if language == "es":
        days_es = _DAYS["es"]
        phrases = []
        for first, last, opens, closes in runs:
            if first == last:
                days = f"los {_ES_DAYS_PLURAL[first]}"
            elif last == first + 1:
                days = f"los {_ES_DAYS_PLURAL[first]} y {_ES_DAYS_PLURAL[last]}"
            else:
                days = f"de {days_es[first]} a {days_es[last]}"
            phrases.append(f"{days} de {_es_clock(opens)} a {_es_clock(closes)}")
        return spoken_list(phrases, language="es")
    if language == "fa":
        days_fa = _DAYS["fa"]
        phrases = []
        for first, last, opens, closes in runs:
            if first == last:
                days = days_fa[first]
            elif last == first + 1:
                days = days_fa[first] + _FA_AND + days_fa[last]
            else:
                days = f"از {days_fa[first]} تا {days_fa[last]}"
            phrases.append(f"{days} از ساعت {_fa_clock(opens)} تا {_fa_clock(closes)}")
        return spoken_list(phrases, language="fa")
    phrases = []
    for first, last, opens, closes in runs:
        if first == last:
            days = f"on {DAY_NAMES[first]}"
        elif last == first + 1:
            days = f"on {DAY_NAMES[first]} and {DAY_NAMES[last]}"
        else:
            days = f"{DAY_NAMES[first]} to {DAY_NAMES[last]}"
        phrases.append(f"{spoken_time(opens)} to {spoken_time(closes)} {days}")
    return ", ".join(phrases)
