"""The HTML report of an ``impax demo`` output folder: ``OUT/report/index.html``.

It reads (every piece optional; a missing or broken piece becomes a "not available: reason" cell,
never an exception)::

    OUT/.stages/*.json                      what was run (stage summaries, seconds)
    OUT/data/index.json                     the prepared shapes (id, class, split, source)
    OUT/shapes/<family>/<family>_<k>.ply    ground-truth meshes (original frame)
    OUT/eval/<model>/summary.json           metric summaries (impax.evaluation.tables.summarize;
                                            either bare or as {"summary": ..., "shapes": ...})
    OUT/eval/<model>/per_shape.csv          per-shape metrics (captions under the renders)
    OUT/eval/gan/summary.json               generation metrics (COV, MMD, 1-NNA)
    OUT/meshes/{imnet-ae,ldif}/<id>.ply     reconstructions (original frame)
    OUT/meshes/ldif/<id>.sif.txt + .gaps.json  the LDIF shape's SIF v1 file (GAPS frame) and its
                                            original→GAPS Transform
    OUT/meshes/gan/sample_<k>.ply           GAN samples; OUT/meshes/interp/step_<k>.ply the
                                            latent interpolation (IM-NET frame)
    OUT/runs/<run>/run.json, metrics.jsonl  training runs and their loss curves

Renders: per shape, the ground truth and each reconstruction are drawn with one camera per view,
framed by the ground truth's bounds (:func:`impax.geometry.render.framing`), so they line up.
The SIF view draws the LDIF mesh as a translucent ghost with the SIF elements as ellipsoids inside
it (level set ``c g = -0.07`` of each element, see :mod:`impax.report.figures`).

"Look in 3D" shows the same rows in interactive viewers (:mod:`impax.report.viewer3d`); their files
go beside the page, ``OUT/report/3d/`` (meshes) and ``OUT/report/assets/`` (three.js). The Reproduce
block shows the ``impax demo`` command line recorded in the stage markers (``invocation``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import json
import math
import os
import platform
import re
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from impax.geometry.mesh_io import MESH_SUFFIXES
from impax.report.html import Report, data_uri, line_plot_svg, png_bytes
from impax.report.viewer3d import DEFAULT_MAX_FACES as VIEWER_FACES
from impax.train.registry import RECIPES

#: Two views (azimuth, elevation) in degrees; y is up, azimuth 0 looks from +z.
DEFAULT_VIEWS: tuple[tuple[float, float], ...] = ((35.0, 22.0), (215.0, 22.0))
DEFAULT_SIZE = 192
#: Reconstruction models (the recipe registry's): (folder name under meshes/ and eval/, label, colour key).
MODELS: tuple[tuple[str, str, str], ...] = tuple((r.name, r.label, r.family) for r in RECIPES.values()
                                                 if r.demo_input)
#: Metric columns of the tables: (key in summary.json, label).
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("iou", "IoU"), ("chamfer_l1", "Chamfer-L1"), ("chamfer_l2", "Chamfer-L2"),
    ("fscore", "F-score"), ("normal_consistency", "NC"))
GAN_METRICS: tuple[tuple[str, str], ...] = (
    ("coverage", "COV"), ("mmd", "MMD"), ("one_nna", "1-NNA"), ("n_generated", "generated"),
    ("n_reference", "reference"))
_SPLIT_RANK = {"test": 0, "val": 1, "train": 2}

_EXTRA_CSS = """<style>
.na{display:inline-block;color:#8a4b00;background:#fff6e8;border:1px dashed #e0b070;border-radius:4px;
padding:.4rem .6rem;font-size:.85rem;max-width:240px;text-align:left}
table.grid td,table.grid th{text-align:center;vertical-align:top;padding:.3rem}
table#shapes-grid td:first-child{text-align:left;font-size:.85rem;max-width:130px;word-break:break-word}
table.grid img{display:block;margin:0 auto;border:1px solid #eee;border-radius:3px}
.cap{font-size:.75rem;color:#555;margin-top:.2rem}
p.note{font-size:.85rem;color:#555}
.strip{overflow-x:auto;max-width:100%}
#reproduce pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.8rem}
.v3d{position:relative;width:240px;height:240px;margin:0 auto;border:1px solid #eee;border-radius:3px}
.v3d canvas{display:block;width:240px;height:240px;cursor:grab}
.v3d-msg{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;text-align:center;
font-size:.8rem;color:#777;padding:.6rem;pointer-events:none}
p.na{max-width:none}
#look3d-status[hidden]{display:none}
@media print{#look3d{display:none}}
</style>"""


class NotAvailable(Exception):
    """A piece of the report that cannot be shown; ``str()`` is the reason."""


def _na(reason: str) -> str:
    return f'<div class="na">not available: {html.escape(str(reason))}</div>'


def _img(image: np.ndarray, alt: str) -> str:
    return f'<img src="{data_uri(png_bytes(image))}" alt="{html.escape(alt)}" width="{image.shape[1]}">'


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotAvailable(f"no file {path.name}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NotAvailable(f"cannot read {path.name} ({type(e).__name__})") from None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _load_mesh(path: Path, root: Path):
    """A mesh with faces, or :class:`NotAvailable` naming the file and the problem."""
    from impax.geometry.mesh_io import load_mesh

    if not path.is_file():
        raise NotAvailable(f"no file {_rel(path, root)}")
    try:
        return load_mesh(path)
    except Exception as e:  # MeshError and whatever a broken file raises
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
        raise NotAvailable(f"{_rel(path, root)}: {reason}") from None


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _cell(v: Any, digits: int = 4) -> str:
    f = _num(v)
    if not math.isfinite(f):
        return "–"
    if f == int(f) and abs(f) < 1e6 and not isinstance(v, float):
        return str(int(f))
    return f"{f:.{digits}g}"


# ----------------------------------------------------------------------------------- header


def _stages(out: Path) -> list[dict[str, Any]]:
    d = out / ".stages"
    rows = []
    for p in sorted(d.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)) if d.is_dir() else []:
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            rows.append({"stage": p.stem, "seconds": "", "details": "unreadable marker"})
            continue
        summ = data.get("summary", data) if isinstance(data, dict) else {}
        summ = summ if isinstance(summ, dict) else {}
        details = []
        for k, v in summ.items():
            if k == "seconds" or isinstance(v, (dict, list)):
                continue
            text = _cell(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
            details.append(f"{k}={text[:60]}")
        rows.append({"stage": p.stem, "seconds": _num(summ.get("seconds")),
                     "details": ", ".join(details[:8])})
    return rows


def _section_header(rep: Report, out: Path) -> None:
    rep.heading("What was run", anchor="run")
    rows = _stages(out)
    if rows and not any(r["stage"] == "report" for r in rows):
        # this page is written inside the report stage, before that stage's marker
        rows.append({"stage": "report", "seconds": "", "details": "this page (its time is in .stages/report.json "
                                                                  "once written)"})
    if rows:
        total = sum(r["seconds"] for r in rows if isinstance(r["seconds"], float) and math.isfinite(r["seconds"]))
        rep.table(rows, ["stage", "seconds", "details"], caption=f"Stages ({total:.0f} s in all)",
                  table_id="stages")
    else:
        rep.raw(_na("no stage summaries in .stages/"))
    try:
        index = _read_json(out / "data" / "index.json")
        shapes = index.get("shapes", [])
        by = {}
        for e in shapes:
            key = (e.get("class", ""), e.get("split", ""))
            by[key] = by.get(key, 0) + 1
        classes = sorted({c for c, _ in by})
        splits = sorted({s for _, s in by}, key=lambda s: (_SPLIT_RANK.get(s, 9), s))
        rows = [{"class": c or "(none)", **{s or "(none)": by.get((c, s), 0) for s in splits}} for c in classes]
        rep.table(rows, ["class", *[s or "(none)" for s in splits]],
                  caption=f"Prepared data: {len(shapes)} shapes", table_id="data")
    except NotAvailable as e:
        rep.raw(_na(f"data/index.json: {e}"))


# ------------------------------------------------------------------------- models and training

#: The papers' training, for the context line (anchors: IM-NET-pytorch train_ae.sh, google/ldif README).
PAPER_CONTEXT = ("The papers train far more: IM-AE 800 epochs of ShapeNet's ~35k training shapes "
                 "(32 shapes x 4096 points per step, z 256, decoder width 1024) on a GPU; LDIF about 3.5M steps "
                 "(24 shapes, ResNet-50 on 20 depth views at 137^2) — days on GPUs. Here the models are the "
                 "narrow cpu variants (same structure: IM-NET's encoder/decoder layout; LDIF's 32+16 elements, "
                 "32-d latents and local decoder) and everything ran on 2 CPU cores in minutes, so the numbers "
                 "are not comparable with the papers' tables.")


def _param_count(run: dict[str, Any]) -> int | None:
    """Parameters of a run's model, rebuilt from its run.json through its recipe."""
    try:
        from impax.models.imnet import count_params
        from impax.train.registry import recipe

        r = recipe(run["recipe"])
        return count_params(r.build_model(r.from_run_json(run)))
    except Exception:  # noqa: BLE001 - the report only describes
        return None


def _pretrained_text(init: Any) -> str:
    if not isinstance(init, dict) or not init.get("source"):
        return "none (random initialisation)"
    src = str(init["source"])
    if not src.startswith("pretrained:"):
        return f"the run {src} (step {init.get('step', '?')})"
    try:
        from impax.train.pretrained import read

        _, _, prov = read(src.split(":", 1)[1])
    except Exception as e:  # noqa: BLE001
        return f"{src} (provenance not readable: {e})"
    data = prov.get("data", {})
    n = data.get("count", "?")
    secs = prov.get("train_seconds")
    machine = prov.get("machine", {})
    ev = next(iter(prov.get("eval", {}).values()), {})
    iou = (ev.get("heldout") or {}).get("mean_iou")
    return (f"{src}: {prov.get('global_step', '?')} steps ({_cell(secs / 60, 3) if isinstance(secs, (int, float)) else '?'} min, "
            f"{machine.get('cpus', '?')} CPU cores) on {n} built-in shapes of the separate 'pretrain' random "
            f"stream (never a shape this demo scores)"
            + (f"; its held-out IoU then {_cell(iou, 3)}" if isinstance(iou, (int, float)) else ""))


def _section_models(rep: Report, out: Path) -> None:
    rep.heading("Models and training", anchor="models")
    stages = {r["stage"]: r for r in _stages(out)}
    rows = []
    for model, label, _ in (*MODELS, ("imnet-gan", "IM-GAN", "gan")):
        try:
            run = _read_json(out / "runs" / model / "run.json")
        except NotAvailable as e:
            rows.append({"model": label, "parameters": "", "pretrained": "",
                         "trained here": f"not available: {e}", "refine": ""})
            continue
        try:
            summ = _read_json(out / ".stages" / f"train-{model}.json").get("summary", {})
        except NotAvailable:
            summ = {}
        n = _param_count(run)
        steps = summ.get("global_step", "?")
        secs = summ.get("train_seconds", stages.get(f"train-{model}", {}).get("seconds"))
        refine = "" if model == "imnet-gan" else str(_refine_steps(out, model))
        rows.append({"model": label, "parameters": f"{n:,}" if n else "?",
                     "pretrained": _pretrained_text(run.get("init_from")),
                     "trained here": f"preset '{run.get('preset')}', {steps} steps in {_cell(secs, 3)} s on the "
                                     "training split below",
                     "refine": refine})
    rep.table(rows, ["model", "parameters", "pretrained", "trained here", "refine"],
              caption="What each model is and where it was trained", table_id="models")
    rep.paragraph("refine: steps of test-time optimisation per reconstruction (impax reconstruct --refine): "
                  "each shape's own parameters (IM-AE: its latent code; LDIF: its elements and latents) "
                  "are fitted to the input it was reconstructed from (IM-AE: the 64^3 voxels; LDIF: the "
                  "20 depth images), the network weights fixed; no ground truth is used.")
    rep.paragraph("Units: IoU in [0, 1]; Chamfer-L1 as OccNet (mean of both directions, in the IM-NET frame "
                  "of each ground truth: bounding-box diagonal 1); Chamfer-L2 x1000 as LDIF; F-score in % "
                  "at tau = 0.01 of that frame; NC in [0, 1]. Means are per class (each class weighs the "
                  "same), with n shapes per class in the data table above.")
    rep.paragraph(PAPER_CONTEXT)


def _refine_steps(out: Path, model: str) -> int | str:
    try:
        rows = _read_json(out / "meshes" / model / "rows.json")
        steps = {int(r.get("refine", {}).get("steps", 0)) for r in rows if isinstance(r, dict)}
        return max(steps) if steps else 0
    except (NotAvailable, TypeError, ValueError, AttributeError):
        return "?"


# ---------------------------------------------------------------------------------- metrics


def _summary(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if isinstance(data, dict) and isinstance(data.get("summary"), dict):
        data = data["summary"]
    if not isinstance(data, dict) or "classes" not in data:
        raise NotAvailable(f"{path.name} has no per-class summary")
    return data


def _metric_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for cls, e in summary.get("classes", {}).items():
        rows.append({"class": cls, "n": e.get("count", ""), "failed": e.get("failed", ""),
                     **{lab: _num(e.get(k)) for k, lab in TABLE_METRICS}})
    n, f = summary.get("count", ""), summary.get("failed", "")
    for key, label in (("class_mean", "mean (per class)"), ("shape_mean", "mean (per shape)")):
        m = summary.get(key) or {}
        rows.append({"class": label, "n": n, "failed": f, **{lab: _num(m.get(k)) for k, lab in TABLE_METRICS}})
    return rows


def _gan_metrics(out: Path) -> dict[str, Any]:
    for name in ("summary.json", "generation.json"):
        p = out / "eval" / "gan" / name
        if p.is_file():
            data = _read_json(p)
            if isinstance(data, dict) and isinstance(data.get("generation"), dict):
                data = data["generation"]
            if isinstance(data, dict) and any(k in data for k, _ in GAN_METRICS):
                return data
            raise NotAvailable(f"eval/gan/{name} has no generation metrics")
    raise NotAvailable("no eval/gan/summary.json")


def _section_metrics(rep: Report, out: Path) -> None:
    rep.heading("Reconstruction metrics (held-out shapes)", anchor="metrics")
    rep.paragraph("IoU: volumetric IoU on uniform samples; Chamfer-L1/L2 and F-score (tau = 0.01) on "
                  "area-weighted surface samples (100k by default; the demo uses fewer to fit its time budget); NC: normal consistency. Means over classes (each class weighs "
                  "the same, as in the papers' tables) and over shapes; failed shapes are left out of "
                  "the means and counted.")
    cols = ["class", "n", "failed", *[lab for _, lab in TABLE_METRICS]]
    compare = []
    for model, label, _ in MODELS:
        try:
            s = _summary(out / "eval" / model / "summary.json")
        except NotAvailable as e:
            rep.raw(f"<p><b>{html.escape(label)}</b></p>" + _na(f"eval/{model}: {e}"))
            continue
        rep.table(_metric_rows(s), cols, caption=label, table_id=f"metrics-{model}")
        cm = s.get("class_mean") or {}
        compare.append({"model": label, "shapes": s.get("count", ""), "failed": s.get("failed", ""),
                        **{lab: _num(cm.get(k)) for k, lab in TABLE_METRICS}})
    if len(compare) > 1:
        rep.table(compare, ["model", "shapes", "failed", *[lab for _, lab in TABLE_METRICS]],
                  caption="Both families (mean per class)", table_id="metrics-compare")
    rep.heading("Generation metrics (IM-NET GAN)", level=3)
    try:
        g = _gan_metrics(out)
        rep.table([{lab: _num(g.get(k)) for k, lab in GAN_METRICS}], [lab for _, lab in GAN_METRICS],
                  caption="COV (higher is better), MMD (lower), 1-NNA (0.5 is ideal); Chamfer-L2 between "
                          "point sets", table_id="metrics-gan")
    except NotAvailable as e:
        rep.raw(_na(str(e)))


# ------------------------------------------------------------------------------ shape rows


def _per_shape(out: Path, model: str) -> dict[str, dict[str, str]]:
    p = out / "eval" / model / "per_shape.csv"
    try:
        with p.open(newline="") as fh:
            return {r.get("id", ""): r for r in csv.DictReader(fh)}
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}


def _lookup(rows: dict[str, dict[str, str]], shape_id: str) -> dict[str, str] | None:
    if shape_id in rows:
        return rows[shape_id]
    for rid, r in rows.items():
        if rid.replace("/", "_") == shape_id or rid.rsplit("/", 1)[-1] == shape_id:
            return r
    return None


def _mesh_ids(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in MESH_SUFFIXES and ".sif" not in p.name}


def _index_entries(out: Path) -> dict[str, dict[str, Any]]:
    try:
        index = _read_json(out / "data" / "index.json")
        return {e["id"]: e for e in index.get("shapes", []) if isinstance(e, dict) and "id" in e}
    except (NotAvailable, AttributeError, TypeError, KeyError):
        return {}


def _csv_splits(out: Path) -> dict[str, str]:
    """Shape id -> split from the per-shape tables (their ``split`` column, where written)."""
    splits: dict[str, str] = {}
    for m, _, _ in MODELS:
        for rid, r in _per_shape(out, m).items():
            if r.get("split"):
                splits.setdefault(rid.replace("/", "_"), r["split"])
    return splits


def _reconstructed(out: Path) -> list[dict[str, Any]]:
    """Every shape with a reconstruction: id, class, split (index, else per_shape.csv) and source."""
    index = _index_entries(out)
    csv_split = _csv_splits(out)
    ids = set().union(*(_mesh_ids(out / "meshes" / m) for m, _, _ in MODELS))
    entries = []
    for sid in ids:
        e = index.get(sid, {})
        entries.append({"id": sid, "class": e.get("class", ""), "split": e.get("split") or csv_split.get(sid, ""),
                        "source": e.get("source", "")})
    return entries


def _is_train(entry: dict[str, Any]) -> bool:
    return entry.get("split") == "train"


def _pick_shapes(out: Path, max_shapes: int) -> tuple[list[dict[str, Any]], int]:
    """Shapes with a reconstruction, held-out ones first, classes interleaved, at most ``max_shapes``;
    up to two rows are kept for training shapes (so the grid shows those too). Also returns how many
    shapes have a reconstruction."""
    ordered = _interleave(_reconstructed(out))
    held = [e for e in ordered if not _is_train(e)]
    train = [e for e in ordered if _is_train(e)]
    n_train = min(len(train), 2, max_shapes // 2) if held else len(train)
    picked = held[:max(max_shapes - n_train, 0)]
    picked += train[:max_shapes - len(picked)]
    return picked, len(ordered)


def _interleave(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Held-out splits first (test, val, then train), classes round robin within each split."""
    picked = []
    for rank in sorted({_SPLIT_RANK.get(e["split"], 3) for e in entries}):
        group = sorted((e for e in entries if _SPLIT_RANK.get(e["split"], 3) == rank),
                       key=lambda e: (e["class"], e["id"]))
        by_class: dict[str, list[dict[str, Any]]] = {}
        for e in group:
            by_class.setdefault(e["class"], []).append(e)
        while any(by_class.values()):  # round robin over classes
            for c in sorted(by_class):
                if by_class[c]:
                    picked.append(by_class[c].pop(0))
    return picked


def _gt_path(out: Path, entry: dict[str, Any]) -> Path:
    root = out / "shapes"
    if entry.get("source"):
        p = root / entry["source"]
        if p.is_file():
            return p
    sid = entry["id"]
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() not in MESH_SUFFIXES or not p.is_file():
                continue
            rel = p.relative_to(root).with_suffix("")
            if p.stem == sid or "_".join(rel.parts) == sid:
                return p
    raise NotAvailable(f"no ground-truth mesh for {sid} under shapes/")


class _Renderer:
    """Counts renders and their time (for the report footer)."""

    def __init__(self, size: int, supersample: int) -> None:
        self.size, self.supersample = size, supersample
        self.count, self.seconds = 0, 0.0

    def __call__(self, layers, az: float, el: float, bounds=None, radius=None, color=None) -> np.ndarray:
        from impax.geometry.render import render_shaded

        t = time.perf_counter()
        img = render_shaded(layers, az, el, self.size, color, bounds=bounds, radius=radius,
                            supersample=self.supersample)
        self.seconds += time.perf_counter() - t
        self.count += 1
        return img


def _stack(images: Sequence[np.ndarray]) -> np.ndarray:
    from impax.geometry.render import tile_images

    return tile_images(images, ncols=1, pad=2)


def _caption(row: dict[str, str] | None) -> str:
    if row is None:
        return ""
    parts = []
    status = row.get("status", "")
    if status and status != "ok":
        parts.append(status)
    for k, lab in (("iou", "IoU"), ("chamfer_l1", "CD-L1"), ("fscore", "F")):
        v = _num(row.get(k))
        if math.isfinite(v):
            parts.append(f"{lab} {v:.3g}")
    return " · ".join(parts)


def _sif_layers(out: Path, sid: str, ldif_mesh):
    from impax.conventions import Transform
    from impax.models.sif_format import read_sif
    from impax.report.figures import ellipsoid_layers, sif_ellipsoids

    d = out / "meshes" / "ldif"
    sif_path, tf_path = d / f"{sid}.sif.txt", d / f"{sid}.gaps.json"
    if not sif_path.is_file():
        raise NotAvailable(f"no file meshes/ldif/{sif_path.name}")
    try:
        sif = read_sif(sif_path)
    except ValueError as e:
        raise NotAvailable(str(getattr(e, "reason", e))) from None
    try:
        to_gaps = Transform.from_dict(_read_json(tf_path))
    except (KeyError, TypeError, ValueError) as e:
        raise NotAvailable(f"{tf_path.name}: not a Transform ({e})") from None
    ells = sif_ellipsoids(sif, to_original=to_gaps.inverse())
    if not ells:
        raise NotAvailable("the SIF has no elements")
    layers = ellipsoid_layers(ells)
    if ldif_mesh is not None:
        layers = [(ldif_mesh, (0.85, 0.85, 0.87), 0.28), *layers]
    strong = sum(e.strong for e in ells)
    return layers, f"{len(ells)} elements ({strong} with c < -0.07)"


def _section_shapes(rep: Report, out: Path, views, render: _Renderer, max_shapes: int, sif_view: int,
                    shown: list[dict[str, Any]] | None = None) -> None:
    """The grid of static renders; appends each row's shape, meshes and framing to ``shown``
    (for the 3D viewers)."""
    from impax.geometry.render import framing
    from impax.report.figures import MODEL_COLORS

    rep.heading("Reconstructions", anchor="shapes")
    shapes, total = _pick_shapes(out, max_shapes)
    if not shapes:
        rep.raw(_na("no reconstructions under meshes/imnet-ae or meshes/ldif"))
        return
    if len(shapes) < total:
        rep.raw(f'<p class="note" id="dropped-rows">{len(shapes)} of {total} reconstructed shapes shown '
                f"(at most {max_shapes} rows: held-out shapes first, then training shapes); all are scored: "
                "the held-out ones in the tables above, every one in eval/&lt;model&gt;/per_shape.csv.</p>")
    views_txt = ", ".join(f"azimuth {a:g}°/elevation {e:g}°" for a, e in views)
    rep.paragraph(f"Each column shows the views ({views_txt}) top to bottom; ground truth and "
                  "reconstructions share one camera per view, framed by the ground truth. The last "
                  "column shows the LDIF mesh as a ghost with its SIF elements as ellipsoids (each at "
                  "the level set c·g = −0.07 where c < −0.07, else at 1 sigma, grey; mirrored twins "
                  "included) from the first view.")
    per_shape = {m: _per_shape(out, m) for m, _, _ in MODELS}
    head = ["shape", "ground truth", *[lab for _, lab, _ in MODELS], "LDIF + SIF elements"]
    parts = ['<table class="grid" id="shapes-grid"><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head)
             + "</tr>"]
    for e in shapes:
        sid = e["id"]
        label = f"<b>{html.escape(sid)}</b><br>{html.escape(e['class'] or '')}"
        if e["split"]:
            split = "training shape" if _is_train(e) else f"held-out ({e['split']})"
            label += f"<br><i>{html.escape(split)}</i>"
        cells = [label]
        missing: dict[str, NotAvailable] = {}
        try:
            gt = _load_mesh(_gt_path(out, e), out)
            bounds, radius = framing(gt)
        except NotAvailable as err:
            gt, bounds, radius = None, None, None
            missing["gt"] = err
            cells.append(_na(err))
        if gt is not None:
            imgs = [render(gt, a, el, bounds, radius, MODEL_COLORS["gt"]) for a, el in views]
            cells.append(_img(_stack(imgs), f"{sid} ground truth"))
        meshes = {}
        for model, label_m, key in MODELS:
            try:
                m = _load_mesh(out / "meshes" / model / f"{sid}.ply", out)
            except NotAvailable as err:
                missing[model] = err
                cells.append(_na(err))
                continue
            meshes[model] = m
            fb, fr = (bounds, radius) if gt is not None else framing(m)
            imgs = [render(m, a, el, fb, fr, MODEL_COLORS[key]) for a, el in views]
            cap = _caption(_lookup(per_shape[model], sid))
            cells.append(_img(_stack(imgs), f"{sid} {label_m}") + (f'<div class="cap">{html.escape(cap)}</div>'
                                                                    if cap else ""))
        try:
            layers, cap = _sif_layers(out, sid, meshes.get("ldif"))
            fb, fr = (bounds, radius) if gt is not None else framing(layers)
            a, el = views[min(sif_view, len(views) - 1)]
            cells.append(_img(render(layers, a, el, fb, fr), f"{sid} SIF elements")
                         + f'<div class="cap">{html.escape(cap)}</div>')
        except NotAvailable as err:
            cells.append(_na(err))
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        if shown is not None:
            shown.append({"entry": e, "label": label, "gt": gt, "meshes": meshes, "missing": missing,
                          "bounds": bounds, "radius": radius})
    parts.append("</table>")
    rep.raw("\n".join(parts))


# ------------------------------------------------------------------------------- 3D viewers


def _clear_viewer_files(report_dir: Path) -> None:
    """Remove the 3D viewers' meshes of an earlier build (``report/3d/``)."""
    from impax.report.viewer3d import MESH_DIR

    mesh_root = report_dir / MESH_DIR
    if mesh_root.is_dir() and not mesh_root.is_symlink():
        shutil.rmtree(mesh_root)


def _section_look3d(rep: Report, out: Path, shown: Sequence[dict[str, Any]], view: tuple[float, float],
                    max_faces: int) -> None:
    """Interactive viewers of the shape rows (:mod:`impax.report.viewer3d`): ground truth and each
    reconstruction side by side, one camera per row, meshes written under ``report/3d/``."""
    from impax.geometry.render import framing
    from impax.report import viewer3d as v3
    from impax.report.figures import MODEL_COLORS

    report_dir = out / "report"
    _clear_viewer_files(report_dir)
    head = '<section id="look3d"><h2>Look in 3D</h2>'
    if not shown:
        rep.raw(head + _na("no shape rows to show (see Reconstructions)") + "</section>")
        return
    try:
        bundle = v3.copy_assets(report_dir)
    except OSError as e:
        rep.raw(head + _na(f"the three.js bundle could not be copied ({e})") + "</section>")
        return
    cols = [("gt", "ground truth", MODEL_COLORS["gt"])] + [(m, lab, MODEL_COLORS[key]) for m, lab, key in MODELS]
    rows, written = [], []
    for k, r in enumerate(shown):
        meshes = {"gt": r["gt"], **r["meshes"]} if r["gt"] is not None else dict(r["meshes"])
        if not meshes:
            continue
        bounds, radius = (r["bounds"], r["radius"]) if r["gt"] is not None else framing(list(meshes.values()))
        folder = f"{v3.MESH_DIR}/{k:02d}-{v3.safe_name(r['entry']['id'])}"
        cells = [r["label"]]
        for key, label, color in cols:
            if key not in meshes:
                cells.append(_na(r["missing"].get(key, "no mesh")))
                continue
            try:
                info = v3.write_glb(meshes[key], report_dir, f"{folder}/{key}.glb", max_faces)
            except (OSError, ValueError) as e:
                cells.append(_na(f"cannot write its glb ({type(e).__name__}: {e})"))
                continue
            written.append(info)
            faces = f"{info['faces']:,} faces" + (f" (simplified from {info['original_faces']:,})"
                                                  if info["method"] else "")
            cells.append(v3.viewer_div(info["glb"], color, f"{r['entry']['id']} {label}")
                         + f'<div class="cap">{faces} · <a href="{html.escape(info["glb"])}" download>.glb</a></div>')
        rows.append(f"<tr {v3.row_attrs(bounds, radius, *view)}>" + "".join(f"<td>{c}</td>" for c in cells)
                    + "</tr>")
    simplified = sum(1 for w in written if w["method"])
    size_mb = sum(w["bytes"] for w in written) / 1e6
    intro = ("Drag to orbit, scroll to zoom, right-drag to pan; the viewers of one row share one camera "
             "(it starts at the first view of the renders above). Everything the viewers need is in this "
             f"folder (three.js {v3.THREE_VERSION}, MIT licence: {v3.ASSETS_DIR}/three.js-LICENSE.txt; the "
             f"meshes as glTF under {v3.MESH_DIR}/), so the page works offline, opened from disk. A row "
             f"starts when it scrolls into view. Meshes over {max_faces:,} faces are simplified for the "
             f"viewers ({simplified} of {len(written)} here); the renders and the metrics use the full "
             f"meshes. The 3D files take {size_mb:.1f} MB.")
    head_row = "".join(f"<th>{html.escape(h)}</th>" for h in ["shape", *[lab for _, lab, _ in cols]])
    rep.raw(f'<section id="look3d" data-bundle="{v3.ASSETS_DIR}/{bundle.name}"><h2>Look in 3D</h2>'
            f"<p>{html.escape(intro)}</p>"
            '<noscript><div class="na">JavaScript is off: the 3D viewers need it; the renders above show '
            "the same shapes.</div></noscript>"
            '<p class="na" id="look3d-status" hidden></p>'
            '<p><button type="button" id="look3d-all">Start all 3D viewers</button></p>'
            f'<table class="grid" id="viewers-3d"><tr>{head_row}</tr>' + "".join(rows) + "</table>"
            f"<script>{v3.viewer_script()}</script></section>")


# ----------------------------------------------------------------------- GAN and interpolation


def _numbered(folder: Path, prefix: str) -> list[Path]:
    if not folder.is_dir():
        return []
    pat = re.compile(rf"^{re.escape(prefix)}_?(\d+)$")
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if p.suffix.lower() in MESH_SUFFIXES and (m := pat.match(p.stem))]
    return [p for _, p in sorted(found)]


def _end_cell(out: Path, sid: str, render: _Renderer, view: tuple[float, float], role: str) -> str:
    """A strip cell with the ground truth of interpolation end point ``sid`` (framed by itself)."""
    from impax.geometry.render import framing
    from impax.report.figures import MODEL_COLORS

    entry = {"id": sid, **_index_entries(out).get(sid, {})}
    try:
        gt = _load_mesh(_gt_path(out, entry), out)
        bounds, radius = framing(gt)
        body = _img(render(gt, view[0], view[1], bounds, radius, MODEL_COLORS["gt"]), f"{role} {sid} ground truth")
    except NotAvailable as err:
        body = _na(err)
    return f'<td>{body}<div class="cap">{html.escape(role)}: <b>{html.escape(sid)}</b> (ground truth)</div></td>'


def _interp_ends(out: Path) -> tuple[str, str] | None:
    """The two shapes the interpolation runs between (``.stages/interpolate.json``), if recorded."""
    try:
        summ = _read_json(out / ".stages" / "interpolate.json").get("summary", {})
        a, b = summ.get("a"), summ.get("b")
    except (NotAvailable, AttributeError):
        return None
    return (str(a), str(b)) if a and b else None


def _section_interp(rep: Report, out: Path, render: _Renderer, view: tuple[float, float], limit: int) -> None:
    rep.heading("Latent interpolation (IM-NET AE)", anchor="interp")
    ends = _interp_ends(out)
    if ends:
        rep.paragraph(f"From {ends[0]} to {ends[1]} (training shapes): their ground truths at both ends, "
                      "the decoded steps between them.")
    first = [_end_cell(out, ends[0], render, view, "start")] if ends else []
    last = [_end_cell(out, ends[1], render, view, "end")] if ends else []
    _mesh_strip(rep, out, out / "meshes" / "interp", "step", "interpolation", render, view, limit,
                "interp-strip", first, last)


def _mesh_strip(rep: Report, out: Path, folder: Path, prefix: str, label: str, render: _Renderer,
                view: tuple[float, float], limit: int, table_id: str, first: Sequence[str] = (),
                last: Sequence[str] = ()) -> None:
    from impax.geometry.render import framing
    from impax.report.figures import MODEL_COLORS

    files = _numbered(folder, prefix)[:limit]
    if not files:
        rep.raw(_na(f"no {prefix}_<k>.ply under {_rel(folder, out)}/"))
        return
    loaded = []
    for p in files:
        try:
            loaded.append((p, _load_mesh(p, out)))
        except NotAvailable as err:
            loaded.append((p, err))
    ok = [m for _, m in loaded if not isinstance(m, NotAvailable)]
    bounds, radius = framing(ok) if ok else (None, None)
    cells = []
    for p, m in loaded:
        if isinstance(m, NotAvailable):
            body = _na(m)
        else:
            body = _img(render(m, view[0], view[1], bounds, radius, MODEL_COLORS["gan"]), f"{label} {p.stem}")
        cells.append(f'<td>{body}<div class="cap">{html.escape(p.stem)}</div></td>')
    cells = [*first, *cells, *last]
    rep.raw(f'<div class="strip"><table class="grid" id="{html.escape(table_id)}"><tr>' + "".join(cells)
            + "</tr></table></div>")


# ------------------------------------------------------------------------------ loss curves


def _run_dirs(out: Path) -> list[Path]:
    runs = out / "runs"
    wanted = ["imnet-ae", "imnet-gan", "ldif"]
    extra = sorted(p.name for p in runs.iterdir() if p.is_dir() and p.name not in wanted) if runs.is_dir() else []
    return [runs / n for n in [*wanted, *extra]]


def _section_curves(rep: Report, out: Path) -> None:
    rep.heading("Training", anchor="training")
    rows, plots = [], []
    for run in _run_dirs(out):
        if not run.is_dir():
            rows.append({"run": run.name, "recipe": "", "steps": "", "final loss": "",
                         "note": "not available: run folder absent"})
            continue
        try:
            info = _read_json(run / "run.json")
            recipe = str(info.get("recipe", "")) if isinstance(info, dict) else ""
            note = ""
        except NotAvailable as e:
            recipe, note = "", f"run.json: {e}"
        try:
            from impax.train import read_metrics

            recs = read_metrics(run)
        except Exception as e:  # a torn line, unreadable file
            recs, note = [], f"metrics.jsonl unreadable ({type(e).__name__})"
        steps = [r.get("step") for r in recs if isinstance(r.get("step"), (int, float))]
        last_loss = next((r["loss"] for r in reversed(recs) if isinstance(r.get("loss"), (int, float))), float("nan"))
        rows.append({"run": run.name, "recipe": recipe, "steps": int(max(steps)) if steps else "",
                     "final loss": _num(last_loss), "note": note or ("" if recs else "no metrics.jsonl records")})
        if recs:
            plots.extend(_loss_plots(run.name, recs))
        else:
            plots.append(_na(f"{run.name}: no loss curve ({note or 'metrics.jsonl empty or absent'})"))
    rep.table(rows, ["run", "recipe", "steps", "final loss", "note"], caption="Runs", table_id="runs")
    rep.raw('<div class="row">' + "".join(plots) + "</div>")


_SKIP_KEYS = {"step", "stage", "epoch", "time", "samples_per_sec", "steps_per_sec"}


def _settled(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``recs`` without the first logged point of each training stage when there are several stages
    (e.g. IM-AE's 16/32/64 levels): a fresh level starts far off and would spike the scale."""
    stages = [r.get("stage") for r in recs]
    if len(set(stages)) < 2:
        return recs
    return [r for i, r in enumerate(recs) if i > 0 and stages[i] == stages[i - 1]]


def _series(recs: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Every logged scalar except timing and learning rates, as (steps, values)."""
    keys: list[str] = []
    for r in recs:
        for k, v in r.items():
            if (k not in _SKIP_KEYS and not k.startswith("learning_rate") and k not in keys
                    and isinstance(v, (int, float)) and not isinstance(v, bool)):
                keys.append(k)
    series = {}
    for k in keys:
        pts = [(float(r["step"]), float(r[k])) for r in recs
               if isinstance(r.get(k), (int, float)) and isinstance(r.get("step"), (int, float))]
        if pts:
            series[k] = ([x for x, _ in pts], [y for _, y in pts])
    return series


#: Series whose values all stay within this of zero are not drawn (e.g. LDIF's unused loss_bb).
ZERO_TOL = 1e-6


def _is_zero(ys: Sequence[float]) -> bool:
    return all(abs(y) <= ZERO_TOL for y in ys if math.isfinite(y))


def _merge_equal(series: dict[str, tuple[list[float], list[float]]]) -> dict[str, tuple[list[float], list[float]]]:
    """One line per distinct curve: series with the same points (IM-AE's loss and mse) are drawn once,
    named ``loss = mse``."""
    merged: dict[str, tuple[list[float], list[float]]] = {}
    for name, xy in series.items():
        same = next((k for k, v in merged.items() if v == xy), None)
        if same is None:
            merged[name] = xy
        else:
            merged[f"{same} = {name}"] = merged.pop(same)
    return merged


def _loss_plots(name: str, recs: list[dict[str, Any]]) -> list[str]:
    """SVG plots of every logged scalar except timing and learning rates: positive series on a
    log-y plot, series that go to zero or below (e.g. WGAN critic losses) on a linear one. Equal
    series share one line, all-zero ones are not drawn, and a run of several stages leaves out
    the first point of each stage."""
    kept = _settled(recs)
    note = " (first point of each stage left out)" if len(kept) < len(recs) else ""
    series = _merge_equal(_series(kept or recs))
    zero = [k for k, (_, ys) in series.items() if _is_zero(ys)]
    series = {k: v for k, v in series.items() if k not in zero}
    pos = {k: v for k, v in series.items() if all(y > 0 for y in v[1] if math.isfinite(y))}
    rest = {k: v for k, v in series.items() if k not in pos}
    plots = []
    if pos:
        plots.append(line_plot_svg(pos, title=f"{name}{note}", ylabel="value", log_y=True))
    if rest:
        plots.append(line_plot_svg(rest, title=f"{name} (linear){note}", ylabel="value", log_y=False))
    if zero:
        plots.append(f'<p class="note">{html.escape(name)}: not drawn, zero throughout (|value| &le; '
                     f"{ZERO_TOL:g}): {html.escape(', '.join(zero))}</p>")
    elif not plots:
        plots.append(_na(f"{name}: metrics.jsonl has no scalar series"))
    return plots


# ------------------------------------------------------------------------------ provenance


def _versions() -> dict[str, str]:
    """impax, jax, numpy and python versions of the process building this page."""
    import impax

    found = {"impax": getattr(impax, "__version__", "?"), "numpy": np.__version__,
             "python": platform.python_version()}
    try:
        import jax

        found["jax"] = jax.__version__
    except Exception as e:  # noqa: BLE001 - the report only describes
        found["jax"] = f"not importable ({type(e).__name__})"
    return found


def _cpu_name() -> str:
    """The CPU model (/proc/cpuinfo's model name, else platform.processor()) and core count."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown"
    return f"{name} ({os.cpu_count() or '?'} logical cores visible)"


def _jax_devices() -> str:
    try:
        import jax

        return ", ".join(str(d) for d in jax.devices())
    except Exception as e:  # noqa: BLE001
        return f"not available ({type(e).__name__})"


def _runs_info(out: Path) -> list[dict[str, Any]]:
    """Per training run: recipe, preset, seed and data, from runs/<run>/run.json."""
    rows = []
    for run in _run_dirs(out):
        try:
            info = _read_json(run / "run.json")
        except NotAvailable:
            continue
        if isinstance(info, dict):
            rows.append({"run": run.name, "recipe": info.get("recipe", ""), "preset": info.get("preset", ""),
                         "seed": info.get("seed", ""), "data": info.get("data", "")})
    return rows


def _user_meshes(out: Path) -> str | None:
    """The ``--meshes`` folder the demo linked its shapes from (shapes/ holds links), if any."""
    root = out / "shapes"
    links = [p for p in sorted(root.rglob("*")) if p.is_symlink()] if root.is_dir() else []
    if not links:
        return None
    rel = links[0].relative_to(root)
    target = links[0].resolve()
    return str(target.parents[len(rel.parts) - 1]) if len(target.parts) > len(rel.parts) else str(target.parent)


def demo_command(out: Path) -> str:
    """The ``impax demo`` command line that made ``out``, rebuilt from what it records (the runs'
    presets and seeds, linked shapes)."""
    runs = _runs_info(out)
    parts = ["impax", "demo"]
    if any(r["preset"] == "quick" for r in runs):
        parts.append("--quick")
    meshes = _user_meshes(out)
    if meshes:
        parts += ["--meshes", meshes]
    parts += ["--out", str(out.resolve())]
    seeds = {r["seed"] for r in runs if isinstance(r["seed"], int)}
    if seeds and seeds != {0}:
        parts += ["--seed", str(min(seeds))]
    return " ".join(shlex.quote(p) for p in parts)


def recorded_invocation(out: Path) -> dict[str, Any] | None:
    """The ``impax demo`` invocation recorded in the stage markers (``{"argv", "cwd"}``): the report
    stage's, else the newest marker's that has one."""
    d = out / ".stages"
    markers = sorted(d.glob("*.json"), key=lambda p: (p.name != "report.json", -p.stat().st_mtime)) \
        if d.is_dir() else []
    for p in markers:
        try:
            inv = json.loads(p.read_text()).get("summary", {}).get("invocation")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(inv, dict) and isinstance(inv.get("argv"), list) and inv["argv"]:
            return inv
    return None


def _section_reproduce(rep: Report, out: Path, command: Mapping[str, Any] | None = None) -> None:
    versions = _versions()
    runs = _runs_info(out)
    seeds = ", ".join(f"{r['run']} {r['seed']}" for r in runs) or "not recorded (no runs/*/run.json)"
    inv = command if command and command.get("argv") else recorded_invocation(out)
    if inv:
        cwd = inv.get("cwd")
        demo = [f"# the command line that ran this demo{f' (in {cwd})' if cwd else ''}:",
                shlex.join(str(a) for a in inv["argv"])]
    else:
        demo = ["# rebuilt from runs/*/run.json (this folder records no demo command line):", demo_command(out)]
    commands = [*demo, f"impax report {shlex.quote(str(out.resolve()))}"]
    env = [("versions", ", ".join(f"{k} {v}" for k, v in versions.items())), ("CPU", _cpu_name()),
           ("jax devices", _jax_devices()), ("seeds (runs/*/run.json)", seeds),
           ("stage markers", ", ".join(r["stage"] for r in _stages(out)) or "none")]
    body = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in env)
    rep.raw('<div id="reproduce"><h2>Reproduce</h2><p>This page was built with the software below, on this machine; '
            "running the commands again (the demo reuses finished stages; a new output folder reruns "
            f"them) remakes it.</p><ul>{body}</ul><pre>{html.escape(chr(10).join(commands))}</pre></div>")
    if runs:
        rep.table(runs, ["run", "recipe", "preset", "seed", "data"], caption="Training runs (runs/*/run.json)",
                  table_id="reproduce-runs")


# ---------------------------------------------------------------------------------- the page


def build_report(out_dir: str | Path, title: str = "impax demo report",
                 views: Sequence[tuple[float, float]] = DEFAULT_VIEWS, size: int = DEFAULT_SIZE,
                 max_shapes: int = 8, supersample: int = 2, sif_view: int = 0,
                 strip_limit: int = 10, viewers: bool = True, viewer_faces: int = VIEWER_FACES,
                 command: Mapping[str, Any] | None = None) -> Path:
    """Write ``OUT/report/index.html`` for the demo folder ``out_dir`` and return its path.

    ``views``: (azimuth, elevation) pairs in degrees for the per-shape renders (ground truth and the
    reconstructions); ``size``: pixels per render (``supersample``² rays per pixel);
    ``max_shapes``: rows of renders (held-out shapes first, classes interleaved); ``sif_view``:
    which view draws the SIF elements; ``strip_limit``: most GAN samples / interpolation steps;
    ``viewers``: interactive 3D viewers of the shape rows (meshes written under ``OUT/report/3d/``,
    simplified to at most ``viewer_faces`` faces); ``command``: the demo invocation that builds the
    page (``{"argv", "cwd"}``; default: the one recorded in ``OUT/.stages/``).
    Missing or broken inputs become "not available: reason" cells.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    views = [(float(a), float(e)) for a, e in views] or list(DEFAULT_VIEWS)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    rep = Report(title, f"{out.resolve()} · built {stamp}")
    rep.raw(_EXTRA_CSS)
    render = _Renderer(int(size), int(supersample))
    shown: list[dict[str, Any]] = []
    sections = (
        ("header", lambda: _section_header(rep, out)),
        ("models", lambda: _section_models(rep, out)),
        ("metrics", lambda: _section_metrics(rep, out)),
        ("shapes", lambda: _section_shapes(rep, out, views, render, max_shapes, sif_view, shown)),
        ("3D viewers", lambda: _section_look3d(rep, out, shown, views[0], int(viewer_faces)) if viewers
         else _clear_viewer_files(out / "report")),
        ("gan", lambda: (rep.heading("GAN samples (IM-NET latent GAN)", anchor="gan"),
                         _mesh_strip(rep, out, out / "meshes" / "gan", "sample", "GAN", render, views[0],
                                     strip_limit, "gan-samples"))),
        ("interp", lambda: _section_interp(rep, out, render, views[0], strip_limit)),
        ("curves", lambda: _section_curves(rep, out)),
        ("reproduce", lambda: _section_reproduce(rep, out, command)),
    )
    for name, fn in sections:
        try:
            fn()
        except Exception as e:  # a report must not die on one bad piece; say what broke
            rep.raw(_na(f"{name} section failed: {type(e).__name__}: {e}"))
    rep.raw(f'<p class="note">{render.count} renders ({int(size)} px, {int(supersample)}x{int(supersample)} '
            f"supersampling, CPU ray casting) in {render.seconds:.1f} s; report built in "
            f"{time.perf_counter() - t0:.1f} s.</p>")
    return rep.write(out / "report" / "index.html")
