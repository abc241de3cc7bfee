"""The imnet-ae recipe end to end on tiny data: run.json, checkpoints, zs export, IoU, resume.

References: the model's own encoder (for the space-to-depth encoder and the exported codes), a
direct ``IMNetAE.__call__`` on the 64³ cell centres (for the recorded IoU), and an uninterrupted
run (for SIGKILL and max-steps resumes).

Run as a script (the SIGKILL test's subprocess)::

    python tests/train/test_recipe_imnet.py DATA RUN --kill-at STEP

Precision: the equalities here assume exact float32 and deterministic kernels, i.e. the CPU backend
tests/conftest.py pins; on a GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest and
XLA_FLAGS=--xla_gpu_deterministic_ops=true (docs/gpu.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

#: A tiny preset: 3 shapes, batch 2 (1 step per epoch), 2+1+3 epochs = 6 steps.
TINY = {
    "model.ef_dim": 4, "model.gf_dim": 4, "model.z_dim": 16,
    "stages": [{"level": 16, "epochs": 2, "batch_size": 2, "points": 256},
               {"level": 32, "epochs": 1, "batch_size": 2, "points": 256},
               {"level": 64, "epochs": 3, "batch_size": 2, "points": 512}],
    "train.checkpoint_every_steps": 2, "train.checkpoint_every_seconds": None, "train.log_every_steps": 1,
    "train.keep_checkpoints": 5, "train.learning_rate": 1e-3, "train.tensorboard": False,
    "train.async_checkpointing": False, "eval_batch": 32768, "budget_steps": None,
}
TOTAL_STEPS = 6


def _main(argv: list[str]) -> int:
    """Subprocess: run the real recipe, SIGKILL-ing itself once ``--kill-at`` steps are done."""
    import impax.train as T
    from impax.train.recipes import imnet as R

    data, run, _, kill_at = argv[0], argv[1], argv[2], int(argv[3])
    real_fit = T.fit

    def fit_with_kill(*a, **kw):
        def on_step(pos):
            if pos.global_step >= kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        return real_fit(*a, on_step=on_step, **kw)

    T.fit = fit_with_kill
    R.train("imnet-ae", data, run, preset="cpu", overrides=TINY, seed=1, progress=False)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

# ---------------------------------------------------------------------------------------------- tests

import jax  # noqa: E402
import pytest  # noqa: E402

from impax.configs import override  # noqa: E402
from impax.models import imnet_s2d as S2D  # noqa: E402
from flax import nnx  # noqa: E402

from impax.inference.imnet import load_ae  # noqa: E402
from impax.train import load_model, named_leaves  # noqa: E402
from impax.train.recipes import imnet as R  # noqa: E402


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Three procedural shapes (sphere, box, torus) prepared with only the IM-NET stage."""
    from impax.data.pipeline import PrepareConfig
    from impax.data.prepare import prepare
    from impax.geometry.shapes import generate

    root = tmp_path_factory.mktemp("imnet_recipe")
    generate(root / "shapes", 3, seed=0)
    cfg = PrepareConfig.quick(voxels_256=False, uniform=False, near=False, surface=False, sdf_grid=False, depth=False,
                              views=False, occupancy=False)
    res = prepare(root / "shapes", root / "data", cfg, workers=1, split_fractions=(1.0, 0.0, 0.0),
                  progress=False)
    assert res.ok == 3
    return root / "data"


@pytest.fixture(scope="module")
def full_run(tiny_data, tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted tiny run through ``impax train imnet-ae`` (the CLI, in process)."""
    from impax.cli import main

    run = tmp_path_factory.mktemp("imnet_recipe_run") / "run"
    args = ["train", "imnet-ae", "--data", str(tiny_data), "--out", str(run), "--seed", "1", "--no-progress"]
    for k, v in TINY.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    return run, json.loads((run / "eval_voxel_iou.json").read_text())


def _params(run: Path) -> dict[str, np.ndarray]:
    model, _ = load_ae(run)
    return {k: np.asarray(v) for k, v in named_leaves(nnx.state(model, nnx.Param)).items()}


def _assert_same(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


def test_presets_are_frozen_and_paper_matches_imnet_pytorch():
    p = R.PRESETS["paper"]
    assert (p.model.z_dim, p.model.ef_dim, p.model.gf_dim, p.model.layout) == (256, 32, 128, "pytorch")
    assert [(s.level, s.epochs, s.batch_size, s.points) for s in p.stages] == [
        (16, 200, 32, 4096), (32, 200, 32, 4096), (64, 400, 32, 4096)]
    assert (p.train.learning_rate, p.train.beta1, p.train.beta2) == (5e-5, 0.5, 0.999)
    assert p.point_mode == "chunk"
    with pytest.raises(Exception):
        p.point_mode = "random"  # frozen
    cpu = override(R.PRESETS["cpu"], {"model.gf_dim": 8, "stages.2.epochs": 7})
    assert cpu.model.gf_dim == 8 and cpu.stages[2].epochs == 7 and cpu.stages[0] == R.CPU.stages[0]
    with pytest.raises(ValueError, match="unknown config key"):
        override(R.CPU, {"model.nope": 1})
    # every preset's level stages fit the stored IM-NET sample counts (4096 / 4096 / 16384)
    stored = {16: 4096, 32: 4096, 64: 16384}
    for name, preset in R.PRESETS.items():
        assert all(s.points <= stored[s.level] for s in preset.stages), name
    # the demo preset is the cpu recipe (same model, optimiser, init and schedule) with its own
    # stages, sized for the demo's ~26 training shapes and its time budget, and no held-out evaluation
    demo = R.PRESETS["demo"]
    assert demo.model == R.CPU.model and demo.train.learning_rate == R.CPU.train.learning_rate
    assert (demo.decoder_init, demo.lr_schedule, demo.lr_end_factor) == (R.CPU.decoder_init, R.CPU.lr_schedule,
                                                                         R.CPU.lr_end_factor)
    assert [s.level for s in demo.stages] == [s.level for s in R.CPU.stages] == [16, 32, 64]
    assert demo.stages != R.CPU.stages
    assert demo.heldout_splits == () and R.CPU.heldout_splits == ("val", "test")
    # cpu-wide: the cpu recipe with a 4x wider decoder and exact near-surface labels for half the
    # points; the presets the shipped weights and the demo use keep IM-NET's sampling
    wide = R.PRESETS["cpu-wide"]
    assert wide.model == dataclasses.replace(R.CPU.model, gf_dim=64) and wide.near_fraction == 0.5
    assert dataclasses.replace(wide, model=R.CPU.model, near_fraction=0.0) == R.CPU
    assert R.CPU.near_fraction == demo.near_fraction == R.PRESETS["pretrain"].near_fraction == 0.0


def test_space_to_depth_encoder_equals_the_model_encoder():
    from impax.models.imnet import IMNetConfig, VoxelEncoder

    rng = np.random.default_rng(0)
    vox = (rng.random((2, 64, 64, 64)) > 0.6).astype(np.float32)
    enc = VoxelEncoder(IMNetConfig(ef_dim=4, z_dim=16), rngs=nnx.Rngs(3))
    a = np.asarray(enc(vox))
    b = np.asarray(jax.jit(lambda v: S2D.encode_s2d(enc, v))(vox))
    np.testing.assert_allclose(b, a, atol=1e-5)
    assert a.std() > 1e-3  # not a constant output


    # gradients of one strided conv, on a small input (XLA's own input gradient is the slow path)
    x = jax.numpy.asarray(rng.normal(size=(2, 8, 8, 8, 3)), jax.numpy.float32)
    w = jax.numpy.asarray(rng.normal(size=(4, 4, 4, 3, 5)), jax.numpy.float32)

    def ref(x, w):
        return jax.lax.conv_general_dilated(x, w, (2, 2, 2), ((1, 1),) * 3,
                                            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))

    for form in ("columns", "product"):
        np.testing.assert_allclose(np.asarray(S2D._conv_s2d(x, w, form)), np.asarray(ref(x, w)), atol=1e-4)
        for argnum in (0, 1):
            g_ref = jax.grad(lambda x, w: jax.numpy.sum(jax.numpy.sin(ref(x, w))), argnum)(x, w)
            g_s2d = jax.grad(lambda x, w: jax.numpy.sum(jax.numpy.sin(S2D._conv_s2d(x, w, form))), argnum)(x, w)
            np.testing.assert_allclose(np.asarray(g_s2d), np.asarray(g_ref), atol=1e-4)
    with pytest.raises(ValueError, match="form"):
        S2D._conv_s2d(x, w, "direct")

    # the first layer's per-shape form (1 input channel, narrow-product kernel gradient)
    x1 = jax.numpy.asarray(rng.random((3, 8, 8, 8, 1)) > 0.5, jax.numpy.float32)
    w1 = jax.numpy.asarray(rng.normal(size=(4, 4, 4, 1, 6)), jax.numpy.float32)
    per = jax.jit(S2D.conv_s2d_per_shape)
    np.testing.assert_allclose(np.asarray(per(x1, w1)), np.asarray(ref(x1, w1)), atol=1e-4)
    for argnum in (0, 1):
        g_ref = jax.grad(lambda x, w: jax.numpy.sum(jax.numpy.sin(ref(x, w))), argnum)(x1, w1)
        g_per = jax.jit(jax.grad(lambda x, w: jax.numpy.sum(jax.numpy.sin(S2D.conv_s2d_per_shape(x, w))),
                                 argnum))(x1, w1)
        np.testing.assert_allclose(np.asarray(g_per), np.asarray(g_ref), atol=1e-4)


def test_fast_encoder_auto_picks_the_encoder_path_by_platform():
    from impax.configs import from_dict
    from impax.train.registry import recipe

    for platform, want in (("cpu", "s2d"), ("gpu", "conv"), ("cuda", "conv"), ("tpu", "conv"), ("CPU", "s2d")):
        assert S2D.resolve_encoder("auto", platform) == want, platform
    for choice, want in ((True, "s2d"), (False, "conv"), ("s2d", "s2d"), ("conv", "conv")):
        assert S2D.resolve_encoder(choice, "cpu") == S2D.resolve_encoder(choice, "gpu") == want
    # the real default here: this suite runs on the CPU backend (tests/conftest.py)
    assert jax.default_backend() == "cpu" and S2D.resolve_encoder() == S2D.resolve_encoder("auto") == "s2d"
    for bad in (1, 0, "fast", None):
        with pytest.raises(ValueError, match="fast_encoder"):
            S2D.resolve_encoder(bad, "cpu")
    # every preset says "auto"; the configs runs recorded before it (true / false) still load ...
    assert {p.fast_encoder for p in R.PRESETS.values()} == {"auto"}
    old = json.loads((Path(R.__file__).parents[1] / "pretrained" / "imnet-ae-cpu" / "run.json").read_text())
    assert old["config"]["fast_encoder"] is True
    assert recipe("imnet-ae").from_run_json(old).fast_encoder is True
    assert from_dict(R.IMNetAERecipeConfig, {"fast_encoder": False}).fast_encoder is False
    with pytest.raises(ValueError, match="fast_encoder"):
        R.IMNetAERecipeConfig(fast_encoder="fast")
    # ... and resume under the new default: the path does not change the maths
    assert "fast_encoder" in recipe("imnet-ae").resumable


def _encoder_check_setup():
    from impax.models.imnet import IMNetConfig

    rng = np.random.default_rng(5)
    # the recipe's "scaled" decoder init: IM-NET's 0.02 leaves the encoder's gradients near 1e-11
    model = R.build_model(R.IMNetAERecipeConfig(model=IMNetConfig(ef_dim=4, gf_dim=4, z_dim=16),
                                                decoder_init="scaled"), seed=2)
    vox = (rng.random((4, 64, 64, 64)) > 0.6).astype(np.uint8)
    batch = {"voxels": vox[:2, ..., None].astype(np.float32),
             "points": (rng.random((2, 64, 3)) - 0.5).astype(np.float32),
             "values": (rng.random((2, 64, 1)) > 0.5).astype(np.float32)}
    return model, vox, batch


def _loss_fn_of(model, path, grads: bool):
    loss_fn = R.make_loss(path)
    graphdef, state = nnx.split(model)

    def loss(st, batch):
        return loss_fn(nnx.merge(graphdef, st), batch, jax.random.key(0))[0]

    f = jax.jit(jax.value_and_grad(loss) if grads else loss)
    return lambda batch: f(state, batch)


def test_encoder_paths_agree_in_the_training_loss_and_the_inference_batches():
    """Both paths of ``fast_encoder`` on the batched calls training and inference make: the
    training loss (jitted, batch of 2) and :func:`encode_voxels` (batches of 2). Exact float32 on
    CPU; on a GPU see docs/gpu.md (TF32). Gradients: the next test (slow) and, per layer,
    :func:`test_space_to_depth_encoder_equals_the_model_encoder`."""
    from impax.models.imnet_codes import encode_voxels

    model, vox, batch = _encoder_check_setup()
    codes = {p: encode_voxels(model, vox, batch=2, encoder=p) for p in ("s2d", "conv", "auto", True, False)}
    np.testing.assert_allclose(codes["s2d"], codes["conv"], rtol=0, atol=1e-5)
    assert codes["s2d"].std() > 1e-3
    np.testing.assert_array_equal(codes["auto"], codes["s2d"])  # CPU: auto is space-to-depth
    np.testing.assert_array_equal(codes[True], codes["s2d"])
    np.testing.assert_array_equal(codes[False], codes["conv"])
    losses = {p: float(_loss_fn_of(model, p, grads=False)(batch)) for p in ("s2d", "conv")}
    assert losses["s2d"] > 0
    np.testing.assert_allclose(losses["s2d"], losses["conv"], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_encoder_paths_give_the_same_training_gradients():
    """The gradients of the training loss (what the trainer differentiates) by both encoder paths,
    to 1e-5 of each parameter's largest gradient (CPU, exact float32). ~45 s of compilation."""
    model, _, batch = _encoder_check_setup()
    (l_s2d, g_s2d), (l_conv, g_conv) = (_loss_fn_of(model, p, grads=True)(batch) for p in ("s2d", "conv"))
    np.testing.assert_allclose(float(l_s2d), float(l_conv), rtol=0, atol=1e-5)
    flat_s2d, flat_conv = named_leaves(g_s2d), named_leaves(g_conv)
    assert flat_s2d.keys() == flat_conv.keys()
    assert all(float(np.abs(np.asarray(v)).max()) > 0 for k, v in flat_s2d.items() if "encoder" in k)
    for k in flat_s2d:
        want = np.asarray(flat_conv[k])
        np.testing.assert_allclose(np.asarray(flat_s2d[k]), want, rtol=0, atol=1e-5 * float(np.abs(want).max()),
                                   err_msg=k)


def test_narrow_matmul_equals_matmul_with_its_gradients():
    rng = np.random.default_rng(1)
    a = jax.numpy.asarray(rng.normal(size=(2, 50, 7)), jax.numpy.float32)
    w = jax.numpy.asarray(rng.normal(size=(7, 3)), jax.numpy.float32)

    def loss(f):
        return lambda a, w: jax.numpy.sum(jax.numpy.cos(f(a, w)) * jax.numpy.arange(3.0))

    np.testing.assert_allclose(np.asarray(S2D._matmul_narrow(a, w)), np.asarray(a @ w), rtol=1e-5, atol=1e-5)
    got = jax.jit(jax.grad(loss(S2D._matmul_narrow), (0, 1)))(a, w)
    want = jax.grad(loss(jax.numpy.matmul), (0, 1))(a, w)
    for g, h in zip(got, want):
        assert g.shape == h.shape
        np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-4, atol=1e-4)


def test_run_writes_run_json_checkpoints_zs_and_iou(full_run, tiny_data):
    import h5py

    from impax.data.store import ShapeStore
    from impax.models.imnet import IMNetAE
    from impax.conventions import imnet_grid_centres

    run, report = full_run
    info = json.loads((run / "run.json").read_text())
    assert info["recipe"] == "imnet-ae" and Path(info["data"]) == tiny_data.absolute()
    assert info["config"]["model"]["gf_dim"] == 4 and info["config"]["stages"][2]["level"] == 64
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == TOTAL_STEPS and {2, 4} <= set(steps)
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records if r["step"] in (1, 3, 6)] == ["level16", "level32", "level64"]

    store = ShapeStore(tiny_data)
    ids = store.ids("train")
    model, _ = load_ae(run)
    assert isinstance(model, IMNetAE) and model.cfg.z_dim == 16
    with h5py.File(run / "zs_train.hdf5", "r") as f:
        assert list(f.keys()) == ["zs"]
        zs = f["zs"][()]
    assert zs.shape == (3, 16) and zs.dtype == np.float32
    assert (run / "zs_train.txt").read_text().split() == ids
    vox = np.stack([store.read(i, "voxels") for i in ids]).astype(np.float32)
    np.testing.assert_allclose(zs, np.asarray(model.encoder(vox)), atol=1e-6)

    # recorded IoU == IoU of IMNetAE.__call__ on the 64^3 cell centres, against the stored voxels
    pts = imnet_grid_centres(64).reshape(1, -1, 3).astype(np.float32)
    for k, sid in enumerate(ids):
        _, occ = model(vox[k:k + 1], pts)
        pred = np.asarray(occ).reshape(64, 64, 64) > 0.5
        gt = vox[k] > 0
        union = np.count_nonzero(pred | gt)
        want = 1.0 if union == 0 else np.count_nonzero(pred & gt) / union
        assert report["train"]["per_shape"][sid] == pytest.approx(want, abs=1e-9)
    assert report["train"]["mean_iou"] == pytest.approx(np.mean(list(report["train"]["per_shape"].values())))
    assert "heldout" not in report  # every shape is in the train split here


def test_max_steps_then_rerun_resumes_to_the_same_parameters(full_run, tiny_data, tmp_path):
    run, _ = full_run
    part = tmp_path / "run"
    s1 = R.train("imnet-ae", tiny_data, part, preset="cpu", overrides=TINY, seed=1, max_steps=3, progress=False)
    assert s1["stopped"] == "max_steps" and s1["global_step"] == 3 and not (part / "zs_train.hdf5").exists()
    with pytest.raises(ValueError, match="different settings"):
        R.train("imnet-ae", tiny_data, part, preset="cpu", overrides={**TINY, "train.learning_rate": 2e-3},
                seed=1, progress=False)
    s2 = R.train("imnet-ae", tiny_data, part, preset="cpu", overrides=TINY, seed=1, progress=False)
    assert s2["stopped"] == "done" and s2["global_step"] == TOTAL_STEPS
    _assert_same(_params(part), _params(run))
    assert s2["iou_train"] == pytest.approx(json.loads((run / "eval_voxel_iou.json").read_text())["train"]["mean_iou"],
                                           abs=1e-6)


def test_sigkill_halfway_then_rerun_equals_uninterrupted(full_run, tiny_data, tmp_path):
    run, _ = full_run
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, __file__, str(tiny_data), str(killed), "--kill-at", "3"],
                          capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert not (killed / "zs_train.hdf5").exists()
    saved = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [2]  # killed after step 3: the step-2 checkpoint is the newest
    summary = R.train("imnet-ae", tiny_data, killed, preset="cpu", overrides=TINY, seed=1, progress=False)
    assert summary["stopped"] == "done" and summary["global_step"] == TOTAL_STEPS
    _assert_same(_params(killed), _params(run))
    model = R.build_model(R.RECIPES["imnet-ae"].from_run_json(json.loads((run / "run.json").read_text())))
    meta = load_model(killed, model)
    assert meta["position"]["global_step"] == TOTAL_STEPS


def test_cosine_tx_follows_closed_form():
    """The ``cosine`` schedule: lr(t) = lr0 · (f + (1 - f) · (1 + cos(π t / T)) / 2), checked
    on the first Adam step (update = -lr(0) · sign-like m̂/√v̂ = -lr0 for a constant gradient)
    and against the numpy formula of the injected rate of the k-th update (t = k - 1)."""
    import optax

    cfg = dataclasses.replace(R.CPU, train=dataclasses.replace(R.CPU.train, learning_rate=2e-3))
    assert R.make_tx(dataclasses.replace(cfg, lr_schedule="constant"), 10) is None
    tx = R.make_tx(cfg, 10)
    params = {"w": np.zeros(3, np.float32)}
    state = tx.init(params)
    g = {"w": np.ones(3, np.float32)}
    for k in range(4):
        upd, state = tx.update(g, state, params)
        params = optax.apply_updates(params, upd)
        if k == 0:
            np.testing.assert_allclose(np.asarray(upd["w"]), -2e-3, rtol=1e-4)
    f = cfg.lr_end_factor
    want = 2e-3 * (f + (1 - f) * 0.5 * (1 + np.cos(np.pi * 3 / 10)))  # rate used by update index 3
    np.testing.assert_allclose(float(state.hyperparams["learning_rate"]), want, rtol=1e-5)


def test_grid_points_are_cell_centres_labelled_by_the_voxels():
    """``grid_points``: every point is a 64³ cell centre of IM-NET's box, ``imnet_grid_centres``
    (numpy), and its value is that cell's voxel; the cells are spread over the grid."""
    from impax.conventions import imnet_grid_centres

    rng = np.random.default_rng(1)
    vox = (rng.random((2, 64, 64, 64, 1)) > 0.7).astype(np.float32)
    pts, vals = jax.jit(lambda v, k: R.grid_points(v, 4000, k))(vox, jax.random.key(3))
    pts, vals = np.asarray(pts), np.asarray(vals)
    assert pts.shape == (2, 4000, 3) and vals.shape == (2, 4000, 1)
    ijk = np.floor((pts + 0.5) * 64).astype(int)
    centres = imnet_grid_centres(64)
    for b in range(2):
        i, j, k = ijk[b].T
        np.testing.assert_allclose(pts[b], centres[i, j, k], atol=1e-6)
        np.testing.assert_array_equal(vals[b, :, 0], vox[b, i, j, k, 0])
        assert len(np.unique(i * 4096 + j * 64 + k)) > 3800  # ~uniform over 262144 cells
        assert abs(vals[b].mean() - 0.3) < 0.05


def test_loss_with_grid_fraction_uses_the_stored_points_then_grid_points():
    """``make_loss(grid_fraction=f)``: mean squared error over the first ``n - k`` stored points and
    ``k = round(f n)`` grid points drawn with the step's key (reference: the model on those points)."""
    from impax.models.imnet import IMNetAE, IMNetConfig

    rng = np.random.default_rng(2)
    model = IMNetAE(IMNetConfig(ef_dim=4, gf_dim=4, z_dim=8), rngs=nnx.Rngs(0))
    vox = (rng.random((2, 64, 64, 64, 1)) > 0.5).astype(np.float32)
    batch = {"voxels": vox, "points": rng.uniform(-0.5, 0.5, (2, 40, 3)).astype(np.float32),
             "values": (rng.random((2, 40, 1)) > 0.5).astype(np.float32)}
    key = jax.random.key(5)
    loss, _ = R.make_loss(True, 0.25)(model, batch, key)
    gp, gv = R.grid_points(vox, 10, key)
    pts = np.concatenate([batch["points"][:, :30], np.asarray(gp)], 1)
    vals = np.concatenate([batch["values"][:, :30], np.asarray(gv)], 1)
    _, occ = model(vox, pts)
    np.testing.assert_allclose(float(loss), np.mean((np.asarray(occ).reshape(vals.shape) - vals) ** 2), rtol=1e-4)
    plain, _ = R.make_loss(True, 0.0)(model, batch, key)
    _, occ0 = model(vox, batch["points"])
    np.testing.assert_allclose(float(plain), np.mean((np.asarray(occ0).reshape(2, 40, 1) - batch["values"]) ** 2), rtol=1e-4)


def test_snapped_points_are_the_centres_of_their_cells_and_the_loss_uses_them():
    """``snap_to_cells`` against a numpy floor formula (IM-NET 256-grid points go to the centre of
    their 64³ cell, as ``imnet_grid_centres``), and ``make_loss(snap_points=True)`` is the MSE at
    the snapped points."""
    from impax.conventions import imnet_grid_centres, imnet_points_from_grid256
    from impax.models.imnet import IMNetAE, IMNetConfig

    rng = np.random.default_rng(4)
    p256 = rng.integers(0, 256, (300, 3))
    pts = imnet_points_from_grid256(p256).astype(np.float32)
    snapped = np.asarray(R.snap_to_cells(pts))
    i, j, k = (p256 // 4).T
    np.testing.assert_allclose(snapped, imnet_grid_centres(64)[i, j, k], atol=1e-6)
    assert np.abs(snapped - pts).max() <= 1.5 / 256 + 1e-6 and np.abs(snapped - pts).max() > 1 / 256
    np.testing.assert_allclose(np.asarray(R.snap_to_cells(np.array([[-0.5, 0.5, 0.0]], np.float32))),
                               [[-0.5 + 1 / 128, 0.5 - 1 / 128, 1 / 128]], atol=1e-7)  # edges stay inside

    model = IMNetAE(IMNetConfig(ef_dim=4, gf_dim=4, z_dim=8), rngs=nnx.Rngs(0))
    vox = (rng.random((2, 64, 64, 64, 1)) > 0.5).astype(np.float32)
    batch = {"voxels": vox, "points": pts[:80].reshape(2, 40, 3),
             "values": (rng.random((2, 40, 1)) > 0.5).astype(np.float32)}
    loss, _ = R.make_loss(True, 0.0, snap_points=True)(model, batch, jax.random.key(0))
    _, occ = model(vox, snapped[:80].reshape(2, 40, 3))
    np.testing.assert_allclose(float(loss), np.mean((np.asarray(occ).reshape(2, 40, 1) - batch["values"]) ** 2),
                               rtol=1e-4)


def test_cli_lists_presets_shows_config_reads_config_files_and_inits_from_a_run(full_run, tiny_data, tmp_path,
                                                                                capsys):
    """``--list-presets``, ``--show-config`` (preset < --config file < --set, each field with its
    help), ``--config cfg.toml`` and ``--init-from RUN`` through the CLI."""
    from impax.cli import main

    assert main(["train", "imnet-ae", "--list-presets"]) == 0
    listed = capsys.readouterr().out
    for name in R.PRESETS:
        assert f"  {name} " in listed, (name, listed)
        line = next(ln for ln in listed.splitlines() if ln.startswith(f"  {name} "))
        assert line[len(name) + 2:].strip(), f"preset {name} is listed without a description"
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text('point_mode = "chunk"\n[train]\nlearning_rate = 3e-4\nseed = 5\n')
    assert main(["train", "imnet-ae", "--preset", "quick", "--config", str(cfg_file),
                 "--set", "train.learning_rate=2e-4", "--show-config"]) == 0
    shown = {ln.split("=")[0].strip(): ln for ln in capsys.readouterr().out.splitlines() if "=" in ln}
    assert '"chunk"' in shown["point_mode"]                       # from the file
    assert "0.0002" in shown["train.learning_rate"]                # --set wins over the file
    assert shown["model.z_dim"].split("=")[1].split()[0] == str(R.QUICK.model.z_dim)  # the preset
    assert len(shown["train.learning_rate"].split("=", 1)[1].split()) > 1   # a help text follows the value
    assert not (tmp_path / "never").exists()
    # a typo in the file is refused before anything is written
    cfg_file.write_text("[train]\nlerning_rate = 1e-3\n")
    assert main(["train", "imnet-ae", "--config", str(cfg_file), "--data", str(tiny_data),
                 "--out", str(tmp_path / "never")]) != 0
    assert "unknown config key 'train.lerning_rate'" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    # --init-from: the new run starts from the finished run's weights and records where they came from
    src, _ = full_run
    args = ["train", "imnet-ae", "--data", str(tiny_data), "--out", str(tmp_path / "b"), "--seed", "1",
            "--no-progress", "--init-from", str(src), "--max-steps", "0"]
    for k, v in TINY.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    info = json.loads((tmp_path / "b" / "run.json").read_text())
    assert Path(info["init_from"]["source"]) == src.absolute() or info["init_from"]["source"] == str(src)
    _assert_same(_params(tmp_path / "b"), _params(src))


def test_rerunning_a_finished_run_prints_its_summary_unless_reevaluate(full_run, tiny_data, capsys):
    from impax.cli import main

    run, _ = full_run
    args = ["train", "imnet-ae", "--data", str(tiny_data), "--out", str(run), "--seed", "1", "--no-progress"]
    for k, v in TINY.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    recorded = json.loads((run / "summary.json").read_text())["summary"]
    before = (run / "eval_voxel_iou.json").stat().st_mtime_ns
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == recorded and "finished earlier" in err
    assert (run / "eval_voxel_iou.json").stat().st_mtime_ns == before      # nothing evaluated again
    assert main(args + ["--reevaluate"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out)["iou_train"] == pytest.approx(recorded["iou_train"], abs=1e-6)
    assert (run / "eval_voxel_iou.json").stat().st_mtime_ns > before
    # another seed is another command: it is not answered from the record (and is refused as a resume)
    other = list(args)
    other[other.index("--seed") + 1] = "2"
    assert main(other) != 0
    assert "seed" in capsys.readouterr().err


def test_near_fraction_is_validated_and_asks_the_store_for_near_surface_samples(tiny_data, tmp_path):
    """``near_fraction`` takes part of each shape's points from the near-surface samples (the loader
    test checks their frame and labels); a store prepared without them is refused before any step,
    naming the dataset, and the option cannot be mixed with the voxel-labelled alternatives."""
    with pytest.raises(ValueError, match="near_fraction"):
        R.IMNetAERecipeConfig(near_fraction=1.5)
    with pytest.raises(ValueError, match="cannot be combined"):
        R.IMNetAERecipeConfig(near_fraction=0.5, grid_fraction=0.2)
    with pytest.raises(ValueError, match="'near_points'"):
        R.train("imnet-ae", tiny_data, tmp_path / "run", preset="quick", overrides={**TINY, "near_fraction": 0.5},
                progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
