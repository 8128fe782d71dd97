"""A bar chart as inline SVG: no script, no external resource, every label escaped."""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT, PAD = 840, 280, 40
MAX_POINTS = 400  # more bars than pixels helps nobody; the table has every row


def bar_chart(title: str, points: list[tuple[str, float]]) -> str:
    points = points[:MAX_POINTS]
    top = max((v for _, v in points), default=0.0) or 1.0
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / max(len(points), 1)
    widest = max((len(name) for name, _ in points), default=1) * 5.5 + 8  # px at 9 px font
    every = max(1, math.ceil(widest / step))  # axis labels that do not overlap
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{HEIGHT}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" aria-label="{escape(title)}">',
        f'<text x="{PAD}" y="20" font-size="14">{escape(title)}</text>',
        f'<text x="4" y="{PAD + 4}" font-size="10">{_number(top)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"'
        ' stroke="#333"/>',
    ]
    for i, (name, value) in enumerate(points):
        h = inner_h * max(value, 0.0) / top
        x = PAD + i * step
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{max(step * 0.8, 1):.1f}"'
            f' height="{h:.1f}" fill="#4a78b5"><title>{escape(name)}: {_number(value)}'
            "</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - PAD + 14}" font-size="9">{escape(name)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
