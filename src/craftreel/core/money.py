"""Money is an integer of minor units plus an ISO currency; rates are basis points."""

from __future__ import annotations


def apply_rate(amount_minor: int, basis_points: int) -> int:
    """``amount × rate``, rounded half up to a whole minor unit, in integers only."""
    if amount_minor < 0 or basis_points < 0:
        raise ValueError("amounts and rates are never negative here")
    return (amount_minor * basis_points + 5_000) // 10_000


def parse_rates(text: str) -> dict[str, int]:
    """``"GB:2000,DE:1900,*:0"`` → ``{"GB": 2000, "DE": 1900, "*": 0}`` (basis points)."""
    rates: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        region, _, value = part.partition(":")
        if not (region == "*" or (len(region) == 2 and region.isalpha() and region.isupper())):
            raise ValueError(f"bad region {region!r}")
        if not value.isdigit() or int(value) > 10_000:
            raise ValueError(f"bad rate {value!r} for {region}")
        rates[region] = int(value)
    return rates
