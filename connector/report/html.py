"""The report as one HTML page: a Jinja2 template shipped in the package (``templates/posture.html.j2``),
autoescaped, with the charts of charts.py inline. The page asks for nothing: no script, font, image or stylesheet
from anywhere, so it opens the same from a mail attachment, an air-gapped laptop or a printer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from connector import __version__
from connector.inventory.report import SEVERITIES, PostureReport
from connector.report.charts import SEVERITY_COLOURS, STATE_COLOURS, charts

_ENV = Environment(loader=PackageLoader("connector.report", "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def html(report: PostureReport) -> str:
    template = _ENV.get_template("posture.html.j2")
    return template.render(report=report, data=report.as_dict(), charts=charts(report), version=__version__,
                           severities=SEVERITIES, severity_colours=SEVERITY_COLOURS, state_colours=STATE_COLOURS,
                           when=_when, pct=_pct)


def _when(value: str | datetime | None) -> str:
    if value is None:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:g}%"
