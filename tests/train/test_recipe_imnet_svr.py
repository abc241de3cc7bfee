"""The imnet-svr recipe on a tiny IM-AE run: batches, frozen decoder, held-out IoUs, resume, and
single-image reconstruction from a PNG.

References: the stored views cropped with numpy (batches), the AE run's own parameters (frozen
decoder) and its recorded held-out IoU (the ``iou_ae`` column), a direct ``ImplicitDecoder`` call on
the 64³ cell centres for the mean-latent baseline, an uninterrupted run (resume), and a
numpy alpha-composite (PNG input).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_recipe_imnet_gan import make_tiny_ae

SVR_FAST = {"train.async_checkpointing": False}


@pytest.fixture(scope="module")
def tiny_ae(tmp_path_factory) -> tuple[Path, Path]:
    return make_tiny_ae(tmp_path_factory.getbasetemp() / "tiny_imnet_ae")


@pytest.fixture(scope="module")
def svr_run(tiny_ae, tmp_path_factory) -> tuple[Path, dict]:
    """``impax train imnet-svr --preset quick --set ae_run=...`` (the CLI, in process)."""
    from impax.cli import main

    data, ae = tiny_ae
    run = tmp_path_factory.mktemp("svr") / "run"
    args = ["train", "imnet-svr", "--data", str(data), "--out", str(run), "--preset", "quick", "--seed", "1",
            "--no-progress", "--set", f"ae_run={ae}"]
    for k, v in SVR_FAST.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    return run, json.loads((run / "eval_svr.json").read_text())


def _params(model) -> dict[str, np.ndarray]:
    from flax import nnx

    from impax.train import named_leaves

    return {k: np.asarray(v) for k, v in named_leaves(nnx.state(model, nnx.Param)).items()}


def test_paper_preset_is_imnet_pytorch_svr():
    from impax.train.recipes import imnet_svr as S

    p = S.PRESETS["paper"]
    assert (p.model.img_ef_dim, p.model.image_size, p.batch_size, p.epochs) == (64, 128, 64, 1000)
    assert (p.train.learning_rate, p.train.beta1) == (1e-4, 0.5) and p.view_mode == "batch"
    assert p.eval_views == (23,) and {"paper", "cpu", "demo", "quick"} <= set(S.PRESETS)


def test_view_loader_crops_stored_views_and_is_deterministic(tiny_ae):
    from impax.data.store import ShapeStore
    from impax.train.recipes.imnet_svr import ViewLoader, ViewSource

    data, _ = tiny_ae
    store = ShapeStore(data)
    names = store.ids("train")
    views = {n: store.read(n, "views") for n in names}
    targets = np.arange(len(names) * 2, dtype=np.float32).reshape(len(names), 2)
    for mode in ("batch", "shape"):
        ld = ViewLoader(ViewSource(data), names, targets, 2, 4, seed=3, view_mode=mode)
        assert len(ld) == 2
        for epoch in (0, 1):
            batches = list(ld.iterate(epoch))
            seen = []
            for b in batches:
                assert b["images"].shape == (2, 128, 128) and b["images"].dtype == np.float32
                idx = [int(z[0]) // 2 for z in b["z"]]
                which = []
                for img, i in zip(b["images"], idx):
                    crops = views[names[i]][:, 4:132, 4:132].astype(np.float32) / 255.0
                    match = [v for v in range(4) if np.array_equal(crops[v], img)]
                    assert match, "image is not a centre crop of one of the shape's views"
                    which.append(match[0])
                if mode == "batch":
                    assert which[0] == which[1]
                seen += idx
            assert sorted(seen) == list(range(len(names)))
            again = list(ld.iterate(epoch, start=1))
            np.testing.assert_array_equal(again[0]["images"], batches[1]["images"])


def test_svr_run_freezes_the_decoder_and_records_both_ious(svr_run, tiny_ae):
    import jax.numpy as jnp

    from impax.conventions import imnet_grid_centres
    from impax.inference.imnet import load_ae
    from impax.inference.imnet_svr import load_svr
    from impax.data.latents import read_codes

    run, report = svr_run
    data, ae_run = tiny_ae
    info = json.loads((run / "run.json").read_text())
    assert info["recipe"] == "imnet-svr" and Path(info["ae_run"]) == ae_run.absolute() and info["n_train"] == 4
    model, cfg, _ = load_svr(run)
    ae, _ = load_ae(ae_run)
    dec, ref = _params(model.generator), _params(ae.generator)
    assert dec.keys() == ref.keys()
    for k in dec:
        np.testing.assert_array_equal(dec[k], ref[k], err_msg=k)  # frozen, bit for bit
    held = report["heldout"]
    assert report["splits"] == ["test"] and held["shapes"] == 1 and held["predictions"] == 1
    for k in ("iou_svr", "iou_mean_latent", "iou_ae"):
        assert 0.0 <= held[k] <= 1.0
    # the AE column equals the imnet-ae recipe's own held-out IoU of the shape
    ae_eval = json.loads((ae_run / "eval_voxel_iou.json").read_text())["heldout"]["per_shape"]
    assert held["per_shape"]["cylinder_cylinder_000"]["ae"] == pytest.approx(ae_eval["cylinder_cylinder_000"], abs=1e-9)
    # the baseline: the mean training code decoded on the 64^3 cell centres, IoU with the voxels
    zs, _ = read_codes(ae_run / "zs_train.hdf5")
    pts = jnp.asarray(imnet_grid_centres(64).reshape(1, -1, 3), jnp.float32)
    occ = np.asarray(ae.generator(pts, jnp.asarray(zs.mean(0)[None]))).reshape(64, 64, 64) > 0.5
    from impax.data.store import ShapeStore

    gt = ShapeStore(data).read("cylinder_cylinder_000", "voxels") > 0
    want = np.count_nonzero(occ & gt) / np.count_nonzero(occ | gt)
    assert held["iou_mean_latent"] == pytest.approx(want, abs=1e-9)
    # training lowered the latent regression loss
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 20 and records[-1]["mse"] < 0.5 * records[0]["mse"]


def test_max_steps_then_rerun_resumes_to_the_same_parameters(svr_run, tiny_ae, tmp_path):
    from flax import nnx

    from impax.inference.imnet_svr import load_svr
    from impax.train import named_leaves
    from impax.train.recipes import imnet_svr as S

    full, _ = svr_run
    data, ae = tiny_ae
    part = tmp_path / "run"
    over = {**SVR_FAST, "ae_run": str(ae)}
    s1 = S.train("imnet-svr", data, part, preset="quick", overrides=over, seed=1, max_steps=7, progress=False)
    assert s1["stopped"] == "max_steps" and s1["global_step"] == 7 and not (part / "eval_svr.json").exists()
    s2 = S.train("imnet-svr", data, part, preset="quick", overrides=over, seed=1, progress=False)
    assert s2["stopped"] == "done" and s2["global_step"] == 20 and (part / "eval_svr.json").is_file()
    a = {k: np.asarray(v) for k, v in named_leaves(nnx.state(load_svr(part)[0])).items()}
    b = {k: np.asarray(v) for k, v in named_leaves(nnx.state(load_svr(full)[0])).items()}
    assert a.keys() == b.keys() and any("bn_0.mean" in k for k in a)  # batch-norm statistics too
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)


def test_image_pixels_reads_renders_exactly_and_composites_rgba(tmp_path):
    from PIL import Image

    from impax.inference.imnet_svr import image_pixels

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (137, 137), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_array_equal(image_pixels(tmp_path / "g.png"), gray)
    rgb = rng.integers(0, 256, (137, 137, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (137, 137), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "c.png")
    a = alpha[..., None] / 255.0
    comp = rgb * a + 255.0 * (1.0 - a)
    want = comp @ np.array([0.299, 0.587, 0.114])
    got = image_pixels(tmp_path / "c.png").astype(np.float64)
    assert np.max(np.abs(got - want)) <= 1.5


def test_reconstruct_images_from_a_rendered_png(svr_run, tiny_ae, tmp_path):
    import trimesh
    from PIL import Image

    from impax.geometry.mesh_io import load_mesh
    from impax.geometry.normalize import imnet_transform, transform_mesh
    from impax.geometry.render import render_views
    from impax.inference.families import family_module

    run, _ = svr_run
    data, _ = tiny_ae
    mesh = load_mesh(data.parent / "shapes" / "cylinder" / "cylinder_000.ply")
    view = render_views(transform_mesh(mesh, imnet_transform(mesh)), n_views=1, seed=7)[0]
    Image.fromarray(view).save(tmp_path / "cyl.png")
    Image.fromarray(np.dstack([np.full((137, 137, 3), 90, np.uint8), 255 - view]), "RGBA").save(tmp_path / "rgba.png")
    (tmp_path / "bad.png").write_text("not an image")
    rows = family_module(run).reconstruct(run, "image", [tmp_path / "cyl.png", tmp_path / "rgba.png",
                                                          tmp_path / "bad.png"], tmp_path / "out", resolution=32)
    assert [r["id"] for r in rows] == ["cyl", "rgba", "bad"]
    assert rows[0]["ok"], rows[0]
    m = trimesh.load(rows[0]["path"], process=False)
    assert len(m.faces) == rows[0]["faces"] > 0 and np.abs(m.vertices).max() <= 0.5 + 1e-6
    assert rows[1]["path"] and Path(rows[1]["path"]).is_file()
    assert not rows[2]["ok"] and rows[2]["reason"]
