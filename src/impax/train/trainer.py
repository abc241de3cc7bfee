"""The training loop shared by IM-NET (IM-AE, IM-SVR, IM-GAN) and SIF/LDIF.

:func:`fit` trains an ``nnx.Module`` over a list of :class:`~impax.train.config.Stage` s with
one optimiser state carried across stages, and writes everything to one run folder::

    RUN/checkpoints/<step>/   orbax checkpoints (model, optimizer, meta JSON), last k kept
    RUN/metrics.jsonl         scalars per log interval (see impax.train.runlog)
    RUN/tb/                   TensorBoard events
    RUN/train_config.json     the TrainConfig of the latest invocation

Calling :func:`fit` again with the same run folder resumes from the newest checkpoint and
continues exactly like a run that was never stopped: the parameters, optimiser state and base
RNG key come from the checkpoint, the data position from ``loader.iterate(epoch, start=step)``
and the key of global step ``s`` is ``fold_in(base_key, s)``, which does not depend on when the
run was resumed.

The step is a ``jax.jit`` of a pure function over the flat list of state leaves (model and
optimiser), with the leaves donated so their buffers are updated in place. Measured on 2 CPU cores
(3-64-64-1 MLP, 512 points, Adam): ``nnx.jit`` 1170-1380 µs/step, ``nnx.cached_partial``
570-700 µs, ``jax.jit`` over a donated ``nnx.State`` 370-410 µs, over donated flat leaves
330-340 µs, hence the last.

Losses and metrics stay on the device and are fetched in groups (every log interval, at most 64
steps, and before every checkpoint), so the host does not wait on the device each step. A
non-finite value raises :class:`TrainingDiverged` naming the first offending step and metric;
checkpoints are only written after the steps before them were checked, so the last one on disk is
good.

Several processes (:mod:`impax.train.distributed`): every process runs :func:`fit` with the same
arguments and run folder (on a shared file system). Each keeps its block of rows of every global
batch; all processes take part in every checkpoint save and restore (orbax writes replicated
arrays from process 0 only) and only process 0 writes ``metrics.jsonl``, TensorBoard events,
``train_config.json`` and the progress bar. Decisions that start collective work and could differ
between processes — a checkpoint due by wall time, a stop requested by a signal — are taken at log
steps (every ``log_every_steps``) by all processes together. The returned module holds ordinary
arrays on this process's first device, so code after :func:`fit` runs as in a single process.

One writer: :func:`fit` holds the run folder's lock (:func:`run_lock`, an ``fcntl`` lock on
``RUN/.impax.lock``; process ``i > 0`` of a multi-process run locks ``RUN/.impax.lock.p<i>``), so a
second training on the same folder stops at once with
:class:`~impax.data.safety.FolderLocked` instead of interleaving checkpoints and logs. A damaged
newest checkpoint is skipped with a warning naming it (see :mod:`impax.train.checkpoint`).
A run stopped by SIGINT/SIGTERM saves a checkpoint and returns ``stopped == "signal"``;
:attr:`FitResult.stop_signal` (and :func:`last_stop_signal`) say which signal, so that a command
can exit with ``128 + signal`` (130, 143) as a killed process would.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from impax.configs import to_dict
from impax.data.safety import FolderLock, atomic_write_text
from impax.train.checkpoint import CheckpointStore, from_host, host_copy, named_leaves, to_host
from impax.train.config import RESUMABLE_FIELDS, Position, Stage, StepFn, TrainConfig
from impax.train.distributed import agree_any
from impax.train.parallel import DataParallel, Prefetcher, loader_batch_rows
from impax.train.runlog import RunLog

#: Losses are fetched from the device at least this often (steps).
MAX_PENDING = 64


class TrainingDiverged(RuntimeError):
    """A loss or metric became NaN/inf. ``step`` is the 1-based global step that produced it
    (the numbering of ``metrics.jsonl`` and of checkpoints); ``checkpoint_step`` is the newest
    checkpoint on disk (all earlier than ``step``), or ``None``."""

    def __init__(self, step: int, metric: str, value: float, stage: str,
                 checkpoint_step: int | None, run_dir: Path):
        self.step, self.metric, self.value, self.stage = step, metric, value, stage
        self.checkpoint_step = checkpoint_step
        where = (f"last good checkpoint: step {checkpoint_step} in {run_dir / 'checkpoints'}"
                 if checkpoint_step is not None else "no checkpoint was written yet")
        super().__init__(f"training diverged at step {step} (stage {stage!r}): {metric} = {value}; "
                         f"{where}")


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns. ``model`` is the caller's module, updated in place.

    ``stopped``: ``"done"`` (all stages done), ``"max_steps"`` or ``"signal"``.
    ``metrics``: the last ``metrics.jsonl`` record written (``{}`` if none; the same numbers
    on every process, although only process 0 writes the file).
    ``num_devices``: devices of the mesh over all processes; ``num_processes``: processes.
    """

    model: nnx.Module
    position: Position
    stopped: str
    metrics: dict[str, Any]
    checkpoint_step: int | None
    num_devices: int
    run_dir: Path
    num_processes: int = 1
    stop_signal: int | None = None  # the signal that stopped a ``"signal"`` run

    @property
    def global_step(self) -> int:
        return self.position.global_step


_LAST_STOP_SIGNAL: int | None = None


def last_stop_signal() -> int | None:
    """The signal number that stopped the last :func:`fit` of this process (``None`` if it was not
    stopped by a signal)."""
    return _LAST_STOP_SIGNAL


def run_lock(run_dir: str | Path, process_index: int = 0) -> FolderLock:
    """The lock of a run folder for process ``process_index`` (see the module doc)."""
    name = ".impax.lock" if int(process_index) == 0 else f".impax.lock.p{int(process_index)}"
    return FolderLock(run_dir, name, what="impax train")


def adam(config: TrainConfig) -> optax.GradientTransformation:
    """The default optimiser: Adam(lr, beta1, beta2, eps) of ``config``, with the learning rate
    kept in the optimiser state (``optax.inject_hyperparams``) so it is logged and checkpointed."""
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=config.learning_rate, b1=config.beta1, b2=config.beta2, eps=config.eps)


def loss_step(loss_fn: Callable, wrt: Any = nnx.Param) -> StepFn:
    """The standard step of a ``loss_fn``: gradients w.r.t. the ``wrt`` variables, one update."""

    def step(model: nnx.Module, optimizer: nnx.Optimizer, batch: Any, rng: jax.Array):
        def f(m: nnx.Module):
            return loss_fn(m, batch, rng)

        grad_fn = nnx.value_and_grad(f, argnums=nnx.DiffState(0, wrt), has_aux=True)
        (loss, metrics), grads = grad_fn(model)
        optimizer.update(model, grads)
        return loss, metrics

    return step


def make_optimizer(model: nnx.Module, config: TrainConfig, tx: Any = None, wrt: Any = nnx.Param
                   ) -> nnx.Optimizer | dict[str, nnx.Optimizer]:
    """One ``nnx.Optimizer`` over the ``wrt`` variables, or a dict of them.

    * ``wrt`` a filter, ``tx`` ``None`` or an optax transformation: one optimiser (``None``:
      :func:`adam` of ``config``). A filter such as ``nnx.All(nnx.Param, nnx.PathContains("encoder"))``
      trains the encoder only (IM-SVR's frozen decoder).
    * ``wrt`` a dict ``{name: filter}``: one optimiser per name (IM-GAN's generator and critic);
      ``tx`` is then ``None``, one transformation for all, or a dict ``{name: tx}``.
    """
    if isinstance(wrt, Mapping):
        out = {}
        for name, filt in wrt.items():
            t = tx.get(name) if isinstance(tx, Mapping) else tx
            out[name] = nnx.Optimizer(model, t if t is not None else adam(config), wrt=filt)
        return out
    if isinstance(tx, Mapping):
        raise TypeError("a dict of optimisers (tx) needs a dict of filters (wrt)")
    return nnx.Optimizer(model, tx if tx is not None else adam(config), wrt=wrt)


def fit(model: nnx.Module, stages: Sequence[Stage], run_dir: str | Path,
        config: TrainConfig = TrainConfig(), *, tx: Any = None, wrt: Any = nnx.Param,
        extra_meta: Mapping[str, Any] | None = None,
        on_step: Callable[[Position], None] | None = None) -> FitResult:
    """Train ``model`` through ``stages``, checkpointing to ``run_dir``; resume if it has one.

    Args:
        model: any ``nnx.Module`` (a container module for several nets); updated in place.
        stages: :class:`Stage` s run in order; each has a loader following the loader contract
            (``len``, ``iterate(epoch, start)``) and a ``loss_fn`` or ``step_fn``.
        run_dir: the run folder (created if missing).
        config: :class:`TrainConfig` (IM-NET's Adam 5e-5, beta1 0.5 by default).
        tx, wrt: the optimiser(s), see :func:`make_optimizer`. One optimiser state is shared by all
            stages unless a stage sets ``reset_optimizer``.
        extra_meta: JSON data stored in every checkpoint's meta (e.g. the model config, so that
            inference can rebuild the model).
        on_step: called with the new :class:`Position` after each step is dispatched.

    Returns:
        :class:`FitResult`. Raises :class:`TrainingDiverged` on a non-finite loss or metric; the
        module is then left as passed in and the newest checkpoint holds the last good state.
        Raises :class:`~impax.train.parallel.BatchSplitError` (a ``ValueError``, one line) before
        anything is written when a stage's batches cannot be split evenly over the devices
        (:func:`check_batches`).
    """
    global _LAST_STOP_SIGNAL
    stages = list(stages)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    run_dir = Path(run_dir)
    dp = DataParallel(config.num_devices)
    check_batches(stages, dp)
    _LAST_STOP_SIGNAL = None
    with run_lock(run_dir, dp.process_index):
        result = _fit(model, stages, run_dir, config, dp, tx, wrt, extra_meta, on_step)
    _LAST_STOP_SIGNAL = result.stop_signal
    return result


def check_batches(stages: Sequence[Stage], dp: DataParallel) -> None:
    """Refuse, before the first step, stages whose loaders' batches (as far as their ``batch_size``
    / ``drop_last`` attributes say: :func:`~impax.train.parallel.loader_batch_rows`) cannot be split
    evenly over the mesh of ``dp`` — rather than failing at the first such batch, possibly hours in."""
    if dp.num_devices == 1:
        return
    for s in stages:
        if s.epochs == 0:
            continue
        local = bool(getattr(s.loader, "process_local", False)) and dp.multi_process
        for rows in loader_batch_rows(s.loader):
            dp.check_rows(rows, local, f"stage {s.name!r}: ")


def _fit(model: nnx.Module, stages: list[Stage], run_dir: Path, config: TrainConfig, dp: DataParallel,
         tx: Any, wrt: Any, extra_meta: Mapping[str, Any] | None,
         on_step: Callable[[Position], None] | None) -> FitResult:
    """:func:`fit` once the run folder is locked."""
    optimizer = make_optimizer(model, config, tx, wrt)
    multi = isinstance(optimizer, dict)
    for s in stages:
        if s.loss_fn is not None and multi:
            raise ValueError(f"stage {s.name!r}: several optimisers need a step_fn, not a loss_fn")

    graphdef, state = nnx.split((model, optimizer))
    leaves, treedef = jax.tree.flatten(state)
    names_all = list(named_leaves(state))
    n_model = sum(1 for n in names_all if n.startswith("0."))
    if names_all[:n_model] != [n for n in names_all if n.startswith("0.")]:
        raise AssertionError("model leaves are expected before optimiser leaves")
    model_names = [n[2:] for n in names_all[:n_model]]
    opt_names = [n[2:] for n in names_all[n_model:]]
    lr_index = {(_lr_label(n) if multi else "learning_rate"): n_model + i
                for i, n in enumerate(opt_names) if n.endswith("hyperparams.learning_rate")}

    store = CheckpointStore(run_dir, keep=config.keep_checkpoints,
                            async_save=config.async_checkpointing)
    base_key = np.asarray(jax.random.key_data(jax.random.key(config.seed)))
    pos = Position()
    found = store.restore_newest(
        dict(zip(model_names, to_host_list(leaves[:n_model]))),
        dict(zip(opt_names, to_host_list(leaves[n_model:]))),
        check_meta=lambda meta: _check_resume(meta, config, stages, run_dir),
        move_bad=dp.process_index == 0)
    if found is not None and found[4] and dp.multi_process:  # every process sees the moved checkpoints
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("impax-checkpoint-quarantine")
        store.reload()
    if found is not None:
        _, host_model, host_opt, meta, _ = found
        pos = Position.from_dict(meta["position"])
        base_key = np.asarray(meta["rng_key"], dtype=base_key.dtype)
        leaves = ([from_host(host_model[n], x) for n, x in zip(model_names, leaves[:n_model])]
                  + [from_host(host_opt[n], x) for n, x in zip(opt_names, leaves[n_model:])])
    leaves = dp.put_replicated(leaves)
    key_data = dp.put_replicated(base_key)
    primary = dp.process_index == 0
    if primary:
        atomic_write_text(run_dir / "train_config.json", json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")

    stage_meta = [{"name": s.name, "epochs": s.epochs, "batches_per_epoch": len(s.loader)}
                  for s in stages]

    def snapshot_meta() -> dict[str, Any]:
        return {"position": pos.to_dict(), "rng_key": base_key.tolist(), "config": to_dict(config),
                "stages": stage_meta, "extra": dict(extra_meta or {})}

    log: Any = (RunLog(run_dir, resume_step=pos.global_step, tensorboard=config.tensorboard)
                if primary else _NoLog())
    total = sum(len(s.loader) * s.epochs for s in stages)
    bar = _progress(config.progress and primary, total, pos.global_step)
    compiled: dict[int, Callable] = {}
    pending: list[tuple[int, str, Any, Any]] = []  # (step, stage, loss, metrics) on device
    interval = _Interval()
    last_record: dict[str, Any] = {}
    last_save = time.monotonic()
    stopped = "done"
    stop_flag = _StopFlag(config.handle_signals)

    def flush() -> None:
        """Fetch pending losses; raise TrainingDiverged at the first non-finite value."""
        if not pending:
            return
        host = jax.tree.map(host_copy, [(p[2], p[3]) for p in pending])
        for (step, stage_name, _, _), (loss, metrics) in zip(pending, host):
            bad = _first_non_finite(loss, metrics)
            if bad is not None:
                store.wait()
                raise TrainingDiverged(step, bad[0], bad[1], stage_name, store.latest_step(), run_dir)
            interval.add(float(loss), {k: float(np.mean(v)) for k, v in metrics.items()})
        pending.clear()

    def write_log(stage_name: str, epoch: int) -> None:
        nonlocal last_record
        flush()
        if not interval.count:
            return
        scalars = interval.means()
        for label, i in lr_index.items():
            scalars[label] = float(host_copy(leaves[i]))
        now = time.monotonic()
        perf = interval.perf(now)
        last_record = log.write(pos.global_step, stage_name, epoch, scalars, perf)
        interval.reset(now)
        bar.set_postfix(stage=stage_name, loss=f"{scalars['loss']:.4g}", refresh=False)

    def save() -> None:
        nonlocal last_save
        flush()
        m = to_host(dict(zip(model_names, leaves[:n_model])))
        o = to_host(dict(zip(opt_names, leaves[n_model:])))
        store.save(pos.global_step, m, o, snapshot_meta())
        last_save = time.monotonic()

    try:
        stop_flag.install()
        while pos.stage < len(stages):
            if config.max_steps is not None and pos.global_step >= config.max_steps:
                stopped = "max_steps"
                break
            stage = stages[pos.stage]
            nb = len(stage.loader)
            if pos.epoch >= stage.epochs or nb == 0:
                pos = Position(pos.stage + 1, 0, 0, pos.global_step)
                if pos.stage < len(stages) and stages[pos.stage].reset_optimizer:
                    leaves = _reset_optimizer(graphdef, treedef, leaves, n_model, config, tx, wrt, dp)
                continue
            fn = stage.step_fn if stage.step_fn is not None else loss_step(stage.loss_fn, wrt)
            key = id(stage.step_fn if stage.step_fn is not None else stage.loss_fn)
            if key not in compiled:
                compiled[key] = _compile(graphdef, treedef, fn, dp)
            step_fn = compiled[key]
            interval.reset(time.monotonic())
            batches = _stage_batches(stage, pos)
            epoch_done = pos.epoch
            local = bool(getattr(stage.loader, "process_local", False))
            with Prefetcher(batches, lambda b, local=local: dp.put_batch(b, local=local),
                            config.prefetch) as prefetched:
                for batch in prefetched:
                    leaves, loss, metrics = step_fn(leaves, batch, key_data,
                                                    np.uint32(pos.global_step))
                    epoch_done = pos.epoch
                    interval.samples += _batch_size(batch)
                    step_in = pos.step + 1
                    pos = (Position(pos.stage, pos.epoch + 1, 0, pos.global_step + 1)
                           if step_in == nb else
                           Position(pos.stage, pos.epoch, step_in, pos.global_step + 1))
                    pending.append((pos.global_step, stage.name, loss, metrics))
                    bar.update(1)
                    if on_step is not None:
                        on_step(pos)
                    at_log = pos.global_step % config.log_every_steps == 0
                    if at_log:
                        write_log(stage.name, epoch_done)
                    elif len(pending) >= MAX_PENDING:
                        flush()
                    time_due = (config.checkpoint_every_seconds is not None
                                and time.monotonic() - last_save >= config.checkpoint_every_seconds)
                    stop_now = stop_flag.requested
                    if dp.multi_process:  # the same decision on every process, at log steps
                        time_due, stop_now = (agree_any([time_due, stop_now]) if at_log
                                              else (False, False))
                    if ((config.checkpoint_every_steps
                         and pos.global_step % config.checkpoint_every_steps == 0) or time_due):
                        save()
                    if config.max_steps is not None and pos.global_step >= config.max_steps:
                        stopped = "max_steps"
                        break
                    if stop_now:
                        stopped = "signal"
                        break
            write_log(stage.name, epoch_done)
            if stopped != "done":
                break
        flush()
        save()
        store.wait()
        if dp.multi_process:  # plain arrays on this process's first device
            dev = dp.local_devices[0]
            leaves = [jax.device_put(from_host(host_copy(x), x), dev) for x in leaves]
        state_now = jax.tree.unflatten(treedef, leaves)
        trained, _ = nnx.merge(graphdef, state_now)
        nnx.update(model, nnx.state(trained))
        return FitResult(model=model, position=pos, stopped=stopped, metrics=last_record,
                         checkpoint_step=store.latest_step(), num_devices=dp.num_devices,
                         run_dir=run_dir, num_processes=dp.process_count,
                         stop_signal=stop_flag.signum if stopped == "signal" else None)
    finally:
        stop_flag.uninstall()
        bar.close()
        log.close()
        store.close()


# --------------------------------------------------------------------------------------------

def to_host_list(leaves: Sequence[Any]) -> list[np.ndarray]:
    return [host_copy(x) for x in leaves]


def _lr_label(name: str) -> str:
    return "learning_rate/" + name.split(".", 1)[0]


def _compile(graphdef: Any, treedef: Any, step_fn: StepFn, dp: DataParallel) -> Callable:
    def pure(leaves, batch, key_data, step):
        model, optimizer = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
        rng = jax.random.fold_in(jax.random.wrap_key_data(key_data), step)
        loss, metrics = step_fn(model, optimizer, batch, rng)
        new_leaves = jax.tree.leaves(nnx.state((model, optimizer)))
        metrics = {k: jnp.mean(jnp.asarray(v, jnp.float32)) for k, v in dict(metrics).items()}
        return new_leaves, jnp.asarray(loss, jnp.float32), metrics

    return dp.jit(pure, donate_argnums=(0,))


def _reset_optimizer(graphdef, treedef, leaves, n_model, config, tx, wrt, dp) -> list[Any]:
    model, _ = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
    fresh = make_optimizer(model, config, tx, wrt)
    new_opt = jax.tree.leaves(nnx.state(fresh))
    return list(leaves[:n_model]) + list(dp.put_replicated(new_opt))


def _stage_batches(stage: Stage, pos: Position) -> Iterator[Any]:
    """The stage's batches from ``pos`` on, checking the loader yields ``len(loader)`` per epoch."""
    nb = len(stage.loader)
    for epoch in range(pos.epoch, stage.epochs):
        start = pos.step if epoch == pos.epoch else 0
        count = 0
        for batch in stage.loader.iterate(epoch, start=start):
            count += 1
            if start + count > nb:
                raise RuntimeError(f"stage {stage.name!r}: loader yielded more than len(loader) = "
                                   f"{nb} batches in epoch {epoch}")
            yield batch
        if start + count != nb:
            raise RuntimeError(f"stage {stage.name!r}: loader yielded {start + count} batches in "
                               f"epoch {epoch}, len(loader) = {nb}")


def _batch_size(batch: Any) -> int:
    for leaf in jax.tree.leaves(batch):
        if np.ndim(leaf):
            return int(np.shape(leaf)[0])
    return 1


def _first_non_finite(loss: Any, metrics: Mapping[str, Any]) -> tuple[str, float] | None:
    if not np.all(np.isfinite(loss)):
        return "loss", float(loss)
    for k, v in metrics.items():
        if not np.all(np.isfinite(v)):
            return k, float(np.asarray(v).reshape(-1)[~np.isfinite(np.asarray(v).reshape(-1))][0])
    return None


def _check_resume(meta: Mapping[str, Any], config: TrainConfig, stages: Sequence[Stage],
                  run_dir: Path) -> None:
    saved = dict(meta.get("config", {}))
    now = to_dict(config)
    diff = sorted(k for k in set(saved) | set(now)
                  if k not in RESUMABLE_FIELDS and saved.get(k) != now.get(k))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ValueError(f"{run_dir} was trained with a different config ({detail}); "
                         "use a new run folder or the same settings")
    saved_names = [s["name"] for s in meta.get("stages", [])]
    if saved_names != [s.name for s in stages]:
        raise ValueError(f"{run_dir} has stages {saved_names}, not {[s.name for s in stages]}")
    pos = Position.from_dict(meta["position"])
    if pos.stage < len(stages) and pos.step:
        was = meta["stages"][pos.stage]["batches_per_epoch"]
        if was != len(stages[pos.stage].loader):
            raise ValueError(f"stage {stages[pos.stage].name!r} had {was} batches per epoch, now "
                             f"{len(stages[pos.stage].loader)}: cannot resume mid-epoch")


class _Interval:
    """Sums of the scalars of one log interval and the throughput clock."""

    def __init__(self) -> None:
        self.reset(time.monotonic())

    def reset(self, now: float) -> None:
        self.count = 0
        self.loss = 0.0
        self.metrics: dict[str, float] = {}
        self.samples = 0
        self.steps_timed = 0
        self.t0 = now

    def add(self, loss: float, metrics: Mapping[str, float]) -> None:
        self.count += 1
        self.loss += loss
        for k, v in metrics.items():
            self.metrics[k] = self.metrics.get(k, 0.0) + v

    def means(self) -> dict[str, float]:
        out = {"loss": self.loss / self.count}
        out.update({k: v / self.count for k, v in self.metrics.items()})
        return out

    def perf(self, now: float) -> dict[str, float]:
        dt = max(now - self.t0, 1e-9)
        return {"samples_per_sec": self.samples / dt, "steps_per_sec": self.count / dt}


class _StopFlag:
    """SIGINT/SIGTERM → finish the step, checkpoint, return. A second SIGINT interrupts."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        if self.signum is None:
            self.signum = int(signum)

    def install(self) -> None:
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


class _NoLog:
    """The log of processes other than 0: nothing is written."""

    def write(self, step: int, stage: str, epoch: int, scalars: Mapping[str, float],
              perf: Mapping[str, float]) -> dict[str, Any]:
        rec: dict[str, Any] = {"step": int(step), "stage": stage, "epoch": int(epoch)}
        rec.update({k: float(v) for k, v in scalars.items()})
        rec.update({k: float(v) for k, v in perf.items()})
        return rec

    def close(self) -> None: ...


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def _progress(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.05)

