"""The traffic chart both sites draw (workers.common.ui charts): the last hour as inline SVG,
one line per direction, scaled to the busiest sample, with a summary a screen reader says."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.template import Context, Template

from workers.common.ui.templatetags.charts import HEIGHT, WIDTH, traffic_chart

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


@dataclass
class Point:
    at: dt.datetime
    bytes_in: int
    bytes_out: int


def _coords(svg: str, series: str) -> list[tuple[float, float]]:
    found = re.search(rf'<polyline points="([^"]*)"[^>]*data-series="{series}"', svg)
    assert found, svg
    return [tuple(map(float, pair.split(","))) for pair in found.group(1).split()]  # type: ignore[misc]


def test_the_last_hour_is_drawn_scaled_to_its_busiest_sample() -> None:
    points = [
        Point(NOW - dt.timedelta(minutes=90), 10**9, 10**9),  # older than the hour: left out
        Point(NOW - dt.timedelta(minutes=60), 0, 0),
        Point(NOW - dt.timedelta(minutes=30), 2048, 512),
        Point(NOW, 1024, 0),
    ]
    svg = str(traffic_chart(points, NOW))
    assert 'data-samples="3"' in svg and "last hour: 3.0\xa0KB in, 512\xa0bytes out" in svg
    inbound = _coords(svg, "in")
    assert [x for x, _ in inbound] == [0.0, WIDTH / 2, WIDTH]
    assert inbound[1][1] == HEIGHT - 1 - (HEIGHT - 4)  # the peak reaches the top margin
    assert inbound[0][1] == HEIGHT - 1  # no bytes: on the baseline
    assert _coords(svg, "out")[2][1] == HEIGHT - 1


def test_no_samples_draws_the_baseline_and_says_so() -> None:
    svg = str(traffic_chart([], NOW))
    assert "<polyline" not in svg and "no samples yet" in svg and 'data-samples="0"' in svg


def test_the_template_tag_renders_inline_svg_without_style_or_script() -> None:
    html = Template("{% load charts %}{% traffic_chart points now %}").render(
        Context({"points": [Point(NOW, 5, 7)], "now": NOW})
    )
    assert html.startswith('<svg class="chart"') and html.endswith("</svg>")
    assert "style=" not in html and "<script" not in html
