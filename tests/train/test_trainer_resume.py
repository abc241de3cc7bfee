"""Exact resume of impax.train.fit: SIGKILL half-way (subprocess) and max_steps (in process).

References: an uninterrupted run of the same length, and an independent hand-written
jax.grad + optax.adam loop over the same batches and step keys.

Precision: the equalities here assume exact float32 and deterministic kernels, i.e. the CPU backend
tests/conftest.py pins; on a GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest and
XLA_FLAGS=--xla_gpu_deterministic_ops=true (docs/gpu.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import tiny_run
from impax.train import Stage, TrainConfig, fit, load_model, named_leaves
from impax.train.checkpoint import CheckpointStore

SCRIPT = Path(__file__).with_name("tiny_run.py")


def _cfg(**kw) -> TrainConfig:
    base = dict(learning_rate=1e-2, seed=3, log_every_steps=2, checkpoint_every_steps=4,
                checkpoint_every_seconds=None, keep_checkpoints=3, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _assert_params_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


def _max_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def reference_params(stages, config: TrainConfig, max_steps: int | None = None) -> dict:
    """Plain jax.grad + optax.adam loop: the behaviour fit() must reproduce."""
    model = tiny_run.make_model()
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(config.learning_rate, b1=config.beta1, b2=config.beta2, eps=config.eps)
    opt = tx.init(params)
    key = jax.random.key(config.seed)
    g = 0

    def loss(p, batch, rng):
        return stages[0].loss_fn(nnx.merge(graphdef, p), batch, rng)[0]

    grad = jax.jit(jax.grad(loss))
    for k, stage in enumerate(stages):
        if stage.reset_optimizer and k > 0:
            opt = tx.init(params)
        for epoch in range(stage.epochs):
            for batch in stage.loader.iterate(epoch):
                if max_steps is not None and g >= max_steps:
                    break
                grads = grad(params, batch, jax.random.fold_in(key, g))
                updates, opt = tx.update(grads, opt, params)
                params = optax.apply_updates(params, updates)
                g += 1
    model = nnx.merge(graphdef, params)
    return tiny_run.params_of(model)


def _run_script(run_dir: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), str(run_dir), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env or dict(os.environ), text=True)


def test_sigkill_halfway_then_rerun_equals_uninterrupted(tmp_path):
    # 2 stages x 3 epochs x 6 batches = 36 steps; checkpoints every 4; killed after step 17.
    full = _run_script(tmp_path / "full", tmp_path / "full.npz")
    killed = _run_script(tmp_path / "killed", tmp_path / "killed.npz", "--kill-at", "17")
    out_killed, _ = killed.communicate(timeout=300)
    assert killed.returncode == -9, out_killed  # really SIGKILLed
    assert not (tmp_path / "killed.npz").exists()
    steps_at_kill = CheckpointStore(tmp_path / "killed", keep=None).all_steps()
    assert steps_at_kill and 4 <= max(steps_at_kill) <= 16, steps_at_kill

    resumed = _run_script(tmp_path / "killed", tmp_path / "killed.npz")
    out_resumed, _ = resumed.communicate(timeout=300)
    out_full, _ = full.communicate(timeout=300)
    assert resumed.returncode == 0, out_resumed
    assert full.returncode == 0, out_full

    a = dict(np.load(tmp_path / "full.npz"))
    b = dict(np.load(tmp_path / "killed.npz"))
    _assert_params_close(a, b, atol=1e-6)
    assert json.loads((tmp_path / "killed.json").read_text())["global_step"] == 36
    # The log of the resumed run reads as one run: same steps and losses as the uninterrupted one.
    la = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in la] == [r["step"] for r in lb] == list(range(2, 37, 2))
    np.testing.assert_allclose([r["loss"] for r in la], [r["loss"] for r in lb], rtol=1e-6)


def test_fit_matches_handwritten_optax_loop(tmp_path):
    stages = tiny_run.make_stages(epochs=(2, 1))
    cfg = _cfg()
    result = fit(tiny_run.make_model(), stages, tmp_path / "run", cfg)
    assert result.stopped == "done" and result.global_step == 18
    ref = reference_params(stages, cfg)
    _assert_params_close(tiny_run.params_of(result.model), ref, atol=2e-6)
    # The comparison is sensitive: one step fewer is far from it.
    assert _max_diff(reference_params(stages, cfg, max_steps=17), ref) > 1e-4


def test_default_config_is_imnet_adam():
    cfg = TrainConfig()
    assert (cfg.learning_rate, cfg.beta1, cfg.beta2) == (5e-5, 0.5, 0.999)


@pytest.mark.parametrize("stop_at", [5, 12])  # mid-epoch of stage 0; exactly at the stage boundary
def test_max_steps_then_resume_in_process(tmp_path, stop_at):
    stages = tiny_run.make_stages(epochs=(2, 2))
    stages[1] = Stage(stages[1].name, stages[1].loader, stages[1].epochs,
                      loss_fn=tiny_run.mse_loss, reset_optimizer=True)
    cfg = _cfg()
    full = fit(tiny_run.make_model(), stages, tmp_path / "full", cfg)

    part = fit(tiny_run.make_model(), stages, tmp_path / "part", _cfg(max_steps=stop_at))
    assert part.stopped == "max_steps" and part.global_step == stop_at
    assert part.checkpoint_step == stop_at
    # A new model object: everything must come from the checkpoint.
    rest = fit(tiny_run.make_model(seed=99), stages, tmp_path / "part", cfg)
    assert rest.stopped == "done" and rest.global_step == 24
    _assert_params_close(tiny_run.params_of(rest.model), tiny_run.params_of(full.model), atol=1e-6)
    # Stage 1 re-initialised Adam: the independent loop with the same reset agrees ...
    ref = reference_params(stages, cfg)
    _assert_params_close(tiny_run.params_of(full.model), ref, atol=2e-6)
    # ... and keeping Adam's moments instead gives a different result.
    keep = [stages[0], Stage(stages[1].name, stages[1].loader, 2, loss_fn=tiny_run.mse_loss)]
    assert _max_diff(reference_params(keep, cfg), ref) > 1e-4

    # Running the finished run again does nothing and keeps the result.
    again = fit(tiny_run.make_model(seed=7), stages, tmp_path / "part", cfg)
    assert again.global_step == 24
    _assert_params_close(tiny_run.params_of(again.model), tiny_run.params_of(full.model), atol=0)

    # load_model restores the trained parameters into a fresh module.
    fresh = tiny_run.make_model(seed=5)
    meta = load_model(tmp_path / "part", fresh)
    assert meta["position"]["global_step"] == 24
    _assert_params_close(tiny_run.params_of(fresh), tiny_run.params_of(full.model), atol=0)


def test_resume_with_other_hyperparameters_is_refused(tmp_path):
    stages = tiny_run.make_stages(epochs=(1, 1))
    fit(tiny_run.make_model(), stages, tmp_path / "run", _cfg(max_steps=3))
    with pytest.raises(ValueError, match="learning_rate"):
        fit(tiny_run.make_model(), stages, tmp_path / "run", _cfg(learning_rate=1e-3))
    # Logging/checkpoint settings may change between invocations.
    done = fit(tiny_run.make_model(), stages, tmp_path / "run", _cfg(log_every_steps=5))
    assert done.global_step == 12


class DropoutMLP(nnx.Module):
    """A module that keeps its own RNG stream (typed PRNG key in its state)."""

    def __init__(self, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.net = tiny_run.make_model(seed)
        self.drop = nnx.Dropout(0.3, rngs=rngs)

    def __call__(self, x):
        return self.net(self.drop(x))


def _dropout_loss(model, batch, rng):
    return jax.numpy.mean((model(batch["x"]) - batch["y"]) ** 2), {}


def test_module_rng_state_is_checkpointed(tmp_path):
    stages = [Stage("only", tiny_run.ToyLoader(), 2, loss_fn=_dropout_loss)]
    full = fit(DropoutMLP(), stages, tmp_path / "full", _cfg())
    fit(DropoutMLP(), stages, tmp_path / "part", _cfg(max_steps=7))
    rest = fit(DropoutMLP(seed=4), stages, tmp_path / "part", _cfg())
    a = tiny_run.params_of(full.model)
    _assert_params_close(tiny_run.params_of(rest.model), a, atol=1e-6)
    # The module's stream advanced once per step across the resume (restored, not restarted).
    counts = {k: int(v) for k, v in named_leaves(nnx.state(rest.model)).items() if k.endswith("count")}
    assert counts == {"drop.rngs.count": 12}


def test_sigterm_stops_cleanly_and_resumes(tmp_path):
    import signal

    stages = tiny_run.make_stages(epochs=(1, 1))
    full = fit(tiny_run.make_model(), stages, tmp_path / "full", _cfg())

    def on_step(pos):
        if pos.global_step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    handler = signal.getsignal(signal.SIGTERM)
    part = fit(tiny_run.make_model(), stages, tmp_path / "part", _cfg(), on_step=on_step)
    assert part.stopped == "signal" and part.global_step == 5 and part.checkpoint_step == 5
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
    rest = fit(tiny_run.make_model(), stages, tmp_path / "part", _cfg())
    _assert_params_close(tiny_run.params_of(rest.model), tiny_run.params_of(full.model), atol=1e-6)
