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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

CHECKPOINT_DIR = "checkpoints"

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

    def __init__(self, run_dir: str | Path, keep: int | None = 2, async_save: bool = True):
        self.directory = Path(run_dir).absolute() / CHECKPOINT_DIR
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

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


def load_model(run_dir: str | Path, model: nnx.Module, step: int | None = None) -> dict[str, Any]:
    """Load the model state of a training run into ``model`` (in place); returns the meta JSON.

    ``step``: a saved global step (default the latest). Only the ``model`` item is read, so the
    optimiser class need not be known (inference, evaluation, SVR's frozen decoder).
    """
    store = CheckpointStore(run_dir, keep=None, async_save=False)
    try:
        if step is None:
            step = store.latest_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint under {store.directory}")
        state = nnx.state(model)
        target = named_leaves(state)
        restored = store.restore_model(step, target)
        missing = set(target) - set(restored)
        if missing:
            raise ValueError(f"checkpoint {step} lacks {sorted(missing)[:5]}")
        leaves, treedef = jax.tree.flatten(state)
        new = [jax.numpy.asarray(from_host(restored[name], leaf))
               for name, leaf in zip(target, leaves)]
        nnx.update(model, jax.tree.unflatten(treedef, new))
        return store.restore_meta(step)
    finally:
        store.close()
