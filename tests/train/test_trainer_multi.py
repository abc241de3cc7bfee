"""Several nets in one trainer: a frozen decoder (IM-SVR) and a GAN with two optimisers
(IM-GAN) via a user step_fn; plus the prefetcher the loop reads batches through.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import tiny_run
from impax.train import Prefetcher, Stage, TrainConfig, fit, read_metrics
from impax.train.checkpoint import CheckpointStore, named_leaves

GEN = nnx.All(nnx.Param, nnx.PathContains("gen"))
CRITIC = nnx.All(nnx.Param, nnx.PathContains("critic"))
ENCODER = nnx.All(nnx.Param, nnx.PathContains("encoder"))


def _cfg(**kw) -> TrainConfig:
    base = dict(learning_rate=1e-2, seed=1, log_every_steps=3, checkpoint_every_steps=3,
                checkpoint_every_seconds=None, keep_checkpoints=5, progress=False)
    base.update(kw)
    return TrainConfig(**base)


class SVR(nnx.Module):
    def __init__(self, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.encoder = nnx.Linear(3, 3, rngs=rngs)
        self.decoder = tiny_run.make_model(seed + 1)

    def __call__(self, x):
        return self.decoder(self.encoder(x))


def svr_loss(model, batch, rng):
    return jnp.mean((model(batch["x"]) - batch["y"]) ** 2), {}


def test_frozen_decoder_only_encoder_trains(tmp_path):
    model = SVR()
    before = {k: np.asarray(v) for k, v in named_leaves(nnx.state(model, nnx.Param)).items()}
    stages = [Stage("svr", tiny_run.ToyLoader(), 2, loss_fn=svr_loss)]
    fit(model, stages, tmp_path / "run", _cfg(), wrt=ENCODER)
    after = {k: np.asarray(v) for k, v in named_leaves(nnx.state(model, nnx.Param)).items()}
    for k in before:
        if k.startswith("decoder."):
            np.testing.assert_array_equal(after[k], before[k], err_msg=k)
        else:
            assert np.max(np.abs(after[k] - before[k])) > 1e-3, k
    # The optimiser holds Adam moments for the encoder only.
    store = CheckpointStore(tmp_path / "run", keep=None)
    step = store.latest_step()
    opt_target = _opt_names(SVR(), ENCODER)
    _, opt, _ = store.restore(step, {k: v for k, v in before.items()}, opt_target)
    assert not [k for k in opt if "decoder" in k]
    assert [k for k in opt if "mu.encoder.kernel" in k]


def _opt_names(model, wrt):
    opt = nnx.Optimizer(model, optax.inject_hyperparams(optax.adam)(learning_rate=1.0), wrt=wrt)
    return {k: np.asarray(v) for k, v in named_leaves(nnx.state(opt)).items()}


class GAN(nnx.Module):
    def __init__(self, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.gen = nnx.Linear(2, 3, rngs=rngs)
        self.critic_hidden = nnx.Linear(3, 8, rngs=rngs)
        self.critic_out = nnx.Linear(8, 1, rngs=rngs)

    def critic(self, x):
        return self.critic_out(jnp.tanh(self.critic_hidden(x)))[..., 0]


def _critic_loss(model, real, z):
    fake = jax.lax.stop_gradient(model.gen(z))
    return jnp.mean(model.critic(fake)) - jnp.mean(model.critic(real))


def _gen_loss(model, z):
    return -jnp.mean(model.critic(model.gen(z)))


def gan_step(model, opts, batch, rng):
    """WGAN-style alternation: critic update, then generator update against the new critic."""
    z = jax.random.normal(rng, (batch["x"].shape[0], 2))
    lc, gc = nnx.value_and_grad(_critic_loss, argnums=nnx.DiffState(0, CRITIC))(model, batch["x"], z)
    opts["critic"].update(model, gc)
    lg, gg = nnx.value_and_grad(_gen_loss, argnums=nnx.DiffState(0, GEN))(model, z)
    opts["gen"].update(model, gg)
    return lc, {"gen_loss": lg}


def gan_reference(loader, epochs, lr_gen, lr_critic, seed):
    """Independent loop: functional split, two optax.adam states, same step keys."""
    graphdef, gp, cp, rest = nnx.split(GAN(), GEN, CRITIC, ...)
    tx_g, tx_c = optax.adam(lr_gen, b1=0.5), optax.adam(lr_critic, b1=0.5)
    sg, sc = tx_g.init(gp), tx_c.init(cp)
    key = jax.random.key(seed)

    def lc(cp_, gp_, real, z):
        return _critic_loss(nnx.merge(graphdef, gp_, cp_, rest), real, z)

    def lg(gp_, cp_, z):
        return _gen_loss(nnx.merge(graphdef, gp_, cp_, rest), z)

    g = 0
    for epoch in range(epochs):
        for batch in loader.iterate(epoch):
            z = jax.random.normal(jax.random.fold_in(key, g), (batch["x"].shape[0], 2))
            u, sc = tx_c.update(jax.grad(lc)(cp, gp, batch["x"], z), sc, cp)
            cp = optax.apply_updates(cp, u)
            u, sg = tx_g.update(jax.grad(lg)(gp, cp, z), sg, gp)
            gp = optax.apply_updates(gp, u)
            g += 1
    return {k: np.asarray(v) for k, v in
            named_leaves(nnx.state(nnx.merge(graphdef, gp, cp, rest), nnx.Param)).items()}


def test_gan_two_optimisers_match_reference_and_resume(tmp_path):
    loader = tiny_run.ToyLoader(n=32)
    stages = [Stage("gan", loader, 2, step_fn=gan_step)]
    tx = {"gen": optax.inject_hyperparams(optax.adam)(learning_rate=1e-2, b1=0.5),
          "critic": optax.inject_hyperparams(optax.adam)(learning_rate=3e-2, b1=0.5)}
    wrt = {"gen": GEN, "critic": CRITIC}
    full = fit(GAN(), stages, tmp_path / "full", _cfg(), tx=tx, wrt=wrt)
    got = {k: np.asarray(v) for k, v in named_leaves(nnx.state(full.model, nnx.Param)).items()}
    ref = gan_reference(loader, 2, 1e-2, 3e-2, seed=1)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=2e-6, err_msg=k)
    assert max(float(np.max(np.abs(ref[k] - np.asarray(v)))) for k, v in
               named_leaves(nnx.state(GAN(), nnx.Param)).items()) > 1e-2

    recs = read_metrics(tmp_path / "full")
    assert {"loss", "gen_loss", "learning_rate/gen", "learning_rate/critic"} <= set(recs[-1])
    assert recs[-1]["learning_rate/critic"] == pytest.approx(3e-2, rel=1e-6)

    part = fit(GAN(), stages, tmp_path / "part", _cfg(max_steps=5), tx=tx, wrt=wrt)
    assert part.global_step == 5
    rest = fit(GAN(seed=9), stages, tmp_path / "part", _cfg(), tx=tx, wrt=wrt)
    again = {k: np.asarray(v) for k, v in named_leaves(nnx.state(rest.model, nnx.Param)).items()}
    for k in got:
        np.testing.assert_allclose(again[k], got[k], rtol=0, atol=1e-6, err_msg=k)


def test_loss_fn_with_several_optimisers_is_refused(tmp_path):
    stages = [Stage("gan", tiny_run.ToyLoader(), 1, loss_fn=svr_loss)]
    with pytest.raises(ValueError, match="step_fn"):
        fit(GAN(), stages, tmp_path / "run", _cfg(), wrt={"gen": GEN, "critic": CRITIC})


def test_stage_needs_exactly_one_of_loss_and_step():
    with pytest.raises(ValueError, match="exactly one"):
        Stage("x", tiny_run.ToyLoader(), 1)
    with pytest.raises(ValueError, match="exactly one"):
        Stage("x", tiny_run.ToyLoader(), 1, loss_fn=svr_loss, step_fn=gan_step)


@pytest.mark.parametrize("size", [0, 2])
def test_prefetcher_keeps_order_and_raises(size):
    seen = []
    with Prefetcher(range(10), lambda x: x * x, size) as it:
        seen = list(it)
    assert seen == [x * x for x in range(10)]

    def broken():
        yield 1
        raise OSError("disk gone")

    with Prefetcher(broken(), lambda x: x, size) as it:
        got = iter(it)
        assert next(got) == 1
        with pytest.raises(OSError, match="disk gone"):
            next(got)


def test_prefetcher_stops_its_thread_when_closed_early():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    p = Prefetcher(endless(), lambda x: x, 2)
    it = iter(p)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    p.close()
    time.sleep(0.2)
    assert threading.active_count() == before
