"""Server-rendered inline SVG time-series charts of vital signs with shaded triage windows.

The dashboard draws its charts on the server: no chart library, no JavaScript, nothing to
download. Each chart is one ``<svg role="img">`` with a title and description for screen
readers; every triage window is shaded with its verdict colour *and* a fill pattern *and* a
text letter, so the verdict never depends on telling colours apart.

Example
-------
>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> svg = render_vital_chart(
...     chart_id="hr", title="Heart rate", unit="/min",
...     points=[ChartPoint(t0, 80.0), ChartPoint(t0 + timedelta(minutes=5), 84.0)],
...     windows=[ChartWindow(t0, t0 + timedelta(minutes=15), TriageLevel.MILD, "mild")],
...     start=t0, end=t0 + timedelta(minutes=15),
... )
>>> svg.startswith("<svg")
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from iomt.domain.triage import TriageLevel

__all__ = [
    "LEVEL_STYLES",
    "ChartPoint",
    "ChartWindow",
    "LevelStyle",
    "format_value",
    "nice_ticks",
    "render_vital_chart",
    "time_ticks",
]


@dataclass(frozen=True, slots=True)
class LevelStyle:
    """How one triage level is drawn: colour (Okabe-Ito, colour-blind safe), pattern, letter."""

    colour: str
    pattern: str
    letter: str
    icon: str


#: Okabe-Ito colours ordered from calm to urgent; each level also has its own pattern and
#: letter, so the verdict is readable in grey scale and by people who cannot tell red/green.
LEVEL_STYLES: dict[TriageLevel, LevelStyle] = {
    TriageLevel.NORMAL: LevelStyle("#0072B2", "none", "N", "\u25cf"),  # blue, solid dot
    TriageLevel.MILD: LevelStyle("#F0E442", "dots", "M", "\u25b2"),  # yellow, triangle
    TriageLevel.SERIOUS: LevelStyle("#E69F00", "diagonal", "S", "\u25c6"),  # orange, diamond
    TriageLevel.CRITICAL: LevelStyle("#D55E00", "cross", "C", "\u2716"),  # vermillion, cross
}


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One reading: time (timezone-aware) and value in the vital's canonical unit."""

    time: datetime
    value: float


@dataclass(frozen=True, slots=True)
class ChartWindow:
    """One triage window to shade: its span, verdict level and a hover text."""

    start: datetime
    end: datetime
    level: TriageLevel
    text: str


# Plot geometry (SVG user units; the SVG scales to its container with viewBox).
_WIDTH = 720
_HEIGHT = 190
_LEFT = 48
_RIGHT = 12
_TOP = 22
_BOTTOM = 28
#: Most readings drawn as dots; a denser series is drawn as a line only.
MAX_DOTS = 150
#: A gap longer than this between two readings breaks the line (a dropout is not a trend).
_MAX_GAP = timedelta(minutes=10)


def nice_ticks(low: float, high: float, *, count: int = 5) -> list[float]:
    """Return round tick values covering ``[low, high]`` (about ``count`` of them).

    Parameters
    ----------
    low, high
        Data range; ``high`` may equal ``low`` (a flat series).
    count
        Desired number of ticks.
    """
    if not math.isfinite(low) or not math.isfinite(high):
        raise ValueError("tick range must be finite")
    if high < low:
        low, high = high, low
    if high == low:
        high, low = high + 1.0, low - 1.0
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step)
    last = math.ceil(high / step)
    return [round(i * step, 10) for i in range(first, last + 1)]


def time_ticks(start: datetime, end: datetime, *, max_ticks: int = 8) -> list[datetime]:
    """Return aligned tick times in ``[start, end]`` at a round step (5 min to 1 day)."""
    span = (end - start).total_seconds()
    if span <= 0:
        return [start]
    steps_min = (5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
    step_min = next((s for s in steps_min if span / (s * 60) <= max_ticks), steps_min[-1])
    step = step_min * 60
    epoch = math.ceil(start.timestamp() / step) * step
    ticks = []
    while epoch <= end.timestamp():
        ticks.append(datetime.fromtimestamp(epoch, tz=start.tzinfo))
        epoch += step
    return ticks


def _patterns(prefix: str) -> str:
    """SVG ``<defs>`` with one fill pattern per triage level (ids unique per chart)."""
    parts = []
    for level, style in LEVEL_STYLES.items():
        pid = f"{prefix}-{level.label}"
        colour = style.colour
        if style.pattern == "dots":
            body = f'<circle cx="3" cy="3" r="1.4" fill="{colour}"/>'
        elif style.pattern == "diagonal":
            body = (
                f'<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="{colour}" '
                'stroke-width="1.5"/>'
            )
        elif style.pattern == "cross":
            body = f'<path d="M0,0 L6,6 M6,0 L0,6" stroke="{colour}" stroke-width="1.5"/>'
        else:
            body = ""
        parts.append(
            f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
            f'<rect width="6" height="6" fill="{colour}" fill-opacity="0.18"/>{body}</pattern>'
        )
    return "<defs>" + "".join(parts) + "</defs>"


def format_value(value: float) -> str:
    """A tick or reading value with at most one decimal and no trailing zero."""
    return _fmt(round(value, 1))


def _fmt(value: float) -> str:
    """Format a tick or reading value without trailing zeros."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"


def render_vital_chart(
    *,
    chart_id: str,
    title: str,
    unit: str,
    points: Sequence[ChartPoint],
    windows: Sequence[ChartWindow],
    start: datetime,
    end: datetime,
    reference: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    total: int | None = None,
) -> Markup:
    """Render one vital's time series as an accessible inline SVG.

    Parameters
    ----------
    chart_id
        Unique on the page (prefixes the pattern ids and the title/description ids).
    title, unit
        Shown above the plot and read by screen readers.
    points
        Readings in time order (unsorted input is sorted).
    windows
        Triage windows to shade behind the line; each gets its level's pattern and letter.
    start, end
        Time span of the x axis (shared by all charts of a page so they line up).
    reference
        Optional normal range drawn as a dashed band, e.g. ``(95, 100)`` for SpO2.
    y_range
        Minimum y span to show; the data extends it when outside.
    total
        How many readings ``points`` stand for, when they were downsampled.

    Returns
    -------
    Markup
        The ``<svg>`` element, safe to insert into a Jinja template.
    """
    if end <= start:
        end = start + timedelta(minutes=15)
    pts = sorted((p for p in points if start <= p.time <= end), key=lambda p: p.time)
    values = [p.value for p in pts]
    lo_candidates = (
        values + ([y_range[0]] if y_range else []) + ([reference[0]] if reference else [])
    )
    hi_candidates = (
        values + ([y_range[1]] if y_range else []) + ([reference[1]] if reference else [])
    )
    lo = min(lo_candidates, default=0.0)
    hi = max(hi_candidates, default=1.0)
    ticks = nice_ticks(lo, hi)
    y_lo, y_hi = min(ticks[0], lo), max(ticks[-1], hi)
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    span = (end - start).total_seconds()

    def x_of(moment: datetime) -> float:
        return _LEFT + plot_w * (moment - start).total_seconds() / span

    def y_of(value: float) -> float:
        return _TOP + plot_h * (1 - (value - y_lo) / (y_hi - y_lo))

    cid = escape(chart_id)
    out: list[str] = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-labelledby="{cid}-title {cid}-desc" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{cid}-title">{escape(title)} ({escape(unit)})</title>',
        f'<desc id="{cid}-desc">{escape(_describe(pts, windows, unit, total))}</desc>',
        _patterns(str(cid)),
    ]
    # Triage windows behind everything else.
    for window in windows:
        x1 = max(x_of(window.start), _LEFT)
        x2 = min(x_of(window.end), _LEFT + plot_w)
        if x2 <= x1:
            continue
        style = LEVEL_STYLES[window.level]
        out.append(
            f'<g class="window level-{window.level.label}"><title>{escape(window.text)}</title>'
            f'<rect x="{x1:.1f}" y="{_TOP}" width="{x2 - x1:.1f}" height="{plot_h}" '
            f'fill="url(#{cid}-{window.level.label})"/>'
        )
        if x2 - x1 >= 12:
            out.append(
                f'<text class="window-letter" x="{(x1 + x2) / 2:.1f}" y="{_TOP - 6}" '
                f'text-anchor="middle">{style.letter}</text>'
            )
        out.append("</g>")
    if reference:
        ry1, ry2 = y_of(reference[1]), y_of(reference[0])
        out.append(
            f'<rect class="reference" x="{_LEFT}" y="{ry1:.1f}" width="{plot_w}" '
            f'height="{max(ry2 - ry1, 0):.1f}"><title>normal range {_fmt(reference[0])}'
            f"\u2013{_fmt(reference[1])} {escape(unit)}</title></rect>"
        )
    # Axes and grid.
    for tick in ticks:
        y = y_of(tick)
        out.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(tick)}</text>"
        )
    for moment in time_ticks(start, end):
        x = x_of(moment)
        out.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_TOP + plot_h}"/>'
            f'<text class="tick" x="{x:.1f}" y="{_HEIGHT - 8}" text-anchor="middle">'
            f"{moment.strftime('%H:%M')}</text>"
        )
    out.append(f'<rect class="frame" x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}"/>')
    # The series: one polyline per run without a long gap, and a dot per reading.
    for run in _runs(pts):
        coords = " ".join(f"{x_of(p.time):.1f},{y_of(p.value):.1f}" for p in run)
        if len(run) > 1:
            out.append(f'<polyline class="series" points="{coords}"/>')
    # Dots (with a hover text each) only where they stay apart; dense series keep the line.
    for p in pts if len(pts) <= MAX_DOTS else ():
        out.append(
            f'<circle class="dot" cx="{x_of(p.time):.1f}" cy="{y_of(p.value):.1f}" r="2">'
            f"<title>{p.time.strftime('%H:%M:%S')} {_fmt(p.value)} {escape(unit)}</title></circle>"
        )
    if not pts:
        out.append(
            f'<text class="empty" x="{_LEFT + plot_w / 2:.1f}" y="{_TOP + plot_h / 2:.1f}" '
            f'text-anchor="middle">no readings in this period</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def _runs(points: Sequence[ChartPoint]) -> list[list[ChartPoint]]:
    """Split the series where two readings are further apart than the allowed gap."""
    runs: list[list[ChartPoint]] = []
    for point in points:
        if runs and point.time - runs[-1][-1].time <= _MAX_GAP:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def _describe(
    points: Sequence[ChartPoint], windows: Sequence[ChartWindow], unit: str, total: int | None
) -> str:
    """A one-sentence text summary of the chart for screen readers."""
    if not points:
        return "No readings in this period."
    values = [p.value for p in points]
    last = points[-1]
    text = (
        f"{total or len(points)} readings, from {_fmt(min(values))} to {_fmt(max(values))} {unit}; "
        f"latest {_fmt(last.value)} {unit} at {last.time.strftime('%H:%M')} UTC."
    )
    if windows:
        worst = max(windows, key=lambda w: w.level)
        text += f" Worst triage window: {worst.level.label} ({worst.text})."
    return text
