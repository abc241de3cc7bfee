"""Score a trained run on a split of its prepared data (``impax test``): reconstruct every shape of
the split from the input its family reads (IM-NET: the stored 64³ voxels; LDIF/SIF: the run's
input, depth images or surface points), then score each reconstruction against the mesh the shape
was prepared from, in one frame (:func:`impax.evaluation.runner.evaluate_pair`).

Writes ``OUT/meshes/<id>.ply`` (original frame of each shape), ``OUT/per_shape.csv``,
``OUT/summary.json`` and ``OUT/summary.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from impax.data.store import ShapeStore
from impax.evaluation import tables
from impax.evaluation.metrics import METRICS, MetricsConfig
from impax.evaluation.runner import Pair, evaluate_pair
from impax.inference.families import family_module
from impax.train.runs import read_run


def input_kind(run: str | Path) -> str:
    """What a run reconstructs a stored shape from: ``voxels`` (IM-NET) or the run's ``input``."""
    info = read_run(run)
    if info.get("family") == "imnet" or str(info.get("recipe", "")).startswith("imnet"):
        return "voxels"
    return str(info.get("config", {}).get("input", "depth"))


def test_split(run: str | Path, data: str | Path, meshes: str | Path, out: str | Path, split: str = "test",
               resolution: int = 128, refine: int = 0, frame: str = "gt-unit",
               cfg: MetricsConfig = MetricsConfig(),
               progress: Callable[[str, int, int, dict[str, Any] | None], None] | None = None) -> dict[str, Any]:
    """Reconstruct and score ``split`` of ``data``; ground truths are ``meshes/<entry source>``.
    ``progress(phase, i, n, record)`` is called per shape (phase ``"reconstruct"`` or ``"score"``).
    Returns ``{"summary", "shapes"}`` as written to ``summary.json``."""
    out, meshes = Path(out), Path(meshes)
    store = ShapeStore(data)
    entries = {e["id"]: e for e in store.entries(split)}
    if not entries:
        raise ValueError(f"{data}: no shapes in split {split!r} (splits: {store.index().get('splits')})")
    if progress:
        progress("reconstruct", 0, len(entries), None)
    rows = family_module(run).reconstruct(run, input_kind(run), [str(data), f"split={split}"], out / "meshes",
                                          resolution=resolution, refine=refine)
    by_id = {r["id"]: r for r in rows}
    records = []
    for i, (sid, e) in enumerate(sorted(entries.items())):
        pred = out / "meshes" / f"{sid}.ply"
        ok = by_id.get(sid, {}).get("ok", True) and pred.is_file()
        rec = evaluate_pair(Pair(sid, e.get("class") or "all", pred if ok else None, meshes / e.get("source", "")),
                            cfg, frame)
        records.append(rec)
        if progress:
            progress("score", i + 1, len(entries), rec)
    metrics = [m for m in METRICS if (cfg.compute_iou or m != "iou") and (cfg.compute_voxel_iou or m != "iou_voxels")]
    summary = tables.summarize(records, metrics)
    summary.update(run=str(Path(run).absolute()), data=str(Path(data).absolute()), split=split,
                   resolution=resolution, refine=refine,
                   config={k: getattr(cfg, k) for k in cfg.__dataclass_fields__})
    tables.write_csv(records, out / "per_shape.csv", metrics)
    (out / "summary.md").write_text(f"# {Path(run).name} on {split} of {Path(data).name}\n\n"
                                    + tables.markdown_table(summary, metrics))
    result = {"summary": summary, "shapes": records}
    tables.write_json(result, out / "summary.json")
    return result
