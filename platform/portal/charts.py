"""Small charts as inline SVG, drawn on the server: no script, no CDN, readable without CSS.

Every text that reaches the markup is escaped here, so callers may pass values
straight from a dataset.
"""

from __future__ import annotations

from datetime import date
from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe

from portal.templatetags.units import human

ACCENT = "#0b7a5b"
TRACK = "#e6ebf0"
INK = "#1d2733"
LIMIT = "#b3261e"


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


def bar_chart(
    groups: list[tuple[Any, int]], *, width: int = 560, label_width: int = 140, unit: str = "count"
) -> SafeString:
    """Horizontal bars, one per (label, amount), scaled to the largest; amounts written in human units (`unit`)."""
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
            f"<g><title>{escape(text)}: {escape(human(count, unit))}</title>"
            f'<text x="{label_width - 6}" y="{y + 11}" text-anchor="end">{escape(text[:24])}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar_height}" rx="2" fill="{ACCENT}"/>'
            f'<text x="{label_width + length + 4}" y="{y + 11}">{escape(human(count, unit))}</text></g>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built above from escaped text and numbers


def daily_columns(
    days: list[tuple[date, int]],
    *,
    label: str,
    unit: str = "count",
    limit: int | None = None,
    width: int = 600,
    height: int = 140,
) -> SafeString:
    """One column per (day, amount), oldest first, with a dashed line at the daily `limit` when there is one.

    Scales to the larger of the busiest day and the limit, so a quiet month stays visibly far from it.
    `label` names what is counted ("bytes scanned"); amounts are written in human units (`unit`).
    """
    top, bottom, left = 14, 18, 2
    plot_height = height - top - bottom
    scale = max([amount for _, amount in days] + [limit or 0]) or 1
    step = (width - left) / max(1, len(days))
    column = max(1.0, round(step * 0.7, 1))
    busiest = max(days, key=lambda item: item[1], default=None)
    summary = f"{label}, {days[0][0]:%Y-%m-%d} to {days[-1][0]:%Y-%m-%d}" if days else f"{label}: no days"
    if days:
        summary += f"; today {human(days[-1][1], unit)}"
        if busiest and busiest[1]:
            summary += f", busiest {busiest[0]:%Y-%m-%d} with {human(busiest[1], unit)}"
    if limit is not None:
        summary += f"; daily limit {human(limit, unit)}"
    parts = [
        f'<svg class="chart daily-columns" role="img" aria-label="{escape(summary)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-size="11" fill="{INK}">'
        f"<title>{escape(summary)}</title>",
        f'<line x1="0" y1="{top + plot_height}" x2="{width}" y2="{top + plot_height}" stroke="{TRACK}"/>',
    ]
    for index, (day, amount) in enumerate(days):
        bar = round(amount / scale * plot_height, 1)
        x = round(left + index * step, 1)
        parts.append(
            f"<g><title>{day:%Y-%m-%d}: {escape(human(amount, unit))}</title>"
            f'<rect x="{x}" y="{round(top + plot_height - bar, 1)}" width="{column}" height="{max(bar, 0.5)}" '
            f'fill="{ACCENT if amount else TRACK}"/></g>'
        )
    if limit is not None:
        y = round(top + plot_height - limit / scale * plot_height, 1)
        parts.append(
            f'<line x1="0" y1="{y}" x2="{width}" y2="{y}" stroke="{LIMIT}" stroke-dasharray="4 3"/>'
            f'<text x="{width - 2}" y="{max(10, y - 3)}" text-anchor="end" fill="{LIMIT}">limit {escape(human(limit, unit))}</text>'
        )
    if days:
        parts.append(
            f'<text x="{left}" y="{height - 4}">{days[0][0]:%m-%d}</text>'
            f'<text x="{width - 2}" y="{height - 4}" text-anchor="end">{days[-1][0]:%m-%d}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built above from escaped text and numbers
