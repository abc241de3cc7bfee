"""Load the released TensorFlow 1 checkpoints of IM-NET and google/ldif into impax modules.

The input is a ``{variable name: numpy array}`` dict, as :func:`impax.models.tf_bundle.read_bundle`
returns it (or a checkpoint prefix, read here). Optimiser slots (``…/Adam``, ``…/Adam_1``,
``beta1_power``…) and counters are ignored. Every function checks all names and shapes before
writing anything and raises :class:`TFImportError` naming what is missing, unexpected or
mis-shaped.

**IM-NET, TF1** (czq142857/IM-NET ``IMGAN/model.py::IMAE``, the improved release; "improved"
below): ``tf.train.Saver`` variables

* encoder (``variable_scope("encoder")``): ``encoder/conv_{1..5}/Matrix`` ``[4, 4, 4, in, out]`` and
  ``encoder/conv_{1..5}/bias`` (``ops.conv3d`` always adds a bias); after each of the first four
  convolutions ``tf.contrib.layers.instance_norm`` (centre and scale on, ε = 1e-6), whose variables
  are ``encoder/InstanceNorm/{beta,gamma}``, ``encoder/InstanceNorm_1/…`` … ``InstanceNorm_3``;
* decoder (``variable_scope("simple_net")``): ``simple_net/h{1..7}_lin/{Matrix,bias}``,
  ``Matrix`` ``[in, out]`` (``h1_lin``: ``[3 + z, 8 gf]``), LeakyReLU 0.02, output clipped to [0, 1].

Mapping: TF's conv filters ``[d, h, w, in, out]`` and linear ``[in, out]`` matrices are already
impax's kernel layouts (channels-last, SAME padding of a 4³ stride-2 filter on even sizes pads 1 and 1,
as impax does). The decoder is impax's ``"pytorch"`` layout with ``output="clip"``; the encoder
uses ``norm_eps=1e-6``. The biases of ``conv_1..conv_4`` are dropped: a per-channel constant is
removed exactly by the instance norm that follows. The instance norms' learned scale and offset go
to ``norm_k_scale``/``norm_k_bias`` of an encoder with ``IMNetConfig.norm_affine=True``, which
:func:`import_imnet_tf1` sets when they are not the identity; :func:`imnet_tf1_stock_exact` says
whether the stock encoder suffices.

**IM-NET, original TF1 implicit decoder** (czq142857/implicit-decoder, the CVPR 2019 code;
"original"): ``simple_net/h1_lin`` (``[3 + z, 16 gf]``), ``h4_lin`` … ``h8_lin`` with ``[h, xyz, z]``
skip concatenations and a sigmoid — impax's ``"tf1"`` layout. That code feeds coordinates in
[-1, 1] (twice IM-NET's frame), so the xyz rows of every layer are doubled on import, which makes
the decoder exact in impax's (-0.5, 0.5) frame. Its encoder uses batch norm
(``encoder/BatchNorm*``), which impax's encoder does not have: only the decoder is imported.

**google/ldif** (``ldif/model/model.py``, network ``imp_net``):

* local decoder, ``imp_net/eval_implicit_parameters/all_elements/OccNet/`` (``nets/occnet.py``):
  ``sample_resize_fc``, per residual layer ``fc_resnet_layer_{i}/{cbn_1,fc_1,cbn_2,fc_2}``,
  ``final_cbn``, ``final_activation``; each fully connected layer is
  ``…/fully_connected/{weights [in, out], biases}``, each CBN ``…/{beta_fc,gamma_fc}/fully_connected/…``
  plus ``running_mean`` / ``running_variance`` ``[1]`` — the arrays of ``extracted.occnet``
  (:func:`ldif_decoder_weights`, the same walk as LDIF's ``write_occnet_file``).
* explicit-parameter encoder, ``imp_net/forward/explicit_embedding_cnn/`` (``nets/cnn.py``,
  ``early_fusion_cnn`` with ``cnna='s50'``): slim ``resnet_v2_50/…`` (``conv1``, ``block{b}/unit_{u}/
  bottleneck_v2/{preact,shortcut,conv1[/BatchNorm],conv2[/BatchNorm],conv3}``, ``postnorm``,
  ``logits``) then ``fully_connected``, ``fully_connected_1``, ``fully_connected_2``
  (:func:`assign_ldif_depth_encoder`, into :class:`~impax.models.ldif_encoders.DepthEncoder`).
* the local PointNet, ``imp_net/forward/implicit_embedding_net/pointnet/`` (``pointnet_depr``
  without learned transforms): ``mlp_block_1/conv{1,2}``, ``mlp_block_2/conv{1,2,3}`` (1×1 convs,
  ``[1, 1, in, out]``), ``final_mlp/{fc1,fc2,final_fc}`` (:func:`assign_pointnet`).

Slim batch norms map ``beta, gamma, moving_mean, moving_variance`` → ``bias, scale, mean, var``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from impax.models.imnet import IMNetAE, IMNetConfig, VoxelEncoder

Arrays = Mapping[str, np.ndarray]

#: Name endings of optimiser slots and bookkeeping variables (never weights).
_SLOT = re.compile(r"(/Adam(_\d+)?|/Momentum|/RMSProp(_\d+)?|/ExponentialMovingAverage)$")
_BOOKKEEPING = {"beta1_power", "beta2_power", "global_step", "Variable", "_CHECKPOINTABLE_OBJECT_GRAPH"}

LDIF_NETWORK = "imp_net"
LDIF_DECODER_SCOPE = "imp_net/eval_implicit_parameters/all_elements/OccNet/"
LDIF_ENCODER_SCOPE = "imp_net/forward/explicit_embedding_cnn/"
LDIF_LOCAL_SCOPE = "imp_net/forward/implicit_embedding_net/"


class TFImportError(ValueError):
    """Checkpoint variables that do not fit the impax module (missing, unexpected, mis-shaped)."""


def load_arrays(source: str | os.PathLike | Arrays) -> dict[str, np.ndarray]:
    """A ``{name: array}`` dict from a checkpoint prefix (or its folder / ``.index``) or a mapping."""
    if isinstance(source, (str, os.PathLike)):
        from impax.models.tf_bundle import read_bundle

        return read_bundle(source)
    return {k: np.asarray(v) for k, v in source.items()}


def weight_names(arrays: Arrays) -> list[str]:
    """The names that are weights (optimiser slots and counters left out)."""
    return [n for n in arrays if n not in _BOOKKEEPING and not _SLOT.search(n) and not n.endswith("_power")]


def _value_shape(var: nnx.Variable) -> tuple[int, ...]:
    return tuple(var.get_value().shape)


Entry = tuple[nnx.Variable, Callable[[np.ndarray], np.ndarray]]


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _squeeze_1x1(a: np.ndarray) -> np.ndarray:
    """A 1×1 convolution filter ``[1, 1, in, out]`` → a dense kernel ``[in, out]``."""
    return a.reshape(a.shape[-2], a.shape[-1]) if a.ndim == 4 and a.shape[:2] == (1, 1) else a


def _assign(entries: Mapping[str, Entry], arrays: Arrays, scope: str, what: str,
            ignore: Callable[[str], bool] | None = None) -> None:
    """Check every mapped name and shape, and that no other weight lives under ``scope``; then write."""
    missing = [n for n in entries if n not in arrays]
    known = set(entries)
    unexpected = [n for n in weight_names(arrays) if n.startswith(scope) and n not in known
                  and not (ignore and ignore(n))]
    bad, converted = [], {}
    for name, (var, conv) in entries.items():
        if name not in arrays:
            continue
        value = conv(np.asarray(arrays[name], np.float32))
        want = _value_shape(var)
        if value.shape != want and value.size == int(np.prod(want)) and value.ndim <= 1 and len(want) <= 1:
            value = value.reshape(want)  # [1] running statistics → scalar
        if value.shape != want:
            bad.append(f"{name} is {list(np.shape(arrays[name]))}, impax needs {list(want)}")
        converted[name] = value
    if missing or unexpected or bad:
        parts = [f"cannot load {what}"]
        if missing:
            parts.append(f"missing {len(missing)} variable(s): {', '.join(missing[:6])}"
                         + (" ..." if len(missing) > 6 else ""))
        if unexpected:
            parts.append(f"unexpected: {', '.join(unexpected[:6])}" + (" ..." if len(unexpected) > 6 else ""))
        if bad:
            parts.append("shape mismatch: " + "; ".join(bad[:4]) + (" ..." if len(bad) > 4 else ""))
        raise TFImportError("; ".join(parts))
    for name, (var, _) in entries.items():
        var.set_value(jnp.asarray(converted[name], jnp.float32))


def _need(arrays: Arrays, name: str, what: str) -> np.ndarray:
    if name not in arrays:
        raise TFImportError(f"not {what}: the checkpoint has no variable {name!r}")
    return np.asarray(arrays[name])


# ----------------------------------------------------------------------------------------------
# IM-NET TF1


def imnet_tf1_variant(arrays: Arrays) -> str:
    """``"improved"`` (IM-NET repo: ``simple_net/h7_lin`` last) or ``"original"`` (implicit-decoder
    repo: ``simple_net/h8_lin`` last)."""
    if "simple_net/h8_lin/Matrix" in arrays:
        return "original"
    if "simple_net/h7_lin/Matrix" in arrays:
        return "improved"
    raise TFImportError("not an IM-NET TF1 checkpoint: no simple_net/h7_lin/Matrix or simple_net/h8_lin/Matrix "
                        f"(its variables start {sorted(weight_names(arrays))[:4]})")


def imnet_tf1_config(arrays: Arrays) -> IMNetConfig:
    """The :class:`IMNetConfig` whose shapes the checkpoint has (see the module docstring)."""
    variant = imnet_tf1_variant(arrays)
    w1 = _need(arrays, "simple_net/h1_lin/Matrix", "an IM-NET TF1 checkpoint")
    z = int(w1.shape[0]) - 3
    enc = arrays.get("encoder/conv_1/Matrix")
    ef = int(np.shape(enc)[-1]) if enc is not None else IMNetConfig().ef_dim
    if variant == "improved":
        gf = int(_need(arrays, "simple_net/h6_lin/Matrix", "an IM-NET TF1 checkpoint").shape[1])
        return IMNetConfig(layout="pytorch", z_dim=z, ef_dim=ef, gf_dim=gf, norm_eps=1e-6, output="clip")
    gf = int(_need(arrays, "simple_net/h7_lin/Matrix", "an IM-NET TF1 checkpoint").shape[1])
    return IMNetConfig(layout="tf1", z_dim=z, ef_dim=ef, gf_dim=gf, norm_eps=1e-6, output="sigmoid")


def _imnet_decoder_names(variant: str) -> list[str]:
    return [f"h{i}_lin" for i in (range(1, 8) if variant == "improved" else (1, 4, 5, 6, 7, 8))]


def assign_imnet_tf1_decoder(decoder: Any, arrays: Arrays) -> Any:
    """Copy ``simple_net/*`` into an :class:`~impax.models.imnet.ImplicitDecoder` (in place); the
    original variant's xyz rows are doubled (its coordinates are in [-1, 1])."""
    variant = imnet_tf1_variant(arrays)
    want = "pytorch" if variant == "improved" else "tf1"
    if decoder.cfg.layout != want:
        raise TFImportError(f"the {variant} IM-NET TF1 decoder needs the {want!r} layout, not {decoder.cfg.layout!r}")
    names = _imnet_decoder_names(variant)
    if len(names) != len(decoder.layers):
        raise TFImportError(f"decoder depth differs: checkpoint {len(names)} layers, impax {len(decoder.layers)}")
    entries: dict[str, Entry] = {}
    skips = decoder.cfg.decoder_skip_layers()
    widths = decoder.cfg.decoder_widths()
    for i, (n, layer) in enumerate(zip(names, decoder.layers)):
        conv = _same
        if variant == "original" and i in skips:
            off = 0 if i == 0 else widths[i - 1]

            def conv(w: np.ndarray, off: int = off) -> np.ndarray:
                w = w.copy()
                w[off:off + 3] *= 2.0
                return w
        entries[f"simple_net/{n}/Matrix"] = (layer.kernel, conv)
        entries[f"simple_net/{n}/bias"] = (layer.bias, _same)
    _assign(entries, arrays, "simple_net/", "the IM-NET TF1 decoder")
    return decoder


_NORMS = ("InstanceNorm", "InstanceNorm_1", "InstanceNorm_2", "InstanceNorm_3")


def imnet_tf1_norm_params(arrays: Arrays) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(gamma, beta)`` of the encoder's four instance norms (identity where a checkpoint lacks them)."""
    out = []
    for k, norm in enumerate(_NORMS):
        conv = arrays.get(f"encoder/conv_{k + 1}/Matrix")
        c = int(np.shape(conv)[-1]) if conv is not None else 0
        g = np.asarray(arrays.get(f"encoder/{norm}/gamma", np.ones(c)), np.float32)
        b = np.asarray(arrays.get(f"encoder/{norm}/beta", np.zeros(c)), np.float32)
        out.append((g, b))
    return out


def imnet_tf1_stock_exact(arrays: Arrays, atol: float = 0.0) -> tuple[bool, str]:
    """Whether the stock :class:`~impax.models.imnet.VoxelEncoder` reproduces the checkpoint's
    encoder: true when every instance norm's ``gamma`` is 1 and ``beta`` 0 (within ``atol``).
    Returns ``(ok, reason)``."""
    if imnet_tf1_variant(arrays) == "original":
        return False, "the original implicit-decoder encoder uses batch norm (encoder/BatchNorm*), which impax's " \
                      "IM-NET encoder does not have"
    for norm, (g, b) in zip(_NORMS, imnet_tf1_norm_params(arrays)):
        dev = max(float(np.max(np.abs(g - 1.0), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
        if dev > atol:
            return False, (f"encoder/{norm} has a learned scale/offset (largest deviation from the identity "
                           f"{dev:.3g}), which impax's IM-NET encoder (instance norm without affine) cannot hold")
    return True, ""


def assign_imnet_tf1_encoder(encoder: VoxelEncoder, arrays: Arrays) -> VoxelEncoder:
    """Copy ``encoder/*`` into a :class:`VoxelEncoder` (in place; with ``cfg.norm_affine`` the
    norms' ``gamma``/``beta`` too).

    An encoder without ``norm_affine`` is refused (:class:`TFImportError`) when the checkpoint's instance norms are
    not the identity; the biases of ``conv_1..conv_4`` are ignored (cancelled by the norms)."""
    if imnet_tf1_variant(arrays) == "original":
        raise TFImportError(imnet_tf1_stock_exact(arrays)[1])
    affine = bool(encoder.cfg.norm_affine)
    if not affine:
        ok, why = imnet_tf1_stock_exact(arrays)
        if not ok:
            raise TFImportError(why)
    entries: dict[str, Entry] = {}
    for k in range(1, 6):
        conv = getattr(encoder, f"conv_{k}")
        entries[f"encoder/conv_{k}/Matrix"] = (conv.kernel, _same)
    entries["encoder/conv_5/bias"] = (encoder.conv_5.bias, _same)
    if affine:
        for k, norm in enumerate(_NORMS, start=1):
            entries[f"encoder/{norm}/gamma"] = (getattr(encoder, f"norm_{k}_scale"), _same)
            entries[f"encoder/{norm}/beta"] = (getattr(encoder, f"norm_{k}_bias"), _same)

    def ignore(n: str) -> bool:
        return bool(re.fullmatch(r"encoder/conv_[1-4]/bias", n)) or (
            not affine and bool(re.fullmatch(r"encoder/InstanceNorm(_\d)?/(gamma|beta)", n)))

    _assign(entries, arrays, "encoder/", "the IM-NET TF1 encoder", ignore)
    return encoder


def import_imnet_tf1(source: str | os.PathLike | Arrays, cfg: IMNetConfig | None = None, *, seed: int = 0,
                     stock: bool = False) -> IMNetAE:
    """An :class:`IMNetAE` holding an IM-NET TF1 ``IMAE`` checkpoint (prefix or ``{name: array}``).

    Exact: the config has ``norm_affine=True`` (instance norms with a learned scale/offset) when
    the checkpoint's norms are not the identity. ``stock=True`` insists on the stock encoder (raises when it would not be exact).
    An original implicit-decoder checkpoint gives a model whose decoder alone is imported (its
    encoder stays at its initial values); check :func:`imnet_tf1_variant` first."""
    arrays = load_arrays(source)
    cfg = imnet_tf1_config(arrays) if cfg is None else cfg
    improved = imnet_tf1_variant(arrays) == "improved"
    if improved and not stock and not imnet_tf1_stock_exact(arrays)[0]:
        cfg = dataclasses.replace(cfg, norm_affine=True)
    model = IMNetAE(cfg, rngs=nnx.Rngs(seed))
    assign_imnet_tf1_decoder(model.generator, arrays)
    if improved:
        assign_imnet_tf1_encoder(model.encoder, arrays)
    return model


# ----------------------------------------------------------------------------------------------
# google/ldif


def find_scope(arrays: Arrays, suffix: str) -> str | None:
    """The prefix before ``suffix`` of the first name ending with it (``None`` if none does)."""
    for n in sorted(arrays):
        if n.endswith(suffix):
            return n[: -len(suffix)]
    return None


def ldif_decoder_weights(arrays: Arrays, scope: str | None = None) -> dict[str, np.ndarray]:
    """The local decoder as an ``extracted.occnet`` weight dict (:func:`impax.models.occnet.weight_layout`
    names) from an LDIF checkpoint. ``scope`` defaults to the one holding ``OccNet/sample_resize_fc``."""
    from impax.models.occnet import weight_layout

    if scope is None:
        found = find_scope(arrays, "sample_resize_fc/fully_connected/weights")
        if found is None:
            raise TFImportError("no LDIF local decoder in the checkpoint (no .../OccNet/sample_resize_fc/"
                                "fully_connected/weights); SIF/SIF++ checkpoints have none")
        scope = found
    w_in = _need(arrays, f"{scope}sample_resize_fc/fully_connected/weights", "an LDIF decoder")
    if w_in.ndim != 2 or w_in.shape[0] != 3:
        raise TFImportError(f"{scope}sample_resize_fc/fully_connected/weights is {list(w_in.shape)}: only 3-d "
                            "sample inputs are supported (the hyo='t' positional encoding is not)")
    width = int(w_in.shape[1])
    latent = int(_need(arrays, f"{scope}final_cbn/beta_fc/fully_connected/weights", "an LDIF decoder").shape[0])
    blocks = 0
    while any(n.startswith(f"{scope}fc_resnet_layer_{blocks}/") for n in arrays):
        blocks += 1

    def tf_name(name: str) -> str:
        parts = name.split(".")
        if parts[0] == "input":
            base = "sample_resize_fc"
        elif parts[0] == "output":
            base = "final_activation"
        elif parts[0] == "cbn_final":
            base = "final_cbn"
        else:
            i = int(parts[0][len("block"):])
            base = f"fc_resnet_layer_{i}/" + {"cbn1": "cbn_1", "cbn2": "cbn_2", "fc1": "fc_1", "fc2": "fc_2"}[parts[1]]
            parts = parts[1:]
        rest = parts[1:]
        if rest[0] in ("beta", "gamma"):
            base += f"/{rest[0]}_fc"
            rest = rest[1:]
        leaf = {"kernel": "fully_connected/weights", "bias": "fully_connected/biases", "mean": "running_mean",
                "var": "running_variance"}[rest[0]]
        return f"{scope}{base}/{leaf}"

    out: dict[str, np.ndarray] = {}
    missing, bad = [], []
    layout = weight_layout(width, latent, blocks)
    mapped = set()
    for name, shape in layout:
        tn = tf_name(name)
        mapped.add(tn)
        if tn not in arrays:
            missing.append(tn)
            continue
        a = np.asarray(arrays[tn], np.float32)
        if a.size != int(np.prod(shape)) or (a.ndim == 2 and a.shape != shape):
            bad.append(f"{tn} is {list(a.shape)}, the decoder needs {list(shape)}")
            continue
        out[name] = a.reshape(shape).copy()
    unexpected = [n for n in weight_names(arrays) if n.startswith(scope) and n not in mapped]
    if missing or bad or unexpected:
        parts = ["cannot load the LDIF local decoder"]
        if missing:
            parts.append(f"missing: {', '.join(missing[:6])}")
        if unexpected:
            parts.append(f"unexpected: {', '.join(unexpected[:6])}")
        if bad:
            parts.append("shape mismatch: " + "; ".join(bad[:4]))
        raise TFImportError("; ".join(parts))
    return out


def _bn_entries(bn: nnx.BatchNorm, tf: str) -> dict[str, Entry]:
    return {f"{tf}/beta": (bn.bias, _same), f"{tf}/gamma": (bn.scale, _same),
            f"{tf}/moving_mean": (bn.mean, _same), f"{tf}/moving_variance": (bn.var, _same)}


def _dense_entries(layer: nnx.Linear, tf: str) -> dict[str, Entry]:
    return {f"{tf}/weights": (layer.kernel, _squeeze_1x1), f"{tf}/biases": (layer.bias, _same)}


def resnet_v2_50_entries(net: Any, scope: str) -> dict[str, Entry]:
    """TF slim ``resnet_v2_50`` names under ``scope`` → the variables of
    :class:`~impax.models.ldif_encoders.ResNet50V2`."""
    r = f"{scope}resnet_v2_50/"
    entries: dict[str, Entry] = {f"{r}conv1/weights": (net.root.kernel, _same),
                                 f"{r}conv1/biases": (net.root.bias, _same)}
    k = 0
    for b, (_, _, count, _) in enumerate(net.BLOCKS, start=1):
        for u in range(1, count + 1):
            unit = net.units[k]
            k += 1
            base = f"{r}block{b}/unit_{u}/bottleneck_v2/"
            entries.update(_bn_entries(unit.preact, f"{base}preact"))
            if unit.shortcut is not None:
                entries[f"{base}shortcut/weights"] = (unit.shortcut.kernel, _same)
                entries[f"{base}shortcut/biases"] = (unit.shortcut.bias, _same)
            entries[f"{base}conv1/weights"] = (unit.conv1.kernel, _same)
            entries.update(_bn_entries(unit.bn1, f"{base}conv1/BatchNorm"))
            entries[f"{base}conv2/weights"] = (unit.conv2.kernel, _same)
            entries.update(_bn_entries(unit.bn2, f"{base}conv2/BatchNorm"))
            entries[f"{base}conv3/weights"] = (unit.conv3.kernel, _same)
            entries[f"{base}conv3/biases"] = (unit.conv3.bias, _same)
    entries.update(_bn_entries(net.postnorm, f"{r}postnorm"))
    entries.update(_dense_entries(net.logits, f"{r}logits"))
    return entries


def assign_ldif_depth_encoder(encoder: Any, arrays: Arrays, scope: str = LDIF_ENCODER_SCOPE) -> Any:
    """Copy LDIF's ``early_fusion_cnn`` (slim ResNet-50 v2 + 3 fully connected layers) into a
    :class:`~impax.models.ldif_encoders.DepthEncoder` with the ``resnet50`` backbone (in place)."""
    from impax.models.ldif_encoders import ResNet50V2

    if not isinstance(encoder.backbone, ResNet50V2):
        raise TFImportError("LDIF's released encoder is the ResNet-50 one: the DepthEncoder needs "
                            "encoder='resnet50'")
    entries = resnet_v2_50_entries(encoder.backbone, scope)
    entries.update(_dense_entries(encoder.fc1, f"{scope}fully_connected"))
    entries.update(_dense_entries(encoder.fc2, f"{scope}fully_connected_1"))
    entries.update(_dense_entries(encoder.out, f"{scope}fully_connected_2"))
    _assign(entries, arrays, scope, "the LDIF explicit-parameter encoder")
    return encoder


def pointnet_entries(net: Any, scope: str) -> dict[str, Entry]:
    """``pointnet_depr`` names (``scope`` ends with ``pointnet/``) → :class:`~impax.models.ldif_encoders.PointNet`."""
    convs = ("mlp_block_1/conv1", "mlp_block_1/conv2", "mlp_block_2/conv1", "mlp_block_2/conv2", "mlp_block_2/conv3")
    entries: dict[str, Entry] = {}
    for tf, layer in zip(convs, net.point_layers):
        entries.update(_dense_entries(layer, f"{scope}{tf}"))
    entries.update(_dense_entries(net.fc1, f"{scope}final_mlp/fc1"))
    entries.update(_dense_entries(net.fc2, f"{scope}final_mlp/fc2"))
    entries.update(_dense_entries(net.out, f"{scope}final_mlp/final_fc"))
    return entries


def assign_pointnet(net: Any, arrays: Arrays, scope: str = LDIF_LOCAL_SCOPE + "pointnet/") -> Any:
    """Copy a ``pointnet_depr`` (no learned transforms) into a :class:`PointNet` (in place); e.g. LDIF's
    local PointNet (the default scope) or the point-cloud encoder's."""
    _assign(pointnet_entries(net, scope), arrays, scope, f"the PointNet under {scope}")
    return net


def ldif_sizes(arrays: Arrays) -> dict[str, Any]:
    """What the LDIF checkpoint's shapes say: decoder width/latent/blocks, element count × explicit
    dof of the encoder output, input channels, PointNet max-pool width and input features."""
    info: dict[str, Any] = {}
    dec = find_scope(arrays, "sample_resize_fc/fully_connected/weights")
    if dec is not None:
        w = ldif_decoder_weights(arrays, dec)
        from impax.models.occnet import infer_sizes

        info["decoder_width"], info["latent_size"], info["decoder_blocks"] = infer_sizes(w)
    root = arrays.get(f"{LDIF_ENCODER_SCOPE}resnet_v2_50/conv1/weights")
    if root is not None:
        info["image_count"] = int(np.shape(root)[2])
    out = arrays.get(f"{LDIF_ENCODER_SCOPE}fully_connected_2/weights")
    if out is not None:
        info["encoder_outputs"] = int(np.shape(out)[-1])
        info["fc_width"] = int(np.shape(out)[0])
    pn = arrays.get(f"{LDIF_LOCAL_SCOPE}pointnet/mlp_block_2/conv3/weights")
    if pn is not None:
        info["pointnet_maxpool_features"] = int(np.shape(pn)[-1])
        first = arrays.get(f"{LDIF_LOCAL_SCOPE}pointnet/mlp_block_1/conv1/weights")
        info["local_point_features"] = int(np.shape(first)[-2]) if first is not None else None
    return info


def assign_ldif_model(model: Any, arrays: Arrays) -> Any:
    """Copy an LDIF checkpoint into an :class:`~impax.models.ldif_model.LdifModel` (in place):
    the depth encoder, the local PointNet and the decoder (for a model that has them)."""
    from impax.models.occnet import OccNetDecoder

    assign_ldif_depth_encoder(model.encoder, arrays)
    if model.local is not None:
        assign_pointnet(model.local.net, arrays)
        weights = ldif_decoder_weights(arrays)
        fresh = OccNetDecoder.from_weights(weights, use_running_average=model.decoder.use_running_average)
        nnx.update(model.decoder, nnx.state(fresh))
    return model


__all__ = [
    "TFImportError", "assign_imnet_tf1_decoder", "assign_imnet_tf1_encoder",
    "assign_ldif_depth_encoder", "assign_ldif_model", "assign_pointnet", "find_scope", "imnet_tf1_config",
    "imnet_tf1_norm_params", "imnet_tf1_stock_exact", "imnet_tf1_variant", "import_imnet_tf1", "ldif_decoder_weights",
    "ldif_sizes", "load_arrays", "pointnet_entries", "resnet_v2_50_entries", "weight_names",
]

