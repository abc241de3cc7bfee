"""The ldif/sif/sifpp recipes end to end on a tiny prepared store: run.json, checkpoints, exact
resume, IoU evaluation, the extracted.occnet export, the CLI, and the composed loss.

Precision: the equalities here assume exact float32 and deterministic kernels, i.e. the CPU backend
tests/conftest.py pins; on a GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest and
XLA_FLAGS=--xla_gpu_deterministic_ops=true (docs/gpu.md).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from impax.data.pipeline import PrepareConfig
from impax.data.prepare import prepare
from impax.data.store import ShapeStore
from impax.geometry.shapes import generate
from impax.models.ldif_model import set_training

#: A tiny LDIF (4 + 2 elements, 8-d latents) and a tiny encoder; 3 shapes, 2 for training.
TINY = {"model.element_count": 4, "model.symmetric_count": 2, "model.latent_size": 8, "model.decoder_width": 8,
        "model.image_size": 24, "model.fc_width": 16, "model.simple_cnn_features": 16,
        "model.local_point_count": 16, "model.pointnet_maxpool_features": 16, "model.batch_size": 1,
        "model.sample_count": 64, "surface_points": 128, "epochs": 2, "train.log_every_steps": 1,
        "train.async_checkpointing": False, "train.checkpoint_every_steps": 1}
TINY_SIF = {**TINY, "model.element_count": 6, "model.symmetric_count": 0, "model.latent_size": 0,
            "model.sample_count": 96}


def make_tiny_store(root: Path) -> Path:
    """3 built-in shapes (box, sphere: train; torus: test) with tiny LDIF data (depth 24^2, 8^3 grid)."""
    src = root / "shapes"
    generate(src, 3, seed=0)
    (root / "train.lst").write_text("box_000\nsphere_000\n")
    (root / "test.lst").write_text("torus_000\n")
    cfg = PrepareConfig.quick(imnet=False, views=False, occupancy=False, n_uniform=512, n_near=512, n_surface=512,
                              sdf_grid_res=8, depth_size=24)
    res = prepare(src, root / "data", cfg, workers=1, progress=False,
                  split_lists={"train": root / "train.lst", "test": root / "test.lst"})
    assert res.status == 0, res.summary()
    return root / "data"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    return make_tiny_store(tmp_path_factory.mktemp("ldif_store"))


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_ldif_run_resumes_and_reports_heldout_iou(store_dir, tmp_path):
    from impax.train.recipes.ldif import train

    # interrupted after one step, then resumed to the end ...
    a = tmp_path / "a"
    s1 = train("ldif", store_dir, a, "cpu", TINY, seed=3, max_steps=1, progress=False)
    assert s1["stopped"] == "max_steps" and s1["global_step"] == 1 and "iou_heldout" not in s1
    info = json.loads((a / "run.json").read_text())
    assert info["recipe"] == "ldif" and info["data"] == str(store_dir.absolute()) and info["seed"] == 3
    assert info["config"]["model"]["element_count"] == 4 and info["config"]["model"]["loss"] == "unsbbgi"
    assert (a / "checkpoints" / "1").is_dir() and (a / "extracted.occnet").is_file()
    s2 = train("ldif", store_dir, a, "cpu", TINY, seed=3, progress=False)
    assert s2["stopped"] == "done" and s2["global_step"] == 4  # 2 epochs x 2 shapes (batch 1)
    assert _steps(a) == [1, 2, 3, 4]

    ev = json.loads((a / "eval_iou.json").read_text())
    assert ev["heldout"]["splits"] == ["test"] and list(ev["heldout"]["per_shape"]) == ["torus_torus_000"]
    assert sorted(ev["train"]["per_shape"]) == ["box_box_000", "sphere_sphere_000"]
    assert 0.0 <= s2["iou_heldout"] <= 1.0 and s2["n_heldout"] == 1 and s2["n_train"] == 2
    # other settings in the same folder are refused
    with pytest.raises(ValueError, match="different settings"):
        train("ldif", store_dir, a, "cpu", {**TINY, "model.latent_size": 4, "model.decoder_width": 4}, seed=3,
              progress=False)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(store_dir, tmp_path):
    """Interrupted after one step and resumed, the run ends with exactly the decoder (and loss) of
    an uninterrupted run (slow: two compilations of the training step)."""
    from impax.train.recipes.ldif import train

    a, b = tmp_path / "a", tmp_path / "b"
    train("ldif", store_dir, a, "cpu", TINY, seed=5, max_steps=1, progress=False)
    s2 = train("ldif", store_dir, a, "cpu", TINY, seed=5, progress=False)
    s3 = train("ldif", store_dir, b, "cpu", TINY, seed=5, progress=False)
    assert s2["global_step"] == s3["global_step"] == 4
    assert (a / "extracted.occnet").read_bytes() == (b / "extracted.occnet").read_bytes()
    assert s2["loss"] == pytest.approx(s3["loss"], rel=1e-6)


def test_iou_matches_numpy_on_stored_samples(store_dir, tmp_path):
    """eval_iou.json's number, recomputed from the written SIF file's F (via the run's decoder file)
    at the stored uniform samples against the stored signed distances."""
    from impax.models.ldif_model import shape_values
    from impax.models.sif_format import read_occnet, read_sif
    from impax.train.recipes.ldif import train
    from impax.inference.ldif import reconstruct

    run = tmp_path / "run"
    train("ldif", store_dir, run, "cpu", {**TINY, "epochs": 1}, progress=False)
    ev = json.loads((run / "eval_iou.json").read_text())
    rows = reconstruct(run, "depth", [store_dir, "torus_torus_000"], tmp_path / "rec", resolution=16)
    sif = read_sif(rows[0]["sif"])
    store = ShapeStore(store_dir)
    pts = store.read("torus_torus_000", "uniform_points")
    gt = store.read("torus_torus_000", "uniform_sdf") < 0
    pred = shape_values(sif, read_occnet(run / "extracted.occnet"), pts, skip=False, batch=len(pts)) < -0.07
    union = np.count_nonzero(pred | gt)
    want = 1.0 if union == 0 else np.count_nonzero(pred & gt) / union
    assert ev["heldout"]["per_shape"]["torus_torus_000"] == pytest.approx(want, abs=1e-9)


def test_sif_cli_trains_and_composes_its_loss(store_dir, tmp_path):
    from impax.cli import main
    from impax.train.recipes.ldif import inside_boxes, make_loader, make_loss, build_model, resolve_config

    run = tmp_path / "sif"
    args = ["train", "sif", "--data", str(store_dir), "--out", str(run), "--no-progress"]
    for k, v in {**TINY_SIF, "epochs": 1}.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["recipe"] == "sif" and info["config"]["model"]["radius_type"] == "aa"
    assert info["config"]["model"]["loss"] == "unsec" and info["config"]["model"]["inside_weight"] == 10.0
    assert not (run / "extracted.occnet").exists()  # SIF has no local decoder
    assert json.loads((run / "eval_iou.json").read_text())["train"]["count"] == 2

    # the ec term's box: inside uniform samples, the outside ones moved to the origin
    store = ShapeStore(store_dir)
    lo, hi = inside_boxes(store, ["box_box_000"])
    p, s = store.read("box_box_000", "uniform_points"), store.read("box_box_000", "uniform_sdf")
    q = np.concatenate([p[s < 0], np.zeros((1, 3), np.float32)])
    np.testing.assert_array_equal(lo[0], q.min(0))
    np.testing.assert_array_equal(hi[0], q.max(0))

    # the loss is the sum of the preset's terms (SIF: u, ns, ec), each a finite positive number
    cfg = resolve_config("sif", "cpu", TINY_SIF)
    batch = make_loader(store, cfg, "train", 0, True).batch(0, 0)
    import jax

    loss, parts = make_loss(cfg.model)(build_model(cfg), batch, jax.random.key(0))
    terms = {k: float(v) for k, v in parts.items() if k.startswith("loss_")}
    assert set(terms) == {"loss_u", "loss_ns", "loss_ec"}
    assert float(loss) == pytest.approx(sum(terms.values()), rel=1e-6)
    assert all(np.isfinite(v) and v > 0 for v in terms.values())


def _numpy_sif(constants, centers, sigmas, rotations, symmetric_count, points):
    """``F(x) = sum_i c_i g_i(x)`` of ``cov`` elements in plain numpy (the module doc of
    impax.models.sif / google/ldif quadrics.py): ``g = exp(-0.5 d^T R diag(1/(s^2 + 1e-8)) R^T d)``,
    ``R = Rz(yaw) Ry(pitch) Rx(roll)``; the first ``symmetric_count`` elements also at ``(x, y, -z)``."""
    def rot(roll, pitch, yaw):
        cx, sx, cy, sy, cz, sz = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
        rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        return rz @ ry @ rx

    pts = points.astype(np.float64)
    mirrored = pts * np.array([1.0, 1.0, -1.0])
    out = np.zeros(len(pts))
    for i in range(len(constants)):
        r = rot(*rotations[i].astype(np.float64))
        inv = r @ np.diag(1.0 / (sigmas[i].astype(np.float64) ** 2 + 1e-8)) @ r.T
        for p in ([pts, mirrored] if i < symmetric_count else [pts]):
            d = p - centers[i]
            out += constants[i] * np.exp(-0.5 * np.einsum("pi,ij,pj->p", d, inv, d))
    return out


def test_zero_decoder_output_starts_ldif_as_its_sif(store_dir):
    """``decoder_output_init="zeros"``: at step 0 the LDIF training loss sees exactly the SIF sum
    ``sum_i c_i g_i`` of its own explicit parameters (numpy reference), while the default (Glorot)
    decoder changes F; the zeroed output kernel still gets a gradient (the decoder trains)."""
    import jax

    from impax.models import ldif_losses as L
    from impax.models.occnet import occnet_forward
    from impax.models.sif import shape_function
    from impax.train.recipes.ldif import build_model, make_loader, make_loss, resolve_config

    store = ShapeStore(store_dir)
    cfg = resolve_config("ldif", "cpu", {**TINY, "decoder_output_init": "zeros"})
    batch = make_loader(store, cfg, "train", 0, False).batch(0, 0)
    key = jax.random.key(1)
    zero, glorot = build_model(cfg, seed=2), build_model(dataclasses.replace(cfg, decoder_output_init="glorot"), 2)
    for m in (zero, glorot):
        set_training(m, True)

    sif = zero.encode(key, depth=batch["depth"], surface_points=batch["surface_points"],
                      surface_normals=batch["surface_normals"])
    assert sif.latents is not None and float(np.abs(np.asarray(sif.latents)).max()) > 0
    s = sif.as_numpy()
    # near-surface samples and the element centres (where the RBFs are large)
    pts = np.concatenate([batch["near_points"], s.centers], axis=1)
    f_ldif = np.asarray(shape_function(sif, pts, zero.decoder))
    want = _numpy_sif(s.constants[0], s.centers[0], s.sigmas[0], s.rotations[0], cfg.model.symmetric_count, pts[0])
    assert np.abs(want).max() > 1e-3  # the elements reach the samples
    np.testing.assert_allclose(f_ldif[0], want, rtol=1e-4, atol=1e-7)
    # the composed loss of the recipe (ns term) is the sample loss of that F
    _, parts = make_loss(cfg.model)(zero, batch, key)
    want_f = np.stack([_numpy_sif(s.constants[b], s.centers[b], s.sigmas[b], s.rotations[b],
                                  cfg.model.symmetric_count, batch["near_points"][b]) for b in range(len(pts))])
    gt_out = (batch["near_sdf"] > 0).astype(np.float64)
    prob = 1.0 / (1.0 + np.exp(-cfg.model.hardness * (want_f + 0.07)))
    w = np.where(gt_out > 0.5, 1.0, cfg.model.inside_weight)
    want_ns = cfg.model.near_surface_weight * np.mean(w * (prob - gt_out) ** 2)
    assert float(parts["loss_ns"]) == pytest.approx(want_ns, rel=1e-4)
    # the same seed with the original init: the same explicit part, a decoder that changes F
    sif_g = glorot.encode(key, depth=batch["depth"], surface_points=batch["surface_points"],
                          surface_normals=batch["surface_normals"])
    np.testing.assert_allclose(np.asarray(sif_g.constants), s.constants, rtol=1e-6)
    f_g = np.asarray(shape_function(sif_g, pts, glorot.decoder))  # same explicit part, other F
    assert np.abs(f_g[0] - want).max() > 1e-3 * np.abs(want).max()
    # the zeroed kernel is trainable: the loss's gradient with respect to it is non-zero
    weights = zero.decoder.weights()

    def ns_loss(kernel):
        w = {**weights, "output.kernel": kernel}
        f = shape_function(sif, batch["near_points"], lambda lat, p: occnet_forward(w, lat, p)[0])
        return L.near_surface_sample_loss(cfg.model, f, batch["near_sdf"])

    grad = np.asarray(jax.grad(ns_loss)(weights["output.kernel"]))
    assert not np.any(np.asarray(weights["output.kernel"])) and np.abs(grad).max() > 0


def test_presets_and_init_option():
    """Every recipe offers paper/cpu/demo/quick; the original's init stays the default; unknown
    init names are refused; runs started before the option existed resume (missing key = default)."""
    from impax.train.recipes.ldif import PRESETS, RECIPES, LdifRecipeConfig

    for name in ("ldif", "sif", "sifpp"):
        assert {"paper", "cpu", "demo", "quick"} <= set(PRESETS[name])
        assert PRESETS[name]["paper"].decoder_output_init == "glorot"
    assert LdifRecipeConfig().decoder_output_init == "glorot"
    with pytest.raises(ValueError, match="decoder_output_init"):
        LdifRecipeConfig(decoder_output_init="ones")
    assert RECIPES["ldif"].from_run_json({"config": {"epochs": 3}}).decoder_output_init == "glorot"


def test_init_from_copies_weights_and_is_part_of_the_run(store_dir, tmp_path):
    """``init_from``: a new run starts from another run's weights (not its optimiser or position);
    run.json records the source; resuming with another source is refused; a model of another size
    is refused with the name of the first array that differs."""
    from impax.train import load_model
    from impax.train.recipes.ldif import build_model, resolve_config, train

    a, b = tmp_path / "a", tmp_path / "b"
    s_a = train("ldif", store_dir, a, "cpu", TINY, seed=1, progress=False)
    s = train("ldif", store_dir, b, "cpu", TINY, seed=2, max_steps=0, progress=False, init_from=str(a))
    assert s["global_step"] == 0
    cfg = resolve_config("ldif", "cpu", TINY)
    ma, mb, fresh = build_model(cfg, 1), build_model(cfg, 2), build_model(cfg, 2)
    load_model(a, ma)
    load_model(b, mb)
    from flax import nnx

    from impax.train.checkpoint import named_leaves

    la, lb, lf = (named_leaves(nnx.state(m)) for m in (ma, mb, fresh))
    assert set(la) == set(lb)
    for k in la:
        np.testing.assert_array_equal(np.asarray(la[k]), np.asarray(lb[k]))
    assert any(not np.array_equal(np.asarray(lb[k]), np.asarray(lf[k])) for k in lb)  # not a fresh init
    info = json.loads((b / "run.json").read_text())
    assert info["init_from"] == {"source": str(a.absolute()), "step": s_a["global_step"]}
    # resuming continues from b's own checkpoint, with the same source only
    s2 = train("ldif", store_dir, b, "cpu", TINY, seed=2, max_steps=1, progress=False, init_from=str(a))
    assert s2["global_step"] == 1
    with pytest.raises(ValueError, match="init_from"):
        train("ldif", store_dir, b, "cpu", TINY, seed=2, progress=False)
    with pytest.raises(ValueError, match="different model size|does not fit"):
        train("ldif", store_dir, tmp_path / "c", "cpu", {**TINY, "model.fc_width": 24}, progress=False,
              init_from=str(a))
    with pytest.raises(ValueError, match="no shipped model"):
        train("ldif", store_dir, tmp_path / "d", "cpu", TINY, progress=False, init_from="pretrained:no-such")
