"""The demo report: SIF ellipsoids against the RBF formula, and a whole report built from a
synthetic demo folder (real procedural meshes, impax's own SIF/metrics/table writers), opened in
headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from impax.conventions import LDIF_ISO_LEVEL
from impax.report.figures import ELEMENT_PALETTE, euler_rotation, level_scale, sif_ellipsoids

from browser_util import inspect_page, inspect_viewers


def _sif(constants, centers, sigmas, rotations, symmetric_count):
    from impax.models.sif import StructuredImplicit

    f = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return StructuredImplicit(constants=f(constants), centers=f(centers), sigmas=f(sigmas),
                              rotations=f(rotations), latents=None, symmetric_count=symmetric_count,
                              radius_type="cov")


# --------------------------------------------------------------------------- ellipsoids


def test_euler_rotation_matches_models_sif():
    from impax.models.sif import rotation_matrices

    a = np.random.default_rng(1).uniform(-0.8, 0.8, (6, 3)).astype(np.float32)
    np.testing.assert_allclose(euler_rotation(a), np.asarray(rotation_matrices(a)), atol=1e-6)
    r = euler_rotation(a)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)


def test_ellipsoids_lie_on_the_iso_level_of_each_element_twins_included():
    """Each strong element's ellipsoid is its c*g = -0.07 level set, evaluated with the model's own
    RBF (impax.models.sif.element_terms, twins seeing z-reflected samples); weak ones are 1 sigma."""
    from impax.models.sif import element_terms

    rot = np.random.default_rng(2).uniform(-0.7, 0.7, (3, 3))
    sif = _sif([-0.6, -0.02, -1.3], [[0.1, 0.05, 0.2], [0.0, 0.1, 0.0], [-0.2, 0.0, 0.05]],
               [[0.05, 0.08, 0.1], [0.03, 0.04, 0.05], [0.1, 0.04, 0.06]], rot, symmetric_count=2)
    ells = sif_ellipsoids(sif)
    assert [(e.index, e.twin) for e in ells] == [(0, False), (1, False), (2, False), (0, True), (1, True)]
    assert [e.strong for e in ells] == [True, False, True, True, False]
    for j, e in enumerate(ells):
        c, g, *_ = element_terms(sif, np.asarray(e.mesh.vertices, np.float32))
        cg = np.asarray(c)[0, j] * np.asarray(g)[0, j]
        if e.strong:
            np.testing.assert_allclose(cg, LDIF_ISO_LEVEL, rtol=1e-4)
            assert e.k == pytest.approx(np.sqrt(2 * np.log(float(sif.constants[e.index]) / LDIF_ISO_LEVEL)))
        else:  # 1 sigma: g = exp(-1/2)
            np.testing.assert_allclose(np.asarray(g)[0, j], np.exp(-0.5), rtol=1e-4)
        assert e.mesh.volume > 0  # outward winding, also for the reflected twins
    # The twin is the mirror image through z = 0.
    np.testing.assert_allclose(ells[3].mesh.vertices, ells[0].mesh.vertices * [1, 1, -1], atol=1e-7)
    assert level_scale(-0.07) == 1.0 and level_scale(0.3) == 1.0


def test_ellipsoids_map_back_to_the_original_frame():
    from impax.geometry.normalize import gaps_transform

    box = trimesh.creation.box([2.0, 1.0, 0.6])
    box.apply_translation([3.0, -1.0, 0.5])
    to_gaps = gaps_transform(box)
    p_orig = np.array([[3.5, -0.8, 0.6]])
    p_gaps = to_gaps.apply(p_orig)[0]
    sif = _sif([-0.5], [p_gaps], [[0.02, 0.03, 0.04]], [[0.0, 0.0, 0.0]], symmetric_count=0)
    (e,) = sif_ellipsoids(sif, to_original=to_gaps.inverse())
    # An icosphere's vertices average to its centre, and similarities map centres to centres.
    np.testing.assert_allclose(np.asarray(e.mesh.vertices).mean(axis=0), p_orig[0], atol=1e-5)
    extent = np.ptp(np.asarray(e.mesh.vertices), axis=0)
    np.testing.assert_allclose(extent, 2 * e.k * np.array([0.02, 0.03, 0.04]) / to_gaps.scale, rtol=0.02)


# ------------------------------------------------------------------ synthetic demo folder

FAMILIES = ("chair", "mug", "torus")
SIZE = 96
VIEWS = ((35.0, 22.0), (215.0, 22.0))


def _write_demo(out: Path) -> dict:
    from impax.evaluation import tables
    from impax.evaluation.generation import generation_metrics
    from impax.geometry.mesh_io import save_mesh
    from impax.geometry.normalize import gaps_transform, imnet_transform, transform_mesh
    from impax.geometry.shapes import make_shape
    from impax.models.sif_format import write_sif
    from impax.stages import Stage, StageRunner
    from impax.train.runlog import RunLog

    rng = np.random.default_rng(0)
    StageRunner(out, log=lambda s: None).run([
        Stage("prepare", lambda: {"shapes": 3}), Stage("train-imnet-ae", lambda: {"steps": 40}),
        Stage("interpolate", lambda: {"a": "chair_chair_0", "b": "torus_torus_2", "steps": 4})])
    entries, records = [], {"imnet-ae": [], "ldif": []}
    truth = {}
    for k, fam in enumerate(FAMILIES):
        shape = make_shape(fam, seed=k, res=40)
        mesh = shape.mesh.copy()
        mesh.apply_scale(1.7)  # an "original" frame that is not the unit box
        mesh.apply_translation([0.4, -0.2, 0.3])
        save_mesh(mesh, out / "shapes" / fam / f"{fam}_{k}.ply")
        sid = f"{fam}_{fam}_{k}"
        entries.append({"id": sid, "class": fam, "split": "test" if k < 2 else "train",
                        "source": f"{fam}/{fam}_{k}.ply"})
        # IM-AE "reconstruction": the ground truth itself (same silhouette under a shared camera);
        # LDIF: scaled up 12% about the box centre (a larger silhouette under a shared camera).
        save_mesh(mesh, out / "meshes" / "imnet-ae" / f"{sid}.ply")
        big = mesh.copy()
        c = big.bounds.mean(axis=0)
        big.apply_translation(-c)
        big.apply_scale(1.12)
        big.apply_translation(c)
        if fam == "mug":  # a failed LDIF reconstruction: an unreadable file
            (out / "meshes" / "ldif").mkdir(parents=True, exist_ok=True)
            (out / "meshes" / "ldif" / f"{sid}.ply").write_text("ply\nthis is not a mesh\n")
        else:
            save_mesh(big, out / "meshes" / "ldif" / f"{sid}.ply")
        if fam != "torus":  # the torus has no SIF file
            to_gaps = gaps_transform(mesh)
            pts = np.asarray(trimesh.sample.sample_surface(transform_mesh(mesh, to_gaps), 6, seed=k)[0])
            consts = np.array([-0.9, -0.5, -0.3, -0.2, -0.03, -0.01])
            write_sif(out / "meshes" / "ldif" / f"{sid}.sif.txt",
                      _sif(consts, pts, np.full((6, 3), 0.06), rng.uniform(-0.5, 0.5, (6, 3)), 2))
            (out / "meshes" / "ldif" / f"{sid}.gaps.json").write_text(json.dumps(to_gaps.to_dict()))
        for model in records:
            iou = float(rng.uniform(0.5, 0.95))
            records[model].append({"id": f"{fam}/{fam}_{k}", "class": fam, "status": "ok", "iou": iou,
                                   "chamfer_l1": float(rng.uniform(0.005, 0.03)),
                                   "chamfer_l2": float(rng.uniform(1e-4, 1e-3)),
                                   "fscore": float(rng.uniform(0.3, 0.9)),
                                   "normal_consistency": float(rng.uniform(0.7, 0.95))})
        truth[sid] = mesh
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "data" / "index.json").write_text(json.dumps({"count": 3, "shapes": entries}))
    metrics = ["iou", "chamfer_l1", "chamfer_l2", "fscore", "normal_consistency"]
    for model, recs in records.items():
        summary = tables.summarize(recs, metrics)
        tables.write_json({"summary": summary, "shapes": recs}, out / "eval" / model / "summary.json")
        tables.write_csv(recs, out / "eval" / model / "per_shape.csv", metrics)
    gen = [rng.normal(size=(64, 3)) for _ in range(3)]
    ref = [rng.normal(size=(64, 3)) for _ in range(3)]
    g = generation_metrics(gen, ref)
    tables.write_json({"generation": g}, out / "eval" / "gan" / "summary.json")
    # GAN samples and the interpolation strip, IM-NET frame.
    for k in range(3):
        m = make_shape(FAMILIES[k], seed=10 + k, res=32).mesh
        save_mesh(transform_mesh(m, imnet_transform(m)), out / "meshes" / "gan" / f"sample_{k}.ply")
    for k in range(4):
        m = make_shape("capsule", seed=20 + k, res=32).mesh
        save_mesh(transform_mesh(m, imnet_transform(m)), out / "meshes" / "interp" / f"step_{k}.ply")
    # Two runs with loss curves (the GAN run is absent).
    for run, n in (("imnet-ae", 12), ("ldif", 8)):
        (out / "runs" / run).mkdir(parents=True, exist_ok=True)
        (out / "runs" / run / "run.json").write_text(json.dumps({"recipe": run, "config": {}, "preset": "quick",
                                                                 "seed": 7, "data": str(out / "data")}))
        log = RunLog(out / "runs" / run, resume_step=0, tensorboard=False)
        for s in range(1, n + 1):
            log.write(s * 10, "main", 0, {"loss": 1.0 / s, "sign_flip": 0.5 - 0.1 * s},
                      {"steps_per_sec": 3.0})
        log.close()
    return {"records": records, "truth": truth, "generation": g}


class _Tables(HTMLParser):
    """Cell texts of every table with an id, and every image's alt -> src."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: dict[str, str] = {}
        self._stack: list[str | None] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._stack.append(a.get("id"))
            if a.get("id"):
                self.tables[a["id"]] = []
        elif tag == "tr" and self._stack and self._stack[-1]:
            self.tables[self._stack[-1]].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images[a["alt"]] = a["src"]

    def handle_endtag(self, tag):
        if tag == "table":
            self._stack.pop()
        elif tag in ("td", "th") and self._cell is not None:
            if self._stack and self._stack[-1]:
                self.tables[self._stack[-1]][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _decode(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from impax.report.demo_report import build_report

    out = tmp_path_factory.mktemp("demo")
    facts = _write_demo(out)
    page = build_report(out, title="impax demo (test)", views=VIEWS, size=SIZE, max_shapes=8)
    text = page.read_text(encoding="utf-8")
    parsed = _Tables()
    parsed.feed(text)
    return out, page, text, parsed, facts


def test_report_opens_in_chromium_with_every_image_tables_and_plots(demo, tmp_path):
    out, page, text, parsed, _ = demo
    assert page == out / "report" / "index.html"
    shot = tmp_path / "demo_report.png"
    info = inspect_page(page, screenshot=shot, ids=("reproduce", "dropped-rows"),
                        strips=("gan-samples", "interp-strip"))
    shutil.copyfile(shot, "/tmp/demo_report_shot.png")
    assert info["title"] == "impax demo (test)"
    # 3 GT + 3 IM-AE + 2 LDIF (one unreadable) + 2 SIF views (torus has none) + 3 GAN
    # + 4 interp steps and their 2 end-point ground truths.
    assert len(info["images"]) == 3 + 3 + 2 + 2 + 3 + 4 + 2
    assert all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in info["images"]), info["images"]
    ids = {t["id"] for t in info["tables"]}
    assert {"stages", "data", "metrics-imnet-ae", "metrics-ldif", "metrics-compare", "metrics-gan",
            "shapes-grid", "gan-samples", "interp-strip", "runs"} <= ids
    # Per run: a log-y plot of the positive series and a linear one of the series crossing zero.
    assert info["svgs"] == 4
    assert shot.stat().st_size > 20_000
    assert "section failed" not in text
    _assert_first_pictures_whole(info["strips"])
    assert info["elements"]["dropped-rows"] is None  # all 3 reconstructed shapes are shown
    repro = info["elements"]["reproduce"]
    assert repro is not None
    for want in ("impax 0", "jax ", "numpy ", "python 3", "CPU", "jax devices", "imnet-ae 7",
                 f"impax demo --quick --out {out.resolve()} --seed 7", f"impax report {out.resolve()}"):
        assert want in repro, (want, repro)


def _assert_first_pictures_whole(strips: dict) -> None:
    """The first picture of each strip is laid out at its natural width, inside its own cell, and
    the next cell starts after it (not clipped, not covered)."""
    for tid, g in strips.items():
        assert g is not None and g["img"] is not None and g["cell1"] is not None, (tid, g)
        assert g["inner"] == g["natural"], (tid, g)  # drawn at its natural width (border aside)
        assert g["img"]["right"] <= g["cell0"]["right"] + 0.5, (tid, g)
        assert g["img"]["right"] <= g["cell1"]["left"] + 0.5, (tid, g)


def test_large_renders_fit_their_cells_and_left_out_rows_are_named(demo, tmp_path):
    """Renders wider than the shape grid's label column (130 px): the strips' first pictures stay
    whole; with room for 2 rows of 3 shapes the page says so, and keeps a row for the training shape."""
    from impax.report.demo_report import build_report

    out, *_ = demo
    copy = tmp_path / "demo"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("report"))
    page = build_report(copy, title="trimmed", views=VIEWS[:1], size=160, supersample=1, max_shapes=2)
    info = inspect_page(page, ids=("dropped-rows", "reproduce"), strips=("gan-samples", "interp-strip"))
    _assert_first_pictures_whole(info["strips"])
    note = info["elements"]["dropped-rows"]
    assert note is not None and note.startswith("2 of 3 reconstructed shapes shown"), note
    assert info["elements"]["reproduce"]
    text = page.read_text(encoding="utf-8")
    order = [m.group(1) for m in re.finditer(r'alt="(\w+) ground truth"', text)]
    # held-out chair first, then the training torus (the mug is left out); then the strip's ends
    assert order == ["chair_chair_0", "torus_torus_2"], order
    assert "<i>training shape</i>" in text
    assert 'alt="start chair_chair_0 ground truth"' in text and 'alt="end torus_torus_2 ground truth"' in text


def test_missing_pieces_are_named_not_raised(demo):
    out, page, text, parsed, _ = demo
    na = re.findall(r'<div class="na">not available: ([^<]*)</div>', text)
    assert any("meshes/ldif/mug_mug_1.ply" in r for r in na), na
    assert any("torus_torus_2.sif.txt" in r for r in na), na
    runs = {row[0]: row for row in parsed.tables["runs"][1:]}
    assert "not available" in runs["imnet-gan"][-1]
    assert runs["imnet-ae"][2] == "120" and runs["ldif"][2] == "80"  # last logged step


def test_metric_tables_match_the_records(demo):
    out, page, text, parsed, facts = demo
    for model in ("imnet-ae", "ldif"):
        rows = parsed.tables[f"metrics-{model}"]
        head = rows[0]
        by = {r[0]: dict(zip(head, r)) for r in rows[1:]}
        recs = facts["records"][model]
        assert set(by) == {"chair", "mug", "torus", "mean (per class)", "mean (per shape)"}
        for key, label in (("iou", "IoU"), ("chamfer_l1", "Chamfer-L1"), ("normal_consistency", "NC")):
            want = np.mean([r[key] for r in recs])
            assert float(by["mean (per shape)"][label]) == pytest.approx(want, rel=1e-3)
            assert float(by["mug"][label]) == pytest.approx(recs[1][key], rel=1e-3)
    gan = dict(zip(*parsed.tables["metrics-gan"]))
    assert float(gan["COV"]) == pytest.approx(facts["generation"]["coverage"], rel=1e-3)
    assert float(gan["1-NNA"]) == pytest.approx(facts["generation"]["one_nna"], rel=1e-3)
    stages = [r[0] for r in parsed.tables["stages"][1:]]
    assert stages == ["prepare", "train-imnet-ae", "interpolate", "report"]  # the page's own stage is listed too


def _mask(img: np.ndarray) -> np.ndarray:
    return (img < 250).any(axis=-1)


def test_shape_rows_share_the_ground_truth_camera(demo):
    """An exact copy renders with the ground truth's silhouette, a 12%-larger copy with a larger
    one: both are framed by the ground truth, not by themselves. Views are stacked top to bottom."""
    out, page, text, parsed, _ = demo
    for sid in ("chair_chair_0", "torus_torus_2"):
        gt = _decode(parsed.images[f"{sid} ground truth"])
        ae = _decode(parsed.images[f"{sid} IM-NET AE"])
        ld = _decode(parsed.images[f"{sid} LDIF"])
        assert gt.shape == ae.shape == ld.shape == (2 * SIZE + 6, SIZE + 4, 3)
        assert (_mask(gt) == _mask(ae)).mean() > 0.999
        assert _mask(gt).sum() > 0.05 * gt.shape[0] * gt.shape[1]
        assert _mask(ld).sum() > 1.15 * _mask(gt).sum()
        # The two views differ (azimuths 180 degrees apart of a non-symmetric chair).
        if sid.startswith("chair"):
            top, bottom = gt[2:2 + SIZE], gt[SIZE + 4:2 * SIZE + 4]
            assert (_mask(top) != _mask(bottom)).mean() > 0.01
    # The SIF view shows coloured element ellipsoids inside the ghosted LDIF mesh.
    sif = _decode(parsed.images["chair_chair_0 SIF elements"]).astype(int)
    red = ELEMENT_PALETTE[0]
    assert red[0] > 0.8 and red[1] < 0.2
    reddish = (sif[..., 0] > sif[..., 1] + 60) & (sif[..., 0] > sif[..., 2] + 60)
    assert reddish.sum() > 10
    order = [m.group(1) for m in re.finditer(r'alt="(\w+) ground truth"', text)]
    assert order == ["chair_chair_0", "mug_mug_1", "torus_torus_2"]  # held-out first, then train


def test_report_command_on_an_empty_folder_and_a_missing_one(tmp_path, capsys):
    from impax.cli import main

    assert main(["report", str(tmp_path / "nope")]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--open-check", "--size", "32"]) == 3
    text = (empty / "report" / "index.html").read_text()
    assert "section failed" not in text
    assert text.count('class="na"') >= 6  # stages, data, two evals, GAN metrics, shapes, strips...
    err = capsys.readouterr().err
    assert "open check: ok" in err and "0 images" in err


def test_loss_plots_merge_equal_series_skip_zero_ones_and_stage_starts():
    from impax.report.demo_report import _loss_plots

    recs = [{"step": s, "stage": st, "loss": y, "mse": y, "loss_bb": 1e-8 if s == 40 else 0.0}
            for s, st, y in ((10, "level16", 0.005), (20, "level32", 0.08), (30, "level32", 0.05),
                             (40, "level64", 0.2), (50, "level64", 0.04), (60, "level64", 0.03))]
    plots = _loss_plots("imnet-ae", recs)
    svg = plots[0]
    assert len(plots) == 2 and "not drawn, zero throughout" in plots[1] and "loss_bb" in plots[1]
    assert svg.count("<polyline") == 1 and ">loss = mse<" in svg  # one line for two equal series
    assert "first point of each stage left out" in svg
    points = re.search(r'<polyline[^>]*points="([^"]*)"', svg).group(1).split()
    assert len(points) == 3  # steps 30, 50 and 60: the first point of every stage is left out
    ticks = re.findall(r'text-anchor="middle">([-0-9.e+]+)</text>', svg)
    assert ticks and all(float(t) == int(float(t)) for t in ticks), ticks


def test_step_axis_ticks_are_whole_numbers():
    from impax.report.html import line_plot_svg, x_ticks

    assert x_ticks(200, 222, integer=True) == [200.0, 206.0, 211.0, 216.0, 222.0]
    assert 0.5 in x_ticks(0, 2, count=5)
    svg = line_plot_svg({"loss": ([200, 211, 222], [1.0, 0.5, 0.2])}, log_y=True)
    assert "210.5" not in svg and ">211<" in svg


# ------------------------------------------------------------------------------ 3D viewers


def _png(uri: str) -> np.ndarray:
    return _decode(uri).astype(int)


def _shape_pixels(img: np.ndarray) -> np.ndarray:
    return img[(img < 245).any(axis=-1)]


def test_3d_viewers_draw_offline_from_disk_with_one_camera_per_row(demo):
    """Every viewer (ground truth and each reconstruction) draws the shape in its model's colour,
    from file:// with the network off; dragging one viewer turns its row's others, a wheel turn on
    another zooms them all, other rows stay put; nothing is fetched but local files."""
    out, page, text, *_ = demo
    assert not re.search(r'(?:src|href)="(?:https?:)?//', text)  # no CDN, no remote link
    info = inspect_viewers(page)
    states = info["states"]
    assert isinstance(states, list), states
    # 3 ground truths + 3 IM-AE + 2 LDIF (the mug's LDIF file is unreadable: a "not available" cell)
    assert [(s["row"], s["glb"].rsplit("/", 1)[1]) for s in states] == [
        (0, "gt.glb"), (0, "imnet-ae.glb"), (0, "ldif.glb"), (1, "gt.glb"), (1, "imnet-ae.glb"),
        (2, "gt.glb"), (2, "imnet-ae.glb"), (2, "ldif.glb")]
    assert all(s["state"] == "ok" and s["draws"] >= 1 for s in states), states
    assert info["status"] is None and not any(info["messages"]), info["messages"]
    images = [_png(u) for u in info["before"]["images"]]
    for s, img in zip(states, images):
        shape = _shape_pixels(img)
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50, s  # shaded, not a flat fill
        assert len(shape) > 0.05 * img.shape[0] * img.shape[1], s
        r, g, b = shape.mean(axis=0)
        kind = s["glb"].rsplit("/", 1)[1]
        if kind == "imnet-ae.glb":
            assert b > r + 30, (s, r, g, b)  # blue
        elif kind == "ldif.glb":
            assert r > b + 30, (s, r, g, b)  # orange
        else:
            assert max(r, g, b) - min(r, g, b) < 20, (s, r, g, b)  # grey
    # Same camera: the exact copy (IM-AE) covers the ground truth's pixels; LDIF (12% larger) more.
    gt, ae, ld = (_mask(images[i]) for i in range(3))
    assert (gt == ae).mean() > 0.99 and ld.sum() > 1.1 * gt.sum()
    cams = info["before"]["cameras"]
    for row in cams:
        assert all(c == row[0] for c in row), row
    dragged, zoomed = info["dragged"]["cameras"], info["zoomed"]["cameras"]
    pos = lambda c: np.array(c["position"])  # noqa: E731
    dist = lambda c: np.linalg.norm(pos(c) - np.array(c["target"]))  # noqa: E731
    assert np.linalg.norm(pos(dragged[0][0]) - pos(cams[0][0])) > 0.1 * dist(cams[0][0])
    for c in dragged[0] + zoomed[0]:
        np.testing.assert_allclose(c["target"], cams[0][0]["target"], atol=1e-9)
    for a, b in ((dragged[0][0], c) for c in dragged[0][1:]):
        np.testing.assert_allclose(pos(b), pos(a), atol=1e-9)
    assert abs(dist(zoomed[0][0]) - dist(dragged[0][0])) > 0.05 * dist(dragged[0][0])
    for c in zoomed[0][1:]:
        np.testing.assert_allclose(pos(c), pos(zoomed[0][0]), atol=1e-9)
    assert dragged[1:] == cams[1:] and zoomed[1:] == cams[1:]
    after = [_png(u) for u in info["dragged"]["images"]]
    assert all((after[i] != images[i]).any() for i in range(3))  # the whole row redrew
    assert all((after[i] == images[i]).all() for i in range(3, len(images)))
    remote = [u for u in info["urls"] if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")]
    assert not remote, remote
    local = {u.split("/report/", 1)[1] for u in info["urls"] if u.startswith("file:") and "/report/" in u}
    assert "assets/impax-three.min.js" in local
    assert {s["glb"] + ".js" for s in states} <= local
    for s in states:  # the glb itself is there too (a download link)
        assert (out / "report" / s["glb"]).is_file()
    assert (out / "report" / "assets" / "three.js-LICENSE.txt").is_file()


def test_without_webgl_the_3d_viewers_say_so_and_the_renders_stay(demo):
    out, page, *_ = demo
    info = inspect_viewers(page, webgl=False)
    assert info["status"] and "WebGL 2 is not available" in info["status"], info["status"]
    assert all(s["state"] == "error" for s in info["states"]) and len(info["states"]) == 8
    assert all("3D view off" in m for m in info["messages"]), info["messages"]
    assert info["images_ok"]
    assert not any(u.endswith(".glb.js") or u.endswith("impax-three.min.js") for u in info["urls"])


def test_the_3d_section_caps_faces_and_can_be_left_out(demo, tmp_path):
    from impax.report.demo_report import build_report

    out, *_ = demo
    copy = tmp_path / "demo"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("report"))
    page = build_report(copy, title="capped", views=VIEWS[:1], size=24, supersample=1, max_shapes=1,
                        viewer_faces=500)
    text = page.read_text(encoding="utf-8")
    assert "(simplified from " in text and "Meshes over 500 faces are simplified" in text
    glbs = sorted((copy / "report" / "3d").rglob("*.glb"))
    assert [p.name for p in glbs] == ["gt.glb", "imnet-ae.glb", "ldif.glb"]
    for p in glbs:
        back = trimesh.load(p, force="mesh", process=False)
        assert 0 < len(back.faces) <= 500
    page = build_report(copy, title="flat", views=VIEWS[:1], size=24, supersample=1, max_shapes=1, viewers=False)
    text = page.read_text(encoding="utf-8")
    assert 'id="look3d"' not in text and not (copy / "report" / "3d").exists()


# ------------------------------------------------------------------------------ Reproduce


def test_reproduce_block_shows_the_demo_command_line_as_typed(tmp_path):
    """The invocation the demo records in its stage markers is shown verbatim (quoted for a
    shell), with the folder it ran in; one passed to build_report wins; without any, the command
    is rebuilt from the runs."""
    from impax.report.demo_report import build_report

    out = tmp_path / "demo"
    (out / ".stages").mkdir(parents=True)
    inv = {"argv": ["impax", "demo", "--seed", "3", "--out", "my out", "--no-progress"], "cwd": "/home/me/work"}
    (out / ".stages" / "shapes.json").write_text(json.dumps({"key": "k", "summary": {"shapes": 3, "invocation": inv}}))
    old = {"argv": ["impax", "demo", "--out", "my out"], "cwd": "/elsewhere"}
    (out / ".stages" / "prepare.json").write_text(json.dumps({"key": "k", "summary": {"invocation": old}}))
    import os
    import time as _t

    os.utime(out / ".stages" / "prepare.json", (_t.time() - 60, _t.time() - 60))  # the older run
    kw = {"views": VIEWS[:1], "size": 16, "supersample": 1, "viewers": False}
    text = build_report(out, **kw).read_text(encoding="utf-8")
    block = re.search(r'<div id="reproduce">.*?</div>', text, re.S).group(0)
    pre = re.search(r"<pre>(.*?)</pre>", block, re.S).group(1)
    lines = [ln.replace("&#x27;", "'") for ln in pre.splitlines()]
    assert lines[0] == "# the command line that ran this demo (in /home/me/work):"
    assert lines[1] == "impax demo --seed 3 --out 'my out' --no-progress"
    assert lines[2] == f"impax report {out.resolve()}"
    assert "details" not in block and "invocation" not in text  # not dumped into the stage table
    now = {"argv": ["python3", "-m", "impax", "demo", "--quick", "--out", "x"], "cwd": "/w"}
    text = build_report(out, command=now, **kw).read_text(encoding="utf-8")
    assert "python3 -m impax demo --quick --out x" in text and "(in /w)" in text
    for p in (out / ".stages").glob("*.json"):
        p.unlink()
    text = build_report(out, **kw).read_text(encoding="utf-8")
    assert "# rebuilt from runs/*/run.json (this folder records no demo command line):" in text
    assert f"impax demo --out {out.resolve()}" in text
