"""Server-rendered HTML for the console: the page frame, tables, forms and an inline SVG chart.

Every value is escaped where it is written; nothing here runs script (the pages send a CSP that
forbids it), so the console works with JavaScript off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

STYLE = """
body{font:14px system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:18px;align-items:center}
header a{color:#cfd6e4;text-decoration:none}header a.on{color:#fff;font-weight:600}
header form{margin-left:auto}main{padding:20px}table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #dde1e8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.card{background:#fff;border:1px solid #dde1e8;padding:12px;margin:0 0 16px}
.bad{color:#b00020}.ok{color:#0a7d32}mark{background:#ffe08a}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin:0 0 12px}
form.filters label{display:flex;flex-direction:column;font-size:12px}
ul.tree{list-style:none;padding-left:18px;border-left:1px dashed #aab}
"""


def e(value: object) -> str:
    """`value` as HTML text ('' for None)."""
    return "" if value is None else escape(str(value), quote=True)


def page(
    title: str,
    body: str,
    *,
    nav: Sequence[tuple[str, str]] = (),
    current: str = "",
    who: str = "",
    csrf: str = "",
) -> str:
    """A whole document: the navigation the role may use, a sign-out form, and `body`."""
    links = "".join(
        f'<a href="{e(href)}"{" class=on" if href == current else ""}>{e(label)}</a>'
        for href, label in nav
    )
    signout = (
        f'<form method="post" action="/console/logout"><span>{e(who)}</span> '
        f'<input type="hidden" name="csrf" value="{e(csrf)}"><button>Sign out</button></form>'
        if csrf
        else ""
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)} · agentgw"
        f"</title><style>{STYLE}</style></head><body><header><strong>agentgw</strong>{links}"
        f"{signout}</header><main><h1>{e(title)}</h1>{body}</main></body></html>"
    )


def table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    raw: Sequence[str] = (),
    empty: str = "Nothing to show.",
) -> str:
    """An HTML table; columns named in `raw` hold HTML this module made already."""
    rows = list(rows)
    if not rows:
        return f"<p>{e(empty)}</p>"
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if c in raw:
                text = str(value)
            else:
                text = e(_number(value) if isinstance(value, int | float) and numeric else value)
            cells.append(f"<td{' class=num' if numeric else ''}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _number(value: float | int) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.6f}".rstrip("0").rstrip(".") if value else "0"


def field(name: str, label: str, value: str | None, *, kind: str = "text") -> str:
    return (
        f'<label>{e(label)}<input type="{kind}" name="{e(name)}" value="{e(value or "")}"></label>'
    )


def select(name: str, label: str, options: Sequence[str], chosen: str | None) -> str:
    opts = "".join(
        f'<option value="{e(o)}"{" selected" if o == chosen else ""}>{e(o or "—")}</option>'
        for o in options
    )
    return f'<label>{e(label)}<select name="{e(name)}">{opts}</select></label>'


def filters(action: str, fields: Sequence[str], *, csv: str | None = None) -> str:
    """A GET form (filters are links: shareable, and never a state change)."""
    link = f' <a href="{e(csv)}">CSV</a>' if csv else ""
    return (
        f'<form class="filters" method="get" action="{e(action)}">{"".join(fields)}'
        f"<button>Apply</button>{link}</form>"
    )


def bar_chart(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str = "USD",
    width: int = 760,
    height: int = 220,
) -> str:
    """An inline SVG bar chart of `points` (label, value), drawn on the server."""
    if not points:
        return f"<p>No {e(title.lower())} in this period.</p>"
    top = max(v for _, v in points) or 1.0
    left, bottom, gap = 60, 30, 2
    inner_w, inner_h = width - left - 10, height - bottom - 10
    step = inner_w / len(points)
    bars = []
    for i, (label, value) in enumerate(points):
        h = value / top * inner_h
        x, y = left + i * step, 10 + inner_h - h
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - gap, 1):.1f}" height="{h:.1f}" '
            f'fill="#3b6fd8"><title>{e(label)}: {value:.6f} {e(unit)}</title></rect>'
        )
    ticks = "".join(
        f'<text x="{left + i * step:.1f}" y="{height - 8}" font-size="10">{e(label)}</text>'
        for i, (label, _) in enumerate(points)
        if i % max(1, len(points) // 8) == 0
    )
    axis = (
        f'<text x="4" y="18" font-size="10">{top:.4g}</text>'
        f'<text x="4" y="{10 + inner_h}" font-size="10">0</text>'
        f'<line x1="{left}" y1="{10 + inner_h}" x2="{width - 10}" y2="{10 + inner_h}" '
        'stroke="#889"/>'
    )
    return (
        f'<svg role="img" aria-label="{e(title)}" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{e(title)}</title>{axis}{''.join(bars)}{ticks}</svg>"
    )
