"""Dutch number formatting: decimal comma, thousands dot, explicit sign where a change is shown."""

from __future__ import annotations

import math


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


def nl_number(value: object, decimals: int = 2, *, sign: bool = False, missing: str = "–") -> str:
    """``4.0334`` -> ``'4,03'``; ``12345.6`` with 0 decimals -> ``'12.346'``; sign=True gives ``'+0,07'``."""
    if _missing(value):
        return missing
    number = float(value)  # type: ignore[arg-type]
    text = f"{abs(number):,.{decimals}f}".replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    if number < 0 and text.strip("0,.") != "":
        return "−" + text
    if sign and number > 0 and text.strip("0,.") != "":
        return "+" + text
    return text


def nl_int(value: object, missing: str = "–") -> str:
    return nl_number(value, 0, missing=missing)


def nl_pct(value: object, decimals: int = 1, missing: str = "–") -> str:
    text = nl_number(value, decimals, missing=missing)
    return text if text == missing else f"{text}%"
