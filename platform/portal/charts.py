"""Small charts as inline SVG, drawn on the server: no script, no CDN, readable without CSS.

Every text that reaches the markup is escaped here, so callers may pass values
straight from a dataset.
"""

from __future__ import annotations

from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe

ACCENT = "#0b7a5b"
TRACK = "#e6ebf0"
INK = "#1d2733"


def share_bars(shares: list[tuple[str, float | None]], *, width: int = 160) -> SafeString:
    """One thin bar per (label, share 0..1), e.g. a column's non-null and distinct shares."""
    bar_height, gap = 8, 14
    height = gap * len(shares)
    parts = [
        f'<svg class="chart share-bars" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for index, (label, share) in enumerate(shares):
        y = index * gap + 2
        percent = "n/a" if share is None else f"{share:.0%}"
        title = escape(f"{label}: {percent}")
        filled = 0 if share is None else round(max(0.0, min(1.0, share)) * width, 1)
        parts.append(
            f'<g><title>{title}</title><rect x="0" y="{y}" width="{width}" height="{bar_height}" rx="2" fill="{TRACK}"/>'
            f'<rect x="0" y="{y}" width="{filled}" height="{bar_height}" rx="2" fill="{ACCENT}"/></g>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built above from escaped text and numbers


def bar_chart(groups: list[tuple[Any, int]], *, width: int = 560, label_width: int = 140) -> SafeString:
    """Horizontal bars, one per (label, count), scaled to the largest count."""
    bar_height, gap = 14, 20
    height = max(gap, gap * len(groups))
    largest = max((count for _, count in groups), default=0) or 1
    plot_width = width - label_width - 70
    parts = [
        f'<svg class="chart bar-chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-size="12" fill="{INK}">'
    ]
    for index, (label, count) in enumerate(groups):
        y = index * gap + 3
        text = "—" if label is None else str(label)
        length = round(count / largest * plot_width, 1)
        parts.append(
            f"<g><title>{escape(text)}: {count:,}</title>"
            f'<text x="{label_width - 6}" y="{y + 11}" text-anchor="end">{escape(text[:24])}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar_height}" rx="2" fill="{ACCENT}"/>'
            f'<text x="{label_width + length + 4}" y="{y + 11}">{count:,}</text></g>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built above from escaped text and numbers
