"""Checkpoints of a training run, written with orbax.

Layout: ``RUN/checkpoints/<global_step>/`` with three orbax items

* ``model``: the module's full ``nnx.state`` (parameters and any other variables),
* ``optimizer``: the optimiser state(s) (Adam moments, step counts, hyper-parameters),
* ``meta``: JSON with the loop :class:`~impax.train.config.Position`, the base RNG key data,
  the :class:`~impax.train.config.TrainConfig`, the stages and any extra user data.

Array items are flat ``{"dotted.path": array}`` dicts (e.g. ``"decoder.linear_1.kernel"``), so
they are readable without the model class and robust to int/str key mixes. Orbax writes into a
temporary folder and renames it when complete, so a run killed while saving leaves the previous
checkpoints intact; ``keep`` limits how many are kept.

Damaged checkpoints (a truncated or deleted file of a finished checkpoint): resuming
(:meth:`CheckpointStore.restore_newest`, used by :func:`impax.train.fit`) tries the checkpoints
newest first; one that fails to restore is named in a warning on stderr and, once an older one
restores, moved to ``RUN/checkpoints.bad/<step>`` (kept for inspection; only then, so a model
that no longer fits its checkpoints never sees them moved), and training resumes from the older
one. :func:`load_model` (inference) falls back the same way without moving anything. When no
checkpoint restores, :class:`CheckpointError` lists them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

CHECKPOINT_DIR = "checkpoints"
#: Where checkpoints that failed to restore are moved (beside ``CHECKPOINT_DIR``).
BAD_CHECKPOINT_DIR = "checkpoints.bad"


class CheckpointError(ValueError):
    """No checkpoint of a run can be restored (or the one asked for cannot); one line."""


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def _quiet_closed_loop_errors() -> None:
    """After a failed orbax restore, tensorstore still completes the other reads of that restore
    and hands their results to orbax's asyncio loop, which is closed by then: each becomes an
    unraisable ``RuntimeError: Event loop is closed`` printed as a traceback. Those are noise about
    a checkpoint already reported as damaged; this ``sys.unraisablehook`` drops exactly them."""
    prev = sys.unraisablehook
    if getattr(prev, "_impax_quiet", False):
        return

    def hook(u: Any) -> None:
        if isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == "Event loop is closed":
            tb, last = u.exc_traceback, ""
            while tb is not None:
                last, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
            if last.endswith(os.path.join("asyncio", "base_events.py")):
                return
        prev(u)

    hook._impax_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


# orbax is chatty at INFO level about every save.
logging.getLogger("absl").setLevel(logging.WARNING)


def _path_name(path: tuple[Any, ...]) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        else:  # FlattenedIndexKey and friends
            parts.append(str(getattr(k, "key", k)))
    if len(parts) > 1 and parts[-1] == "value":  # nnx Variable leaves
        parts.pop()
    return ".".join(parts)


def named_leaves(tree: Any) -> dict[str, Any]:
    """Flatten a pytree (e.g. an ``nnx.State``) to ``{"dotted.path": leaf}`` in leaf order."""
    out: dict[str, Any] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = _path_name(path)
        if name in out:
            raise ValueError(f"two leaves share the checkpoint name {name!r}")
        out[name] = leaf
    return out


def is_key(x: Any) -> bool:
    """A typed PRNG key array (e.g. an ``nnx.RngKey`` of a module with dropout)."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def host_copy(x: Any) -> np.ndarray:
    """A fresh host numpy copy of an array; typed PRNG keys become their uint32 key data.

    An array replicated over several processes is read from this process's first copy."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError("cannot copy an array sharded over other processes to this host")
        x = x.addressable_data(0)
    if is_key(x):
        x = jax.random.key_data(x)
    return np.array(jax.device_get(x))


def from_host(x: np.ndarray, like: Any) -> Any:
    """Inverse of :func:`host_copy` for a leaf shaped like ``like`` (re-wraps PRNG keys)."""
    if is_key(like):
        return jax.random.wrap_key_data(np.asarray(x), impl=jax.random.key_impl(like))
    dtype = like.dtype if hasattr(like, "dtype") else np.asarray(like).dtype
    return np.asarray(x).astype(dtype, copy=False)


def to_host(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Copy device arrays to fresh host numpy arrays (safe to keep after buffers are donated)."""
    return {k: host_copy(v) for k, v in tree.items()}


class CheckpointStore:
    """A thin wrapper around ``orbax.checkpoint.CheckpointManager`` for one run folder."""

    def __init__(self, run_dir: str | Path, keep: int | None = 2, async_save: bool = True,
                 read_only: bool = False):
        self.run_dir = Path(run_dir).absolute()
        self.directory = self.run_dir / CHECKPOINT_DIR
        absl = logging.getLogger("absl")
        level = absl.level
        if read_only:  # orbax warns that a read-only manager does not save
            absl.setLevel(logging.ERROR)
        try:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=not read_only, enable_async_checkpointing=async_save,
                read_only=read_only)
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        finally:
            absl.setLevel(level)

    def step_dir(self, step: int) -> Path:
        return self.directory / str(int(step))

    def quarantine(self, step: int) -> Path:
        """Move checkpoint ``step`` to ``RUN/checkpoints.bad/<step>`` (``-2``, ``-3``... when
        taken) and forget it; returns where it went."""
        src = self.step_dir(step)
        dst_dir = self.run_dir / BAD_CHECKPOINT_DIR
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst, k = dst_dir / str(int(step)), 1
        while dst.exists():
            k += 1
            dst = dst_dir / f"{int(step)}-{k}"
        os.replace(src, dst)
        self.reload()
        return dst

    def reload(self) -> None:
        """Re-read the list of checkpoints from disk."""
        self._manager.reload()

    def restore_newest(self, model: Mapping[str, Any], optimizer: Mapping[str, Any],
                       check_meta: Callable[[dict[str, Any]], None] | None = None, move_bad: bool = True,
                       ) -> tuple[int, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any],
                                  list[tuple[int, str]]] | None:
        """Restore the newest checkpoint that restores: ``(step, model, optimizer, meta, bad)`` with
        ``bad`` the ``(step, reason)`` of newer ones that failed (named in a warning, and moved to
        ``checkpoints.bad`` when ``move_bad``); ``None`` without checkpoints. ``check_meta(meta)``
        may raise to refuse a checkpoint for a reason that is no damage (another config): that
        error propagates. Raises :class:`CheckpointError` when none restores."""
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            return None
        bad: list[tuple[int, str]] = []
        for step in steps:
            try:
                meta = self.restore_meta(step)
            except Exception as e:  # orbax/tensorstore raise many types for a damaged checkpoint
                _quiet_closed_loop_errors()
                bad.append((step, _reason(e)))
                continue
            if check_meta is not None:
                check_meta(meta)
            try:
                m, o, meta = self.restore(step, model, optimizer)
            except Exception as e:
                _quiet_closed_loop_errors()
                bad.append((step, _reason(e)))
                continue
            for b, why in bad:
                where = ""
                if move_bad:
                    try:
                        where = f"; moved to {self.quarantine(b)}"
                    except OSError as e:
                        where = f"; could not move it aside ({e})"
                _warn(f"checkpoint {self.step_dir(b)} cannot be restored ({why}){where}; "
                      f"resuming from step {step}")
            return step, m, o, meta, bad
        raise CheckpointError(_none_restores(self.directory, bad))

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, model: Mapping[str, np.ndarray], optimizer: Mapping[str, np.ndarray],
             meta: Mapping[str, Any]) -> bool:
        """Save host arrays for ``step``; returns False if that step is already saved."""
        if step in self._manager.all_steps():
            return False
        args = ocp.args.Composite(
            model=ocp.args.StandardSave(dict(model)),
            optimizer=ocp.args.StandardSave(dict(optimizer)),
            meta=ocp.args.JsonSave(dict(meta)),
        )
        return bool(self._manager.save(step, args=args, force=True))

    def restore(self, step: int, model: Mapping[str, Any], optimizer: Mapping[str, Any]
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
        """Restore ``step`` into host arrays shaped like the given flat targets."""
        args = ocp.args.Composite(
            model=ocp.args.StandardRestore(_abstract(model)),
            optimizer=ocp.args.StandardRestore(_abstract(optimizer)),
            meta=ocp.args.JsonRestore(),
        )
        out = self._manager.restore(step, args=args)
        return dict(out["model"]), dict(out["optimizer"]), dict(out["meta"])

    def restore_model(self, step: int, model: Mapping[str, Any]) -> dict[str, np.ndarray]:
        args = ocp.args.Composite(model=ocp.args.StandardRestore(_abstract(model)))
        return dict(self._manager.restore(step, args=args)["model"])

    def restore_meta(self, step: int) -> dict[str, Any]:
        args = ocp.args.Composite(meta=ocp.args.JsonRestore())
        return dict(self._manager.restore(step, args=args)["meta"])

    def wait(self) -> None:
        """Block until background saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _abstract(flat: Mapping[str, Any]) -> dict[str, np.ndarray]:
    # Host numpy targets: restored arrays come back as numpy and are placed by the caller.
    return {k: v if isinstance(v, np.ndarray) else host_copy(v) for k, v in flat.items()}


def _none_restores(directory: Path, bad: list[tuple[int, str]]) -> str:
    detail = "; ".join(f"{s}: {why}" for s, why in bad[:3])
    return f"no checkpoint under {directory} can be restored ({detail})"


def load_model(run_dir: str | Path, model: nnx.Module, step: int | None = None) -> dict[str, Any]:
    """Load the model state of a training run into ``model`` (in place); returns the meta JSON.

    ``step``: a saved global step (default: the newest checkpoint that restores — a damaged newer
    one is named in a warning and skipped, not moved). Only the ``model`` item is read, so the
    optimiser class need not be known (inference, evaluation, SVR's frozen decoder). Nothing is
    written to the run folder.
    """
    store = CheckpointStore(run_dir, keep=None, async_save=False, read_only=True)
    try:
        steps = [int(step)] if step is not None else sorted(store.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint under {store.directory}")
        state = nnx.state(model)
        target = named_leaves(state)
        bad: list[tuple[int, str]] = []
        for s in steps:
            try:
                restored = store.restore_model(s, target)
                meta = store.restore_meta(s)
            except Exception as e:  # a damaged checkpoint: orbax/tensorstore raise many types
                _quiet_closed_loop_errors()
                bad.append((s, _reason(e)))
                continue
            missing = set(target) - set(restored)
            if missing:
                raise ValueError(f"checkpoint {s} lacks {sorted(missing)[:5]}")
            for b, why in bad:
                _warn(f"checkpoint {store.step_dir(b)} cannot be restored ({why}); using step {s}")
            leaves, treedef = jax.tree.flatten(state)
            new = [jax.numpy.asarray(from_host(restored[name], leaf))
                   for name, leaf in zip(target, leaves)]
            nnx.update(model, jax.tree.unflatten(treedef, new))
            return meta
        if step is not None:
            raise CheckpointError(f"checkpoint {store.step_dir(step)} cannot be restored ({bad[0][1]})")
        raise CheckpointError(_none_restores(store.directory, bad))
    finally:
        store.close()
