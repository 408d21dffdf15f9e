"""Amounts in human units, the one place the portal formats usage and limits.

Bytes as KB, MB, GB or TB with one decimal (powers of 1024, as the plans are written: 50 GB is
50 × 1024³ bytes), whole counts and seconds with thousands separators: a partner never reads
536870912000. Templates: `{% load units %}` then `{{ value|human:"bytes" }}`.
"""

from __future__ import annotations

from django import template
from django.utils.translation import gettext, ngettext

from access.plan_terms import Unit

register = template.Library()

BYTE_UNITS = ("KB", "MB", "GB", "TB")


@register.filter(name="human")
def human(value, unit: str = Unit.COUNT) -> str:
    """`value` in `unit` ("count", "bytes" or "seconds") for people; "—" for nothing."""
    if value is None or value == "":
        return "—"
    if unit == Unit.BYTES:
        return human_bytes(int(value))
    if unit == Unit.SECONDS:
        seconds = f"{value:,g}" if isinstance(value, float) else f"{int(value):,}"
        return gettext("%(seconds)s s") % {"seconds": seconds}
    return f"{int(value):,}"


def human_bytes(amount: int) -> str:
    """Below 1 KB in bytes, else the largest unit up to TB that keeps the number at or above 1, one decimal."""
    if abs(amount) < 1024:
        return ngettext("%(amount)s byte", "%(amount)s bytes", amount) % {"amount": f"{amount:,}"}
    scaled, name = float(amount), BYTE_UNITS[0]
    for name in BYTE_UNITS:
        scaled /= 1024
        if abs(scaled) < 1024 or name == BYTE_UNITS[-1]:
            break
    return f"{scaled:,.1f} {name}"


@register.filter
def percent_of(used, limit) -> int:
    """Whole percent of `limit` that `used` is (0 for no limit, capped at 100 for a bar's width)."""
    if not limit:
        return 0
    return min(100, int(used * 100 // limit))
