"""The traffic chart both sites draw for a route: the last hour of samples as a small inline
SVG, drawn on the server (no script, no charting library, nothing a CSP has to allow)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from django import template
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()

WIDTH, HEIGHT = 180, 40
SPAN = dt.timedelta(hours=1)
SERIES = (("bytes_in", "#2563eb", "in"), ("bytes_out", "#15803d", "out"))


class Point(Protocol):
    """A sample as each site keeps it: the end of its period and the bytes of the period."""

    at: dt.datetime
    bytes_in: int
    bytes_out: int


def _line(points: Sequence[Point], field: str, start: dt.datetime, peak: int) -> str:
    coords = []
    for point in points:
        x = (point.at - start) / SPAN * WIDTH
        y = HEIGHT - 1 - getattr(point, field) / peak * (HEIGHT - 4)
        coords.append(f"{x:.1f},{y:.1f}")
    return " ".join(coords)


@register.simple_tag
def traffic_chart(points: Sequence[Point], now: dt.datetime | None = None) -> SafeString:
    """Bytes in (blue) and out (green) per sample over the hour that ends `now`; the title
    (a tooltip, and what a screen reader says) sums it up."""
    now = now or timezone.now()
    start = now - SPAN
    shown = sorted((p for p in points if start <= p.at <= now), key=lambda p: p.at)
    peak = max((max(p.bytes_in, p.bytes_out) for p in shown), default=0)
    if shown:
        total_in = filesizeformat(sum(p.bytes_in for p in shown))
        total_out = filesizeformat(sum(p.bytes_out for p in shown))
        summary = f"last hour: {total_in} in, {total_out} out, {len(shown)} samples"
    else:
        summary = "last hour: no samples yet"
    lines = format_html_join(
        "",
        '<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5" data-series="{}"/>',
        (
            (_line(shown, field, start, peak or 1), color, name)
            for field, color, name in SERIES
            if shown
        ),
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="{s}" data-samples="{n}"><title>{s}</title>'
        '<line x1="0" y1="{b}" x2="{w}" y2="{b}" stroke="#dfe4ea"/>{lines}</svg>',
        w=WIDTH,
        h=HEIGHT,
        b=HEIGHT - 0.5,
        s=summary,
        n=len(shown),
        lines=lines,
    )
