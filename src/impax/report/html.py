"""A self-contained HTML report: one file, images embedded as PNG data URIs, no network needed.

The builder is deliberately small: sections of headings, paragraphs, tables, image rows and inline
SVG plots, written in document order. Everything is escaped; nothing is fetched when the page opens.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;background:#fff;padding:0 1rem}
h1{font-size:1.8rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
p.meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3rem 0}
.row{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-start;margin:.6rem 0}
figure{margin:0;text-align:center}figure img{display:block;border:1px solid #eee;border-radius:4px}
figcaption{font-size:.8rem;color:#555;max-width:260px}
.rowlabel{writing-mode:vertical-rl;transform:rotate(180deg);font-size:.8rem;color:#444;align-self:center}
svg text{font-size:11px;fill:#333}
"""


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 [H,W] or [H,W,3|4] array as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return "–"
        return f"{v:.4g}"
    return html.escape(str(v))


class Report:
    """Collects report sections and writes one self-contained HTML file."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        a = f' id="{html.escape(anchor)}"' if anchor else ""
        self._parts.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
              caption: str = "", table_id: str | None = None) -> None:
        """A table of ``rows`` (dicts); ``columns`` fixes the order (default: first row's keys)."""
        cols = list(columns or (rows[0].keys() if rows else []))
        tid = f' id="{html.escape(table_id)}"' if table_id else ""
        out = [f"<table{tid}>"]
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>")
        for r in rows:
            out.append("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>")
        out.append("</table>")
        self._parts.append("\n".join(out))

    def image_row(self, images: Iterable[tuple[str, np.ndarray | bytes]], label: str = "",
                  width: int | None = None) -> None:
        """A row of captioned images (uint8 arrays or PNG bytes)."""
        figs = []
        if label:
            figs.append(f'<div class="rowlabel">{html.escape(label)}</div>')
        for caption, img in images:
            png = img if isinstance(img, bytes | bytearray) else png_bytes(img)
            w = f' width="{width}"' if width else ""
            figs.append(f'<figure><img src="{data_uri(bytes(png))}" alt="{html.escape(caption)}"{w}>'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self._parts.append('<div class="row">' + "".join(figs) + "</div>")

    def svg(self, svg: str) -> None:
        self._parts.append(f'<div class="row">{svg}</div>')

    def raw(self, fragment: str) -> None:
        """Append trusted HTML written by impax itself (never user text)."""
        self._parts.append(fragment)

    def to_html(self) -> str:
        sub = f'<p class="meta">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{sub}\n" + "\n".join(self._parts) + "\n</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_html(), encoding="utf-8")
        tmp.replace(path)
        return path


def x_ticks(x0: float, x1: float, count: int = 5, integer: bool = False) -> list[float]:
    """About ``count`` tick positions from ``x0`` to ``x1``; with ``integer`` (e.g. steps) only whole
    numbers, so a step axis never reads 210.5."""
    ticks = np.linspace(x0, x1, count)
    if integer:
        ticks = np.unique(np.round(ticks))
    return [float(t) for t in ticks]


def line_plot_svg(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str = "",
                  xlabel: str = "step", ylabel: str = "", width: int = 520, height: int = 300,
                  log_y: bool = False) -> str:
    """An inline SVG line plot of named (x, y) series; non-finite points are dropped."""
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]
    ml, mr, mt, mb = 58, 12, 26, 40
    pts = {}
    for name, (xs, ys) in series.items():
        x = np.asarray(xs, dtype=np.float64)
        y = np.asarray(ys, dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_y else True)
        if keep.any():
            pts[name] = (x[keep], np.log10(y[keep]) if log_y else y[keep])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
             f'<rect width="{width}" height="{height}" fill="#fff" stroke="#ddd"/>']
    if title:
        parts.append(f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="600">{html.escape(title)}</text>')
    if not pts:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    allx = np.concatenate([p[0] for p in pts.values()])
    ally = np.concatenate([p[1] for p in pts.values()])
    x0, x1 = float(allx.min()), float(allx.max())
    y0, y1 = float(ally.min()), float(ally.max())
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    pw, ph = width - ml - mr, height - mt - mb

    def sx(v: np.ndarray) -> np.ndarray:
        return ml + (v - x0) / (x1 - x0) * pw

    def sy(v: np.ndarray) -> np.ndarray:
        return mt + ph - (v - y0) / (y1 - y0) * ph

    parts.append(f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="#999"/>')
    parts.append(f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="#999"/>')
    for t in np.linspace(0, 1, 5):
        yv = y0 + t * (y1 - y0)
        lab = f"{10 ** yv:.3g}" if log_y else f"{yv:.3g}"
        yy = float(sy(np.array(yv)))
        parts.append(f'<line x1="{ml}" y1="{yy:.1f}" x2="{ml + pw}" y2="{yy:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{ml - 4}" y="{yy + 4:.1f}" text-anchor="end">{lab}</text>')
    for xv in x_ticks(x0, x1, integer=bool(np.all(allx == np.round(allx)))):
        xx = float(sx(np.array(xv)))
        parts.append(f'<text x="{xx:.1f}" y="{mt + ph + 14}" text-anchor="middle">{xv:.6g}</text>')
    parts.append(f'<text x="{ml + pw / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>')
    if ylabel:
        parts.append(f'<text x="12" y="{mt + ph / 2}" text-anchor="middle" '
                     f'transform="rotate(-90 12 {mt + ph / 2})">{html.escape(ylabel)}{" (log)" if log_y else ""}</text>')
    for i, (name, (x, y)) in enumerate(pts.items()):
        c = palette[i % len(palette)]
        d = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(sx(x), sy(y)))
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{d}"/>')
        parts.append(f'<rect x="{ml + 8}" y="{mt + 6 + 14 * i}" width="10" height="3" fill="{c}"/>'
                     f'<text x="{ml + 22}" y="{mt + 10 + 14 * i}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
