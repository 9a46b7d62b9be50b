"""Turns amounts, dates, times and digit strings into text a TTS engine reads naturally.

Prompt templates are filled with these strings, so they avoid symbols ("$", "%") and long digit
runs that engines would read as huge numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, time

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


def spoken_money(cents: int) -> str:
    """12345 -> "123 dollars and 45 cents"; thousands are grouped so "1,234" reads as a number."""
    sign = "minus " if cents < 0 else ""
    dollars, remainder = divmod(abs(cents), 100)
    parts = []
    if dollars or not remainder:
        parts.append(f"{dollars:,} dollar{'' if dollars == 1 else 's'}")
    if remainder:
        parts.append(f"{remainder} cent{'' if remainder == 1 else 's'}")
    return sign + " and ".join(parts)


def ordinal(number: int) -> str:
    """3 -> "3rd", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 11 <= number % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def spoken_date(day: date) -> str:
    """date(2024, 11, 3) -> "November 3rd" (callers know the year)."""
    return f"{MONTH_NAMES[day.month - 1]} {ordinal(day.day)}"


def spoken_time(moment: time) -> str:
    """time(9) -> "9 AM", time(17, 30) -> "5:30 PM", time(12) -> "12 PM"."""
    hour = moment.hour % 12 or 12
    period = "AM" if moment.hour < 12 else "PM"
    minutes = f":{moment.minute:02d}" if moment.minute else ""
    return f"{hour}{minutes} {period}"


def spoken_digits(digits: str) -> str:
    """ "1234" -> "1 2 3 4", so the engine reads each digit instead of "one thousand ...".

    Card numbers are only ever spoken this way, and only their last 4 digits.
    """
    return " ".join(digits)


def spoken_percent(basis_points: int) -> str:
    """425 -> "4.25 percent", 500 -> "5 percent"."""
    return f"{basis_points / 100:g} percent"


def spoken_list(items: Sequence[str]) -> str:
    """["a"] -> "a", ["a", "b"] -> "a and b", ["a", "b", "c"] -> "a, b, and c"."""
    if len(items) <= 2:
        return " and ".join(items)
    return f"{', '.join(items[:-1])}, and {items[-1]}"


def spoken_weekly_hours(hours: Sequence[tuple[int, time, time]]) -> str:
    """Opening hours as (weekday 0=Monday, opens, closes) -> "9 AM to 5 PM Monday to Friday, ...".

    Consecutive days with the same hours are merged into one range; closed days are left out.
    """
    runs: list[tuple[int, int, time, time]] = []  # first day, last day, opens, closes
    for weekday, opens, closes in sorted(hours):
        if runs and runs[-1][1] == weekday - 1 and runs[-1][2:] == (opens, closes):
            runs[-1] = (runs[-1][0], weekday, opens, closes)
        else:
            runs.append((weekday, weekday, opens, closes))
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
