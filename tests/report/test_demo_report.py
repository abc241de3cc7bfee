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

from browser_util import inspect_page


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
