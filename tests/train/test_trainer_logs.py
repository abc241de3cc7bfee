"""NaN stop, keep-last-k checkpoints, metrics.jsonl and TensorBoard events of impax.train.fit."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tensorboardX.proto import event_pb2

import tiny_run
from impax.train import Stage, TrainConfig, TrainingDiverged, fit, load_model, read_metrics
from impax.train.checkpoint import CheckpointStore


def _cfg(**kw) -> TrainConfig:
    base = dict(learning_rate=1e-2, seed=3, log_every_steps=2, checkpoint_every_steps=4,
                checkpoint_every_seconds=None, keep_checkpoints=3, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def read_tb_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Parse TFRecord event files by hand (length, crc, Event proto, crc)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    # Targets become NaN from the 10th batch on (global step 10, 1-based); checkpoints every 4.
    stages = tiny_run.make_stages(epochs=(3, 1), nan_from_batch=9)
    with pytest.raises(TrainingDiverged) as info:
        fit(tiny_run.make_model(), stages, tmp_path / "run", _cfg())
    err = info.value
    assert err.step == 10 and err.metric == "loss" and err.stage == "level0"
    assert not np.isfinite(err.value)
    assert "step 10" in str(err) and "loss" in str(err) and "checkpoint: step 8" in str(err)
    assert err.checkpoint_step == 8
    assert CheckpointStore(tmp_path / "run", keep=None).all_steps() == [4, 8]

    # The checkpoint at step 8 equals a clean run of 8 steps, and is finite.
    clean = fit(tiny_run.make_model(), tiny_run.make_stages(epochs=(3, 1)), tmp_path / "clean",
                _cfg(max_steps=8))
    restored = tiny_run.make_model(seed=1)
    load_model(tmp_path / "run", restored, step=8)
    a, b = tiny_run.params_of(restored), tiny_run.params_of(clean.model)
    for k in a:
        assert np.all(np.isfinite(a[k]))
        np.testing.assert_array_equal(a[k], b[k])
    # Nothing past the last good step was logged.
    assert max(r["step"] for r in read_metrics(tmp_path / "run")) <= 9


def test_nan_in_a_metric_names_the_metric(tmp_path):
    def loss_fn(model, batch, rng):
        pred = model(batch["x"])
        loss = jnp.mean((pred - batch["y"]) ** 2)
        return loss, {"log_scale": jnp.log(jnp.mean(pred) * 0.0 - 1.0)}  # always NaN

    stages = [Stage("only", tiny_run.ToyLoader(), 1, loss_fn=loss_fn)]
    with pytest.raises(TrainingDiverged, match="step 1 .*log_scale") as info:
        fit(tiny_run.make_model(), stages, tmp_path / "run", _cfg())
    assert info.value.metric == "log_scale" and info.value.checkpoint_step is None


def test_keep_last_k_metrics_jsonl_and_tensorboard(tmp_path):
    stages = tiny_run.make_stages(epochs=(2, 1))  # 18 steps of 8 samples
    run = tmp_path / "run"
    result = fit(tiny_run.make_model(), stages, run,
                 _cfg(checkpoint_every_steps=3, keep_checkpoints=2, log_every_steps=3))
    assert result.global_step == 18
    assert CheckpointStore(run, keep=None).all_steps() == [15, 18]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["15", "18"]

    recs = read_metrics(run)
    assert [r["step"] for r in recs] == [3, 6, 9, 12, 15, 18]
    assert [r["stage"] for r in recs] == ["level0"] * 4 + ["level1"] * 2
    assert [r["epoch"] for r in recs] == [0, 0, 1, 1, 0, 0]
    for r in recs:
        assert {"loss", "mae", "learning_rate", "samples_per_sec", "steps_per_sec", "time"} <= set(r)
        assert r["samples_per_sec"] == pytest.approx(8 * r["steps_per_sec"], rel=1e-6)
        assert r["learning_rate"] == pytest.approx(1e-2, rel=1e-6)

    # The logged loss is the mean of the step losses: recompute steps 1-3 independently.
    model = tiny_run.make_model()
    ref = nnx.Optimizer(model, __import__("optax").adam(1e-2, b1=0.5), wrt=nnx.Param)
    key = jax.random.key(3)
    losses = []
    for g, batch in zip(range(3), stages[0].loader.iterate(0)):
        (loss, _), grads = nnx.value_and_grad(tiny_run.mse_loss, has_aux=True)(
            model, batch, jax.random.fold_in(key, g))
        ref.update(model, grads)
        losses.append(float(loss))
    assert recs[0]["loss"] == pytest.approx(np.mean(losses), rel=1e-5)

    scalars = read_tb_scalars(run / "tb")
    for tag in ("train/loss", "train/mae", "train/learning_rate", "perf/samples_per_sec",
                "perf/steps_per_sec"):
        assert [s for s, _ in scalars[tag]] == [3, 6, 9, 12, 15, 18], tag
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]], [r["loss"] for r in recs],
                               rtol=1e-6)
    assert json.loads((run / "train_config.json").read_text())["keep_checkpoints"] == 2


def test_time_based_checkpoints(tmp_path):
    stages = [Stage("only", tiny_run.ToyLoader(n=40), 1, loss_fn=tiny_run.mse_loss)]
    fit(tiny_run.make_model(), stages, tmp_path / "run",
        _cfg(checkpoint_every_steps=None, checkpoint_every_seconds=0.0, keep_checkpoints=2))
    assert CheckpointStore(tmp_path / "run", keep=None).all_steps() == [4, 5]
