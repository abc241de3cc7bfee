"""Score a trained run on a split of its prepared data (``impax test``): reconstruct every shape of
the split from the input its family reads (IM-NET: the stored 64³ voxels; LDIF/SIF: the run's
input, depth images or surface points), then score each reconstruction against the mesh the shape
was prepared from, in one frame (:func:`impax.evaluation.runner.evaluate_pair`).

A store prepared from OccNet's data (``impax prepare --from-occnet``) has no meshes: its shapes are
scored against OccNet's own arrays instead (``occnet=ROOT``, the dataset folder it was prepared
from; :func:`impax.evaluation.runner.evaluate_occnet_pair`), in OccNet's frame by default.

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
from impax.evaluation.runner import OCCNET_EVAL_FRAMES, Pair, evaluate_occnet_pair, evaluate_pair
from impax.inference.families import family_module
from impax.train.runs import read_run


def input_kind(run: str | Path) -> str:
    """What a run reconstructs a stored shape from: ``voxels`` (IM-NET) or the run's ``input``."""
    info = read_run(run)
    if info.get("family") == "imnet" or str(info.get("recipe", "")).startswith("imnet"):
        return "voxels"
    return str(info.get("config", {}).get("input", "depth"))


def test_split(run: str | Path, data: str | Path, meshes: str | Path | None, out: str | Path, split: str = "test",
               resolution: int = 128, refine: int = 0, frame: str | None = None,
               cfg: MetricsConfig = MetricsConfig(),
               progress: Callable[[str, int, int, dict[str, Any] | None], None] | None = None,
               occnet: str | Path | None = None) -> dict[str, Any]:
    """Reconstruct and score ``split`` of ``data``; ground truths are ``meshes/<entry source>``, or
    for a store prepared from OccNet data ``occnet/<entry source>/`` (the shape's OccNet folder).
    ``frame``: default ``gt-unit`` (meshes) or ``occnet`` (OccNet data).
    ``progress(phase, i, n, record)`` is called per shape (phase ``"reconstruct"`` or ``"score"``).
    Returns ``{"summary", "shapes"}`` as written to ``summary.json``."""
    out = Path(out)
    store = ShapeStore(data)
    from_occnet = store.source_format() == "occnet"
    if from_occnet and occnet is None:
        raise ValueError(f"{data} was prepared from OccNet data (no meshes): score it with --occnet ROOT, the "
                         "OccNet dataset folder it was prepared from")
    if not from_occnet and occnet is not None:
        raise ValueError(f"{data} was prepared from meshes, not from OccNet data: score it with --meshes SRC")
    if not from_occnet and meshes is None:
        raise ValueError(f"{data}: give --meshes SRC, the mesh folder it was prepared from")
    frame = frame or ("occnet" if from_occnet else "gt-unit")
    if from_occnet and frame not in OCCNET_EVAL_FRAMES:
        raise ValueError(f"--frame {frame}: OccNet data is scored in {' or '.join(OCCNET_EVAL_FRAMES)}")
    root = Path(occnet if from_occnet else meshes)  # type: ignore[arg-type]
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
        pair = Pair(sid, e.get("class") or "all", pred if ok else None, root / e.get("source", ""))
        rec = evaluate_occnet_pair(pair, cfg, frame) if from_occnet else evaluate_pair(pair, cfg, frame)
        records.append(rec)
        if progress:
            progress("score", i + 1, len(entries), rec)
    metrics = [m for m in METRICS if (cfg.compute_iou or m != "iou")
               and (cfg.compute_voxel_iou and not from_occnet or m != "iou_voxels")]
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
