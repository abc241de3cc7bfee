"""Weights that ship with impax, and starting a run from another run's weights (``--init-from``).

Each shipped model is a folder ``impax/train/pretrained/<name>/`` with

* ``weights.npz`` — the model's state as ``{"dotted.path": array}`` (the names of
  :func:`impax.train.checkpoint.named_leaves`; float32, read with ``allow_pickle=False``);
* ``run.json`` — the ``run.json`` of the training run that made them (recipe, preset, full config,
  seed);
* ``provenance.json`` — how they were made: the exact commands (data, training), the data recipe,
  seed, steps, training time, machine and the IoU measured then (``scripts/export_pretrained.py``
  writes it from the run folder).

impax's own commands trained every one of them, on shapes of the ``pretrain`` random stream of
:func:`impax.geometry.shapes.generate` — a stream no ``impax shapes``/``impax demo`` seed draws from.

``--init-from SOURCE`` (``impax train``) copies a model's weights into a new run before its first
step: ``SOURCE`` is ``pretrained:<name>`` or a run folder with checkpoints; the model structures
(names and shapes of every array) must match. Optimiser state and data position start fresh.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from impax.data.store import file_sha256

PREFIX = "pretrained:"
ROOT = Path(__file__).resolve().parent
WEIGHTS = "weights.npz"


def available() -> list[str]:
    """Names of the shipped models (folders holding a ``weights.npz``)."""
    return sorted(p.parent.name for p in ROOT.glob(f"*/{WEIGHTS}"))


def folder(name: str) -> Path:
    d = ROOT / name
    if not (d / WEIGHTS).is_file():
        raise ValueError(f"no shipped model {name!r}; available: {', '.join(available()) or 'none'}")
    return d


def read(name: str) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """``(arrays, run_json, provenance)`` of a shipped model."""
    d = folder(name)
    with np.load(d / WEIGHTS, allow_pickle=False) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files}
    run = json.loads((d / "run.json").read_text())
    prov_file = d / "provenance.json"
    prov = json.loads(prov_file.read_text()) if prov_file.is_file() else {}
    return arrays, run, prov


def write(name: str, arrays: Mapping[str, np.ndarray], run: Mapping[str, Any], provenance: Mapping[str, Any],
          root: Path = ROOT) -> Path:
    """Write a shipped model's folder (used by ``scripts/export_pretrained.py``)."""
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(d / WEIGHTS, **{k: np.asarray(v) for k, v in arrays.items()})
    (d / "run.json").write_text(json.dumps(run, indent=2, sort_keys=True) + "\n")
    prov = dict(provenance)
    prov["weights_sha256"] = file_sha256(d / WEIGHTS)
    (d / "provenance.json").write_text(json.dumps(prov, indent=2, sort_keys=True) + "\n")
    return d


def source_arrays(source: str, like: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """The model arrays, ``run.json`` and a JSON record of ``source`` (``pretrained:<name>`` or a run
    folder with checkpoints); ``like``: the target's named leaves (what a checkpoint is read as)."""
    if source.startswith(PREFIX):
        name = source[len(PREFIX):]
        arrays, run, prov = read(name)
        return arrays, run, {"source": source, "weights_sha256": file_sha256(folder(name) / WEIGHTS),
                             "made_by": prov.get("commands", {})}
    from impax.train.checkpoint import CheckpointStore

    run_dir = Path(source)
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        raise ValueError(f"--init-from {source}: not a training run (no run.json) and not pretrained:<name>")
    store = CheckpointStore(run_dir, keep=None, async_save=False)
    try:
        step = store.latest_step()
        if step is None:
            raise ValueError(f"--init-from {source}: the run has no checkpoint yet")
        try:
            arrays = {k: np.asarray(v) for k, v in store.restore_model(step, like).items()}
        except Exception as e:  # orbax's messages are long; the cause is a structure mismatch
            first = " ".join(str(e).split())[:200]
            raise ValueError(f"--init-from {source}: its checkpoint does not fit this model ({first})") from None
    finally:
        store.close()
    return arrays, json.loads(run_file.read_text()), {"source": str(run_dir.absolute()), "step": int(step)}


def load_into(model: Any, source: str) -> dict[str, Any]:
    """Copy the weights of ``source`` into ``model`` (in place); returns the record for ``run.json``.

    Every array of the model must be in the source with the same shape (else a ``ValueError``
    naming the first difference)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from impax.train.checkpoint import named_leaves

    state = nnx.state(model)
    names = named_leaves(state)
    arrays, _, record = source_arrays(source, {k: np.asarray(v) for k, v in names.items()})
    leaves, treedef = jax.tree.flatten(state)
    new = []
    for (name, leaf) in zip(names, leaves):
        if name not in arrays:
            raise ValueError(f"--init-from {source}: it has no array {name!r} (a different model structure)")
        a = arrays[name]
        if tuple(a.shape) != tuple(np.shape(leaf)):
            raise ValueError(f"--init-from {source}: {name!r} is {tuple(a.shape)} there and {tuple(np.shape(leaf))} "
                             "here (a different model size)")
        new.append(jnp.asarray(a, dtype=leaf.dtype))
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return record
