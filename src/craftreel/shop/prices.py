"""Prices as people read and type them: ``1250, "GBP"`` ↔ ``"£12.50"`` / ``"12.50"``."""

from __future__ import annotations

import re

SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$", "CAD": "CA$", "AUD": "A$", "JPY": "¥"}
#: Currencies without minor units (a price in yen is whole yen).
NO_MINOR_UNITS = frozenset({"JPY", "KRW"})

_AMOUNT = re.compile(r"^\d{1,9}(?:[.,]\d{1,2})?$")


def minor_digits(currency: str) -> int:
    return 0 if currency in NO_MINOR_UNITS else 2


def format_price(minor: int, currency: str) -> str:
    """``£12.50``, ``€1,200.00``, ``¥900``; an unknown currency gets its code after."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    amount = f"{abs(minor):,}" if minor_digits(currency) == 0 else f"{whole:,}.{cents:02d}"
    symbol = SYMBOLS.get(currency)
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency}"


def plain_amount(minor: int, currency: str) -> str:
    """The amount as a seller types it back in a form: ``12.50`` (no symbol, no commas)."""
    if minor_digits(currency) == 0:
        return str(minor)
    return f"{minor // 100}.{minor % 100:02d}"


def parse_price(text: str, currency: str) -> int:
    """``"12.5"`` → ``1250`` minor units; ``ValueError`` for anything that is not a price."""
    cleaned = text.strip().lstrip(SYMBOLS.get(currency, "")).strip().replace(" ", "")
    if not _AMOUNT.match(cleaned):
        raise ValueError(f"not a price: {text!r}")
    whole, _, fraction = cleaned.replace(",", ".").partition(".")
    if minor_digits(currency) == 0:
        if fraction.strip("0"):
            raise ValueError(f"{currency} has no minor units: {text!r}")
        return int(whole)
    return int(whole) * 100 + int((fraction + "00")[:2])
