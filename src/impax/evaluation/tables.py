"""Per-shape CSV, per-class and mean tables (Markdown and JSON).

Two means are reported, as in LDIF's and IM-NET's tables: the per-class mean (mean of the class
means, each class weighing the same) and the per-shape mean (every shape weighing the same).
Shapes whose metrics are NaN (``invalid-gt``, unreadable files) are left out of the means and
counted as ``failed``; empty and missing predictions keep their defined penalty scores and count.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ID_COLUMNS = ("id", "class", "status")
#: Statuses scored with the defined empty-surface penalty.
EMPTY_STATUSES = ("empty-prediction", "missing", "unreadable-prediction")


def write_csv(records: Sequence[dict[str, Any]], path: str | Path, metrics: Sequence[str]) -> Path:
    """One row per shape: id, class, status, the metrics, message."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [*ID_COLUMNS, *metrics, "frame", "gt_closed", "message"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({c: _fmt(r.get(c, "")) for c in cols})
    return path


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return v


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


def summarize(records: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """``{"classes": {cls: {...}}, "class_mean": {...}, "shape_mean": {...}}`` with counts."""
    by_class: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_class.setdefault(str(r.get("class", "all")), []).append(r)
    classes = {}
    for cls in sorted(by_class):
        rows = by_class[cls]
        entry: dict[str, Any] = {"count": len(rows),
                                 "failed": sum(1 for r in rows if all(_isnan(r.get(m)) for m in metrics)),
                                 "empty": sum(1 for r in rows if r.get("status") in EMPTY_STATUSES)}
        for m in metrics:
            entry[m] = _mean([r.get(m) for r in rows])
        classes[cls] = entry
    class_mean = {m: _mean([c[m] for c in classes.values()]) for m in metrics}
    shape_mean = {m: _mean([r.get(m) for r in records]) for m in metrics}
    frames = sorted({str(r["frame"]) for r in records if r.get("frame")})
    return {"classes": classes, "class_mean": class_mean, "shape_mean": shape_mean,
            "count": len(records), "failed": sum(c["failed"] for c in classes.values()),
            "empty": sum(c["empty"] for c in classes.values()),
            "frame": ", ".join(frames) or "original",
            "open_gt": sum(1 for r in records if r.get("gt_closed") == 0)}


#: What each scoring frame means, for the tables (see :data:`impax.conventions.EVAL_FRAMES`).
FRAME_TEXT = {
    "gt-unit": "gt-unit: both meshes mapped by the ground truth's bounding box, centred, diagonal 1 (IM-NET)",
    "occnet": "occnet: both meshes mapped by the ground truth's bounding box, centred, largest extent 1 (OccNet)",
    "gaps": "gaps: both meshes mapped by the ground truth's GAPS normalisation (centroid, PCA scale 0.25; LDIF)",
    "original": "original: each mesh in its own units (distances and tau are in those units)",
}


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def markdown_table(summary: dict[str, Any], metrics: Sequence[str]) -> str:
    """A line naming the scoring frame, rows of classes, the class mean and the shape mean, and a
    note when some ground truths are open (their IoU rests on the winding-number inside test)."""
    frame = summary.get("frame", "original")
    head = "| class | n | failed | empty | " + " | ".join(metrics) + " |"
    sep = "|" + "---|" * (4 + len(metrics))
    lines = [f"Frame: {FRAME_TEXT.get(frame, frame)}.", "", head, sep]
    for cls, e in summary["classes"].items():
        lines.append(f"| {cls} | {e['count']} | {e['failed']} | {e['empty']} | "
                     + " | ".join(_cell(e[m]) for m in metrics) + " |")
    n, f, z = summary["count"], summary["failed"], summary["empty"]
    lines.append("| **class mean** | " + f"{n} | {f} | {z} | " + " | ".join(_cell(summary["class_mean"][m]) for m in metrics) + " |")
    lines.append("| **shape mean** | " + f"{n} | {f} | {z} | " + " | ".join(_cell(summary["shape_mean"][m]) for m in metrics) + " |")
    if summary.get("open_gt") and any(m.startswith("iou") for m in metrics):
        lines += ["", f"{summary['open_gt']} of {n} ground truths are open (not watertight): their IoU uses the "
                      "generalised winding number as the inside test and is not comparable to a closed shape's "
                      "(per_shape.csv: gt_closed = 0)."]
    return "\n".join(lines) + "\n"


def _cell(v: float) -> str:
    return "–" if _isnan(v) else f"{v:.4g}"


def write_json(obj: Any, path: str | Path) -> Path:
    """JSON with NaN written as null (valid JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(obj), indent=2))
    return path


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return None if math.isnan(float(o)) or math.isinf(float(o)) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    return o
