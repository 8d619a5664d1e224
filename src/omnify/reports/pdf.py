"""The branded client report as a PDF (reportlab's platypus): pure layout, no I/O.

Given a :class:`ReportData` (numbers already computed by the service) it lays out: a
header band in the client's first brand colour with its logo, the KPIs of the period with
their change against the previous period, a daily spend/revenue chart, the top and bottom
campaigns and ads by ROAS, the actions taken and their measured effect, and the open
recommendations. Text is real text (searchable, copyable), not pictures of text.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

DEFAULT_PRIMARY = "#1F3A8A"


@dataclass
class KpiLine:
    label: str
    value: str
    change: float | None  # relative (0.12 = +12 %)
    higher_is_better: bool | None = True  # None: a change is neither good nor bad (spend)


@dataclass
class EntityLine:
    name: str
    platform: str
    spend: str
    roas: str
    conversions: str


@dataclass
class ReportData:
    org_name: str
    client_name: str
    since: date
    until: date
    currency_blocks: list[dict[str, Any]] = field(default_factory=list)  # {currency, kpis, chart_png}
    top_campaigns: list[EntityLine] = field(default_factory=list)
    bottom_campaigns: list[EntityLine] = field(default_factory=list)
    top_ads: list[EntityLine] = field(default_factory=list)
    bottom_ads: list[EntityLine] = field(default_factory=list)
    actions: list[list[str]] = field(default_factory=list)  # [when, what, by, effect]
    recommendations: list[list[str]] = field(default_factory=list)  # [title, module, confidence, impact]
    logo: bytes | None = None
    brand_colors: list[str] = field(default_factory=list)
    generated_at: str = ""


def _color(value: str | None, fallback: str = DEFAULT_PRIMARY) -> colors.Color:
    try:
        return colors.HexColor(value or fallback)
    except (ValueError, TypeError):
        return colors.HexColor(fallback)


def _change(line: KpiLine) -> str:
    if line.change is None:
        return "n/a"
    arrow = "▲" if line.change > 0 else ("▼" if line.change < 0 else "=")
    return f"{arrow} {line.change * 100:+.1f}%"


def _table(rows: list[list[Any]], widths: list[float], primary: colors.Color, *, zebra: bool = True) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1)
    style = [("BACKGROUND", (0, 0), (-1, 0), primary), ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
             ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"), ("FONTSIZE", (0, 0), (-1, -1), 8),
             ("VALIGN", (0, 0), (-1, -1), "TOP"), ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
             ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#D0D5DD"))]
    if zebra:
        for r in range(1, len(rows)):
            if r % 2 == 0:
                style.append(("BACKGROUND", (0, r), (-1, r), colors.HexColor("#F5F7FA")))
    table.setStyle(TableStyle(style))
    return table


def render_pdf(data: ReportData) -> bytes:
    buf = io.BytesIO()
    primary = _color(data.brand_colors[0] if data.brand_colors else None)
    accent = _color(data.brand_colors[1] if len(data.brand_colors) > 1 else None, "#F97316")
    styles = getSampleStyleSheet()
    h1 = ParagraphStyle("h1", parent=styles["Heading1"], textColor=colors.white, fontSize=18, leading=22)
    h2 = ParagraphStyle("h2", parent=styles["Heading2"], textColor=primary, fontSize=13, spaceBefore=8)
    small = ParagraphStyle("small", parent=styles["Normal"], fontSize=8, leading=10)
    cell = ParagraphStyle("cell", parent=styles["Normal"], fontSize=8, leading=10)
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=12 * mm,
                            bottomMargin=15 * mm, title=f"{data.client_name} report {data.since} to {data.until}",
                            author=data.org_name, subject="Performance report")
    width = A4[0] - 30 * mm
    story: list[Any] = []

    title = [Paragraph(f"{data.client_name}<br/><font size=10>Performance report · {data.since:%d %b %Y} to "
                       f"{data.until:%d %b %Y}</font>", h1)]
    logo_cell: Any = ""
    if data.logo:
        try:
            logo_cell = Image(io.BytesIO(data.logo), width=28 * mm, height=14 * mm, kind="proportional")
        except Exception:  # an unreadable logo must not cost the client its report
            logo_cell = ""
    band = Table([[title, logo_cell]], colWidths=[width - 34 * mm, 34 * mm])
    band.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), primary), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                              ("LEFTPADDING", (0, 0), (-1, -1), 8), ("TOPPADDING", (0, 0), (-1, -1), 8),
                              ("BOTTOMPADDING", (0, 0), (-1, -1), 8), ("ALIGN", (1, 0), (1, 0), "RIGHT")]))
    story += [band, Spacer(1, 4 * mm),
              Paragraph(f"Prepared by {data.org_name} with Omnify · generated {data.generated_at}", small)]

    if not data.currency_blocks:
        story.append(Paragraph("No spend was recorded in this period.", styles["Normal"]))
    for block in data.currency_blocks:
        story.append(Paragraph(f"Key figures ({block['currency']})", h2))
        rows = [["Metric", "This period", "Change vs previous"]]
        for line in block["kpis"]:
            rows.append([line.label, line.value, _change(line)])
        table = _table(rows, [width * 0.4, width * 0.3, width * 0.3], primary)
        for r, line in enumerate(block["kpis"], start=1):
            if line.change and line.higher_is_better is not None:
                good = (line.change > 0) == line.higher_is_better
                table.setStyle(TableStyle([("TEXTCOLOR", (2, r), (2, r),
                                            colors.HexColor("#15803D") if good else colors.HexColor("#B91C1C"))]))
        story.append(table)
        if block.get("chart_png"):
            story += [Spacer(1, 3 * mm), Image(io.BytesIO(block["chart_png"]), width=width, height=width * 0.38)]

    def entities(title_text: str, lines: list[EntityLine]) -> None:
        if not lines:
            return
        rows = [["Name", "Platform", "Spend", "ROAS", "Conversions"]]
        rows += [[Paragraph(e.name, cell), e.platform, e.spend, e.roas, e.conversions] for e in lines]
        story.append(KeepTogether([Paragraph(title_text, h2), _table(
            rows, [width * 0.42, width * 0.16, width * 0.16, width * 0.1, width * 0.16], primary)]))

    entities("Top campaigns (by ROAS)", data.top_campaigns)
    entities("Bottom campaigns (by ROAS)", data.bottom_campaigns)
    entities("Top ads (by ROAS)", data.top_ads)
    entities("Bottom ads (by ROAS)", data.bottom_ads)

    story.append(Paragraph("Actions taken and their effect", h2))
    if data.actions:
        rows = [["When", "What", "By", "Effect (7 days before → after)"]]
        rows += [[a[0], Paragraph(a[1], cell), Paragraph(a[2], cell), Paragraph(a[3], cell)] for a in data.actions]
        story.append(_table(rows, [width * 0.14, width * 0.4, width * 0.18, width * 0.28], accent))
    else:
        story.append(Paragraph("No changes were made to the accounts in this period.", styles["Normal"]))

    story.append(Paragraph("Open recommendations", h2))
    if data.recommendations:
        rows = [["Recommendation", "Kind", "Confidence", "Expected impact"]]
        rows += [[Paragraph(r[0], cell), r[1], r[2], r[3]] for r in data.recommendations]
        story.append(_table(rows, [width * 0.52, width * 0.16, width * 0.14, width * 0.18], accent))
    else:
        story.append(Paragraph("Nothing is waiting for a decision.", styles["Normal"]))

    def footer(canvas: Any, doc_: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.HexColor("#6B7280"))
        canvas.drawString(15 * mm, 8 * mm, f"{data.client_name} · {data.since} to {data.until}")
        canvas.drawRightString(A4[0] - 15 * mm, 8 * mm, f"Page {doc_.page}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
