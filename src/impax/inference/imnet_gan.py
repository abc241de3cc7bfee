"""IM-GAN inference: sample new shapes from an ``imnet-gan`` run.

Follows IM-NET's generation flow (TF1 ``IMAE.test_z``: draw noise N(0, 0.2²)^128, run the
generator, decode each code with the IM-AE decoder, mesh the 0.5 level set), with impax's
multi-resolution extractor (:func:`impax.inference.imnet.extract`). Meshes stay in the IM-NET frame
(centred bounding box, unit diagonal): a sampled shape has no original frame.

Scoring the samples (non-empty fraction, COV / MMD / 1-NNA against the AE's training shapes) is
evaluation: :mod:`impax.evaluation.gan`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from impax.configs import from_dict
from impax.inference.imnet_decode import EMPTY_REASON, DecoderQuery, extract, load_ae
from impax.models.imnet_gan import GANConfig, LatentGAN
from impax.train.checkpoint import load_model
from impax.train.runs import read_run


@dataclasses.dataclass(frozen=True)
class GANRun:
    """What sampling needs of an ``imnet-gan`` run's ``run.json``: the networks' config and the IM-AE
    run that decodes the codes (``""``: none known)."""

    gan: GANConfig
    ae_run: str = ""

    @classmethod
    def from_run_json(cls, info: Mapping[str, Any]) -> GANRun:
        c = info["config"]
        return cls(from_dict(GANConfig, c["gan"]), str(c.get("ae_run") or ""))


def load_gan(run: str | Path) -> tuple[LatentGAN, GANRun, dict[str, Any]]:
    """``(LatentGAN with the newest checkpoint's parameters, its GANRun, run.json)``, rebuilt from
    ``run.json``."""
    info = read_run(run)
    if info.get("recipe") != "imnet-gan":
        raise ValueError(f"{run}: an imnet-gan run is needed, run.json says {info.get('recipe')!r}")
    spec = GANRun.from_run_json(info)
    model = LatentGAN(spec.gan, rngs=nnx.Rngs(0))
    load_model(run, model)
    return model, spec, info


def generate_codes(model: Any, cfg: Any, count: int, seed: int = 0) -> np.ndarray:
    """``count`` latent codes ``[count, z_dim]`` from the generator, noise drawn from ``seed``."""
    import jax

    from impax.models.imnet_gan import sample_noise

    if count <= 0:
        return np.zeros((0, cfg.gan.z_dim), np.float32)
    noise = sample_noise(jax.random.key(int(seed)), int(count), cfg.gan)
    return np.asarray(model.generator(noise), np.float32)


def decode_and_save(ae: Any, zs: np.ndarray, out: Path, resolution: int, mesh_format: str,
                     prefix: str = "sample") -> tuple[list[dict[str, Any]], list[Any]]:
    from impax.inference.extract import save_row

    out.mkdir(parents=True, exist_ok=True)
    query = DecoderQuery(ae.generator)
    rows, meshes = [], []
    for k, z in enumerate(zs):
        t0 = time.perf_counter()
        row: dict[str, Any] = {"id": f"{prefix}_{k:03d}", "path": None, "ok": False, "frame": "imnet"}
        mesh = None
        try:
            res = extract(query, z, resolution)
            save_row(row, res, out / f"{prefix}_{k:03d}.{mesh_format}", empty_reason=EMPTY_REASON)
            mesh = None if res.empty else res.mesh
        except Exception as e:  # one bad sample must not stop the batch
            row["reason"] = f"{type(e).__name__}: {e}".splitlines()[0]
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
        meshes.append(mesh)
    return rows, meshes


def sample(run: str | Path, count: int, out: str | Path, seed: int = 0, resolution: int = 128,
           mesh_format: str = "ply", **kw: Any) -> list[dict[str, Any]]:
    """``count`` new shapes of an ``imnet-gan`` run: ``out/sample_<k:03d>.<mesh_format>`` in the
    IM-NET frame, one row each ``{"id", "path", "ok", "queries", "seconds", "faces", ...}``
    (``ok`` False with a ``reason`` for an empty mesh). Same ``seed``, same shapes."""
    model, cfg, _ = load_gan(run)
    if not cfg.ae_run:
        raise ValueError(f"{run}: run.json names no imnet-ae run to decode the codes")
    ae, _ = load_ae(cfg.ae_run)
    zs = generate_codes(model, cfg, count, seed)
    rows, _ = decode_and_save(ae, zs, Path(out), resolution, mesh_format)
    return rows


__all__: Sequence[str] = ("GANRun", "load_gan", "generate_codes", "sample")
