"""Load released IM-NET-pytorch weights (czq142857/IM-NET-pytorch checkpoints) into impax modules.

IM-NET-pytorch saves ``im_network.state_dict()`` with ``torch.save``:

* AE (``IM_AE.model64-*.pth``): ``encoder.conv_{1..4}.weight`` ``[out, in, 4, 4, 4]`` (no bias),
  ``encoder.conv_5.{weight,bias}``, and ``generator.linear_{1..7}.{weight,bias}`` (``weight``
  ``[out, in]``, e.g. ``generator.linear_1.weight`` ``[1024, 259]``); the instance norms hold no
  state.
* SVR (``IM_SVR.model-*.pth``): ``img_encoder.conv_0.weight``, ``img_encoder.bn_0.*``,
  ``img_encoder.res_{1..8}.{conv_1,bn_1,conv_2,bn_2[,conv_s,bn_s]}.*``, ``img_encoder.conv_9.weight``,
  ``img_encoder.bn_9.*``, ``img_encoder.conv_10.{weight,bias}``, plus the same ``generator.*``.
  Batch norms carry ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``.

Layout conversions: ``Linear.weight [out, in] → kernel [in, out]``; ``ConvNd.weight
[out, in, *k] → kernel [*k, in, out]`` (channels-last, spatial axes kept in order, so voxel axis
``d`` of impax is axis ``d`` of IM-NET's ``[64, 64, 64]`` arrays); BN ``weight/bias/running_mean/
running_var → scale/bias/mean/var``. Only the ``"pytorch"`` decoder layout has PyTorch weights.

Torch is an optional dependency: it is imported only to read a ``.pth`` file
(``torch.load(path, map_location="cpu", weights_only=True)``); an already-loaded mapping of numpy
arrays (or tensors) needs no torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from impax.models.imnet import IMNET_PYTORCH, IMNetAE, IMNetConfig, ImplicitDecoder, VoxelEncoder
from impax.models.imnet_svr import ImageEncoder, SVRConfig

StateDict = Mapping[str, Any]


class WeightImportError(ValueError):
    """A state dict does not match the impax module: lists missing, unexpected and mis-shaped names."""


def load_state_dict(source: str | os.PathLike | StateDict) -> dict[str, np.ndarray]:
    """A flat ``{name: float32/int numpy array}`` from a ``.pth`` path or an existing mapping.

    A ``"module."`` prefix (``nn.DataParallel``) is stripped; a checkpoint that wraps the state dict
    under ``"state_dict"`` or ``"model"`` is unwrapped.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint file")
        try:
            import torch
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("reading a .pth checkpoint needs torch (pip install 'impax[torch]'); "
                              "or pass a dict of numpy arrays") from e
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    else:
        data = source
    if not isinstance(data, Mapping):
        raise WeightImportError(f"expected a state dict (mapping of names to arrays), got {type(data).__name__}")
    for wrapper in ("state_dict", "model"):
        if wrapper in data and isinstance(data[wrapper], Mapping):
            data = data[wrapper]
    out: dict[str, np.ndarray] = {}
    for name, value in data.items():
        key = name[len("module."):] if name.startswith("module.") else name
        out[key] = _to_numpy(value)
    return out


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


# ----------------------------------------------------------------------------------------------
# name maps: torch name -> (impax variable, converter)


def _linear_t(w: np.ndarray) -> np.ndarray:
    return w.T


def _conv_t(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))


def _identity(w: np.ndarray) -> np.ndarray:
    return w


def _decoder_entries(dec: ImplicitDecoder, prefix: str) -> dict[str, tuple[nnx.Variable, Any]]:
    if dec.cfg.layout != "pytorch":
        raise WeightImportError(f"IM-NET-pytorch weights need the 'pytorch' decoder layout, not {dec.cfg.layout!r}")
    entries = {}
    for i, layer in enumerate(dec.layers):
        entries[f"{prefix}linear_{i + 1}.weight"] = (layer.kernel, _linear_t)
        entries[f"{prefix}linear_{i + 1}.bias"] = (layer.bias, _identity)
    return entries


def _encoder_entries(enc: VoxelEncoder, prefix: str) -> dict[str, tuple[nnx.Variable, Any]]:
    entries = {}
    for i in range(1, 6):
        conv = getattr(enc, f"conv_{i}")
        entries[f"{prefix}conv_{i}.weight"] = (conv.kernel, _conv_t)
        if conv.bias is not None:
            entries[f"{prefix}conv_{i}.bias"] = (conv.bias, _identity)
    return entries


def _bn_entries(bn: nnx.BatchNorm, name: str) -> dict[str, tuple[nnx.Variable, Any]]:
    return {f"{name}.weight": (bn.scale, _identity), f"{name}.bias": (bn.bias, _identity),
            f"{name}.running_mean": (bn.mean, _identity), f"{name}.running_var": (bn.var, _identity)}


def _image_encoder_entries(enc: ImageEncoder, prefix: str) -> dict[str, tuple[nnx.Variable, Any]]:
    entries = {f"{prefix}conv_0.weight": (enc.conv_0.kernel, _conv_t)}
    entries.update(_bn_entries(enc.bn_0, f"{prefix}bn_0"))
    for i in range(1, 9):
        block = getattr(enc, f"res_{i}")
        names = ("1", "2", "s") if block.down else ("1", "2")
        for n in names:
            entries[f"{prefix}res_{i}.conv_{n}.weight"] = (getattr(block, f"conv_{n}").kernel, _conv_t)
            entries.update(_bn_entries(getattr(block, f"bn_{n}"), f"{prefix}res_{i}.bn_{n}"))
    entries[f"{prefix}conv_9.weight"] = (enc.conv_9.kernel, _conv_t)
    entries.update(_bn_entries(enc.bn_9, f"{prefix}bn_9"))
    entries[f"{prefix}conv_10.weight"] = (enc.conv_10.kernel, _conv_t)
    entries[f"{prefix}conv_10.bias"] = (enc.conv_10.bias, _identity)
    return entries


def _assign(entries: dict[str, tuple[nnx.Variable, Any]], state: Mapping[str, np.ndarray], prefixes: tuple[str, ...],
            what: str) -> None:
    """Check every name and shape first, then write; ignore ``num_batches_tracked`` counters."""
    missing = [k for k in entries if k not in state]
    unexpected = [k for k in state if k.startswith(prefixes) and k not in entries
                  and not k.endswith(".num_batches_tracked")]
    bad = []
    converted = {}
    for name, (var, conv) in entries.items():
        if name not in state:
            continue
        value = conv(np.asarray(state[name], np.float32))
        if value.shape != tuple(var[...].shape):
            bad.append(f"{name}: checkpoint {tuple(state[name].shape)} → {value.shape}, impax {tuple(var[...].shape)}")
        converted[name] = value
    if missing or unexpected or bad:
        lines = [f"cannot load {what}:"]
        if missing:
            lines.append(f"  missing: {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected: {', '.join(unexpected)}")
        if bad:
            lines.append("  shape mismatch: " + "; ".join(bad))
        raise WeightImportError("\n".join(lines))
    for name, (var, _) in entries.items():
        var.set_value(jnp.asarray(converted[name], var[...].dtype))


def assign_decoder(decoder: ImplicitDecoder, state: StateDict, prefix: str = "generator.") -> ImplicitDecoder:
    """Copy ``generator.linear_*`` weights of a state dict into ``decoder`` (in place)."""
    state = load_state_dict(state)
    _assign(_decoder_entries(decoder, prefix), state, (prefix,), "the IM-NET decoder")
    return decoder


def assign_encoder(encoder: VoxelEncoder, state: StateDict, prefix: str = "encoder.") -> VoxelEncoder:
    """Copy ``encoder.conv_*`` weights of a state dict into ``encoder`` (in place)."""
    state = load_state_dict(state)
    _assign(_encoder_entries(encoder, prefix), state, (prefix,), "the IM-NET voxel encoder")
    return encoder


def assign_image_encoder(encoder: ImageEncoder, state: StateDict, prefix: str = "img_encoder.") -> ImageEncoder:
    """Copy ``img_encoder.*`` weights and batch-norm statistics into ``encoder`` (in place)."""
    state = load_state_dict(state)
    _assign(_image_encoder_entries(encoder, prefix), state, (prefix,), "the IM-SVR image encoder")
    return encoder


def infer_config(state: StateDict) -> IMNetConfig:
    """The :class:`IMNetConfig` (pytorch layout) whose shapes a state dict has: ``z_dim`` and
    ``gf_dim`` from ``generator.linear_1``/``linear_6``, ``ef_dim`` from ``encoder.conv_1``."""
    state = load_state_dict(state)
    try:
        w1 = state["generator.linear_1.weight"]
        gf = int(state["generator.linear_6.weight"].shape[0])
    except KeyError as e:
        raise WeightImportError(f"not an IM-NET-pytorch state dict: no {e.args[0]}") from None
    ef = int(state["encoder.conv_1.weight"].shape[0]) if "encoder.conv_1.weight" in state else IMNET_PYTORCH.ef_dim
    return dataclasses.replace(IMNET_PYTORCH, z_dim=int(w1.shape[1]) - IMNET_PYTORCH.point_dim, gf_dim=gf, ef_dim=ef)


def import_autoencoder(source: str | os.PathLike | StateDict, cfg: IMNetConfig | None = None,
                       *, seed: int = 0) -> IMNetAE:
    """An :class:`IMNetAE` holding the weights of an IM-NET-pytorch AE checkpoint (``.pth`` path or
    state dict). ``cfg`` defaults to :func:`infer_config` of the checkpoint."""
    state = load_state_dict(source)
    cfg = infer_config(state) if cfg is None else cfg
    model = IMNetAE(cfg, rngs=nnx.Rngs(seed))
    assign_encoder(model.encoder, state)
    assign_decoder(model.generator, state)
    return model


def import_svr(source: str | os.PathLike | StateDict, cfg: IMNetConfig | None = None,
               svr_cfg: SVRConfig | None = None, *, seed: int = 0) -> tuple[ImageEncoder, ImplicitDecoder]:
    """``(image encoder, decoder)`` from an IM-NET-pytorch SVR checkpoint; the image encoder is
    returned in eval mode (running batch-norm statistics), as used for inference."""
    state = load_state_dict(source)
    cfg = infer_config(state) if cfg is None else cfg
    if svr_cfg is None:
        svr_cfg = SVRConfig(z_dim=cfg.z_dim, img_ef_dim=int(state["img_encoder.conv_0.weight"].shape[0])
                            if "img_encoder.conv_0.weight" in state else SVRConfig().img_ef_dim)
    rngs = nnx.Rngs(seed)
    encoder = ImageEncoder(svr_cfg, rngs=rngs)
    decoder = ImplicitDecoder(cfg, rngs=rngs)
    assign_image_encoder(encoder, state)
    assign_decoder(decoder, state)
    encoder.eval()
    return encoder, decoder
