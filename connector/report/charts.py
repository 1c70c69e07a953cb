"""The report's charts, drawn by matplotlib as inline SVG: no pyplot (so no interactive backend is ever chosen and
no global figure state is kept), the bundled DejaVu fonts only, text kept as text (``svg.fonttype: none``) so the
page's font and colour apply, and no external reference of any kind.

Axes, ticks and labels are drawn in a placeholder colour that becomes ``currentColor``, so one chart reads on the
light page, in dark mode and on paper; the series colours are mid-tones that hold on both backgrounds.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from datetime import date
from typing import Any

from markupsafe import Markup, escape
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

from connector.inventory.report import PostureReport

INK = "#010203"  # replaced by currentColor in the SVG text
SEVERITY_COLOURS = {"critical": "#d62839", "high": "#f77f00", "medium": "#d4a000", "low": "#4c9be8"}
SERIES = ("#4c9be8", "#2a9d8f", "#9b5de5", "#f77f00", "#d62839")
STATE_COLOURS = {"expired": "#d62839", "expiring": "#f77f00", "valid": "#2a9d8f"}
_STYLE: dict[str, Any] = {
    "svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 9,
    "text.color": INK, "axes.labelcolor": INK, "axes.edgecolor": INK, "xtick.color": INK, "ytick.color": INK,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": INK, "grid.alpha": 0.15,
    "legend.frameon": False, "figure.dpi": 96,
}
_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def charts(report: PostureReport) -> dict[str, Markup]:
    """Each chart of the report by name, as an inline ``<svg>`` element (absent when there is nothing to draw)."""
    days = [float(x) for x in date2num([date.fromisoformat(point.day) for point in report.days])]  # type: ignore[no-untyped-call]
    drawn: dict[str, Markup] = {}
    with rc_context(_STYLE):  # type: ignore[arg-type]  # its keys are typed as a Literal of every rcParam
        drawn["open_by_severity"] = _open_by_severity(report, days)
        drawn["opened_resolved"] = _opened_resolved(report, days)
        drawn["risk"] = _line(days, [("risk score", [_number(p.values.get("risk_score")) for p in report.days])],
                              "risk score", "Risk score at the end of each day")
        drawn["posture"] = _line(days, [
            (label, [_number(p.values.get(name)) for p in report.days]) for name, label in (
                ("https_routes_pct", "HTTPS routes ok"), ("header_baseline_pct", "header baseline"),
                ("valid_certificates_pct", "valid certificates"), ("remediation.rate_pct", "fixed within SLA"))],
            "%", "Posture KPIs at the end of each day", limits=(0, 105))
        scored = [(c.name, c.score) for c in report.compliance if c.score is not None]
        if scored:
            drawn["compliance"] = _bars([name for name, _ in scored], [float(s or 0) for _, s in scored],
                                        [SERIES[1]] * len(scored), "% of controls evaluated with no open failure",
                                        "Compliance score per framework", limits=(0, 100))
        if report.certificates:
            drawn["certificates"] = _bars(
                [f"{c.asset} :{c.target}" for c in report.certificates],
                [float(c.days_left) for c in report.certificates],
                [STATE_COLOURS[c.state] for c in report.certificates], "days left (negative: expired)",
                "Certificate expiry: days left per TLS endpoint", marks=(0, 30))
        if report.top_assets:
            drawn["top_assets"] = _bars([a.asset for a in report.top_assets], [a.risk for a in report.top_assets],
                                        [SEVERITY_COLOURS["high"]] * len(report.top_assets), "risk score",
                                        "Assets by risk score")
    return drawn


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _figure(height: float = 2.6) -> Figure:
    return Figure(figsize=(7.2, height), layout="constrained")


def _dates(axes: Axes) -> None:
    axes.xaxis_date()
    locator = AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _open_by_severity(report: PostureReport, days: Sequence[float]) -> Markup:
    figure = _figure()
    axes = figure.add_subplot()
    names = list(SEVERITY_COLOURS)
    series = [[_number(p.values.get(f"open.{name}")) for p in report.days] for name in names]
    axes.stackplot(days, series, labels=names, colors=[SEVERITY_COLOURS[n] for n in names], alpha=0.85)
    axes.set_ylabel("open findings")
    axes.set_ylim(bottom=0)
    figure.legend(loc="outside upper left", ncols=4, fontsize=8)
    _dates(axes)
    return _svg(figure, "Open findings by severity at the end of each day")


def _opened_resolved(report: PostureReport, days: Sequence[float]) -> Markup:
    figure = _figure(2.2)
    axes = figure.add_subplot()
    axes.bar(days, [p.opened for p in report.days], color=SEVERITY_COLOURS["high"], label="opened")
    axes.bar(days, [-p.resolved for p in report.days], color=SERIES[1], label="resolved")
    axes.axhline(0, color=INK, linewidth=0.8)
    axes.set_ylabel("findings per day")
    figure.legend(loc="outside upper left", ncols=2, fontsize=8)
    _dates(axes)
    return _svg(figure, "Findings opened (up) and resolved (down) per day")


def _line(days: Sequence[float], series: Sequence[tuple[str, Sequence[float]]], unit: str, title: str,
          limits: tuple[float, float] | None = None) -> Markup:
    figure = _figure()
    axes = figure.add_subplot()
    for (label, values), colour in zip(series, SERIES, strict=False):
        axes.plot(days, values, label=label, color=colour, linewidth=1.8, marker="o", markersize=2.5)
    axes.set_ylabel(unit)
    if limits:
        axes.set_ylim(*limits)
    else:
        axes.set_ylim(bottom=0)
    if len(series) > 1:
        figure.legend(loc="outside upper left", ncols=4, fontsize=8)
    _dates(axes)
    return _svg(figure, title)


def _bars(labels: Sequence[str], values: Sequence[float], colours: Sequence[str], unit: str, title: str, *,
          limits: tuple[float, float] | None = None, marks: Sequence[float] = ()) -> Markup:
    figure = _figure(max(1.4, 0.32 * len(labels) + 0.8))
    axes = figure.add_subplot()
    positions = list(range(len(labels)))[::-1]  # first label on top
    axes.barh(positions, values, color=list(colours), height=0.6)
    axes.set_yticks(positions, labels=list(labels))
    axes.grid(axis="y", visible=False)
    axes.set_xlabel(unit)
    for mark in marks:
        axes.axvline(mark, color=INK, linewidth=0.8, linestyle="--" if mark else "-")
    if limits:
        axes.set_xlim(*limits)
    for position, value in zip(positions, values, strict=True):
        axes.annotate(f"{value:g}", (value, position), xytext=(3 if value >= 0 else -3, 0),
                      textcoords="offset points", va="center", ha="left" if value >= 0 else "right", fontsize=8)
    return _svg(figure, title)


def _svg(figure: Figure, title: str) -> Markup:
    """The figure as an inline ``<svg>``: no XML prologue or DOCTYPE, the placeholder ink as currentColor, and a
    title for screen readers, ids prefixed by the title. matplotlib escapes the text it draws (asset names are user
    data)."""
    buffer = io.StringIO()
    with rc_context({"svg.hashsalt": f"postern-report {title}"}):  # ids stay unique across the page's charts
        figure.savefig(buffer, format="svg", transparent=True, metadata={"Date": None, "Creator": None})
    prefix = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    text = _PROLOGUE.sub("", buffer.getvalue(), count=1).replace(INK, "currentColor")
    # matplotlib numbers its ids per figure (figure_1, axes_1, clip paths, markers): prefixed, so that several
    # charts in one page keep their ids unique and each url(#id) and href="#id" finds its own
    text = text.replace(' id="', f' id="{prefix}-').replace("url(#", f"url(#{prefix}-")
    text = text.replace('href="#', f'href="#{prefix}-')
    text = text.replace("<svg ", f'<svg class="chart" role="img" aria-label="{escape(title)}" ', 1)
    return Markup(text)  # matplotlib's own SVG output, its text escaped by matplotlib
