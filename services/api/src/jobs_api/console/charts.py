"""Sparklines drawn on the server as inline SVG: no charting library, no script, nothing inline to allow."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

WIDTH, HEIGHT = 120, 24


def sparkline(values: Sequence[float], label: str, *, maximum: float | None = None) -> Markup:
    """An SVG polyline of ``values`` (oldest first), scaled to the largest value (or ``maximum``)."""
    if not values:
        return Markup('<svg class="spark" role="img" aria-label="{}" width="{}" height="{}"></svg>').format(
            label, WIDTH, HEIGHT)
    top = maximum if maximum is not None else max(values)
    top = top if top > 0 else 1.0
    step = WIDTH / max(1, len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{HEIGHT - 1 - (min(v, top) / top) * (HEIGHT - 2):.1f}" for i, v in enumerate(values)
    )
    return Markup(
        '<svg class="spark" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}">'
        '<title>{}</title><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/></svg>'
    ).format(label, WIDTH, HEIGHT, WIDTH, HEIGHT, label, points)
