"""IM-NET models: shapes and parameter counts against the original layer lists, forwards against
independent numpy implementations (test_imnet_reference.py), losses against their formulas.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import test_imnet_reference as ref
from impax.configs import from_dict, to_dict
from impax.models.imnet import (IMNET_PYTORCH, IMNET_TF1, IMNetAE, IMNetConfig, ImplicitDecoder, VoxelEncoder,
                                ae_loss, count_params, instance_norm, leaky_clip, occupancy_mse, preset)
from impax.models.imnet_svr import ImageEncoder, SVRConfig, images_from_pixels, latent_mse

# ----------------------------------------------------------------------------------------------
# the originals' layer lists (IM-NET-pytorch modelAE.py / modelSVR.py, implicit-decoder IMGAN/model.py),
# written out here independently of the impax modules: (kind, in, out, kernel, bias)

PYTORCH_DECODER = [("fc", 259, 1024, 1, True), ("fc", 1024, 1024, 1, True), ("fc", 1024, 1024, 1, True),
                   ("fc", 1024, 512, 1, True), ("fc", 512, 256, 1, True), ("fc", 256, 128, 1, True),
                   ("fc", 128, 1, 1, True)]
TF1_DECODER = [("fc", 131, 2048, 1, True), ("fc", 2048 + 131, 1024, 1, True), ("fc", 1024 + 131, 512, 1, True),
               ("fc", 512 + 131, 256, 1, True), ("fc", 256 + 131, 128, 1, True), ("fc", 128, 1, 1, True)]
VOXEL_ENCODER = [("conv3", 1, 32, 4, False), ("conv3", 32, 64, 4, False), ("conv3", 64, 128, 4, False),
                 ("conv3", 128, 256, 4, False), ("conv3", 256, 256, 4, True)]


def _resblock(cin, cout):
    layers = [("conv2", cin, cout, 3, False), ("bn", cout, cout, 0, True), ("conv2", cout, cout, 3, False),
              ("bn", cout, cout, 0, True)]
    if cin != cout:
        layers += [("conv2", cin, cout, 1, False), ("bn", cout, cout, 0, True)]
    return layers


IMAGE_ENCODER = ([("conv2", 1, 64, 7, False), ("bn", 64, 64, 0, True)] + _resblock(64, 64) + _resblock(64, 64)
                 + _resblock(64, 128) + _resblock(128, 128) + _resblock(128, 256) + _resblock(256, 256)
                 + _resblock(256, 512) + _resblock(512, 512)
                 + [("conv2", 512, 512, 4, False), ("bn", 512, 512, 0, True), ("conv2", 512, 256, 4, True)])


def _shapes(layers):
    """Parameter shapes in impax's layout (kernel [*k, in, out], bias [out], BN scale+bias [c])."""
    shapes = []
    for kind, cin, cout, k, bias in layers:
        if kind == "bn":
            shapes += [(cout,), (cout,)]
            continue
        nd = {"fc": 0, "conv2": 2, "conv3": 3}[kind]
        shapes.append((k,) * nd + (cin, cout))
        if bias:
            shapes.append((cout,))
    return sorted(shapes)


def _count(layers):
    return int(sum(np.prod(s) for s in _shapes(layers)))


def run(module, *args):
    """``module(*args)`` as one compiled program (faster to compile than op by op)."""
    return np.asarray(nnx.jit(lambda m, *a: m(*a))(module, *args))


def _module_shapes(module):
    return sorted(tuple(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("which", ["decoder", "decoder_tf1", "encoder", "image_encoder"])
def test_parameter_shapes_and_counts_match_the_originals(which):
    rngs = nnx.Rngs(0)
    module, layers = {
        "decoder": lambda: (ImplicitDecoder(IMNET_PYTORCH, rngs=rngs), PYTORCH_DECODER),
        "decoder_tf1": lambda: (ImplicitDecoder(IMNET_TF1, rngs=rngs), TF1_DECODER),
        "encoder": lambda: (VoxelEncoder(IMNET_PYTORCH, rngs=rngs), VOXEL_ENCODER),
        "image_encoder": lambda: (ImageEncoder(SVRConfig(), rngs=rngs), IMAGE_ENCODER),
    }[which]()
    assert _module_shapes(module) == _shapes(layers)
    assert count_params(module) == _count(layers)


def test_decoder_sizes_are_the_papers():
    # IM-NET README: "about 3.05M parameters" for the pytorch/improved decoder; the TF1 one ~3.31M.
    assert abs(_count(PYTORCH_DECODER) - 3.05e6) < 0.01e6
    assert abs(_count(TF1_DECODER) - 3.31e6) < 0.01e6
    assert count_params(ImplicitDecoder(IMNET_PYTORCH, rngs=nnx.Rngs(1))) == _count(PYTORCH_DECODER)


def test_config_presets_and_round_trip():
    assert preset("imnet-pytorch") == IMNetConfig()
    assert IMNET_TF1.layout == "tf1" and IMNET_TF1.z_dim == 128 and IMNET_TF1.output_activation == "sigmoid"
    assert IMNET_PYTORCH.output_activation == "leaky_clip"
    assert from_dict(IMNetConfig, to_dict(IMNET_TF1)) == IMNET_TF1
    with pytest.raises(ValueError):
        IMNetConfig(layout="resnet")
    with pytest.raises(ValueError):
        preset("nope")


# ----------------------------------------------------------------------------------------------
# decoder forward against numpy


def _randomise_decoder(dec, rng, spread=None):
    """He-scale weights, the xyz rows scaled up so outputs vary along the points; with
    ``spread = (points, z)`` the last layer is scaled/shifted so the pre-activations of those inputs
    span about [-1, 2] (all three pieces of the leaky clip)."""
    weights = []
    for i, layer in enumerate(dec.layers):
        n_in, n_out = layer.kernel[...].shape
        w = rng.normal(0, np.sqrt(2.0 / n_in), (n_in, n_out))
        if i in dec.cfg.decoder_skip_layers():
            off = n_in - dec.cfg.point_dim - dec.cfg.z_dim
            w[off:off + 3] *= 20.0
        weights.append([w, rng.normal(0, 0.1, (n_out,))])
    if spread is not None:
        weights[-1][1][:] = 0.0
        out = ref.pytorch_decoder(*spread, weights)
        pre = np.where(out < 0, out / 0.01, np.where(out > 1, (out - 0.99) / 0.01, out))
        a = 3.0 / (pre.max() - pre.min())
        weights[-1][0] *= a
        weights[-1][1][:] = -1.0 - a * pre.min()
    for layer, (w, b) in zip(dec.layers, weights):
        layer.kernel[...] = jnp.asarray(w, jnp.float32)
        layer.bias[...] = jnp.asarray(b, jnp.float32)
    # the reference uses exactly the float32 values the module holds
    return [(np.asarray(w, np.float32).astype(np.float64), np.asarray(b, np.float32).astype(np.float64))
            for w, b in weights]


@pytest.mark.parametrize("cfg,reference", [(IMNET_PYTORCH, ref.pytorch_decoder), (IMNET_TF1, ref.tf1_decoder)],
                         ids=["pytorch", "tf1"])
def test_decoder_forward_matches_numpy(cfg, reference):
    rng = np.random.default_rng(3)
    dec = ImplicitDecoder(cfg, rngs=nnx.Rngs(0))
    points = rng.uniform(-0.5, 0.5, (2, 48, 3)).astype(np.float32)
    z = rng.uniform(0, 1, (2, cfg.z_dim)).astype(np.float32)
    spread = (points.astype(np.float64), z.astype(np.float64)) if cfg.layout == "pytorch" else None
    weights = _randomise_decoder(dec, rng, spread)
    want = reference(points.astype(np.float64), z.astype(np.float64), weights)
    got = run(dec, points, z)
    assert got.shape == (2, 48)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    if cfg.layout == "pytorch":  # the leaky clip's three pieces are all exercised
        assert (want < 0).any() and (want > 1).any() and ((want > 0) & (want < 1)).any()
    # the per-shape path (extraction) gives the same values
    query = dec.for_shape(z[1])
    np.testing.assert_allclose(np.asarray(query(points[1])), want[1], atol=1e-5, rtol=1e-5)


def test_decoder_shapes_are_independent():
    """Shape s's occupancy depends only on z_s: swapping the latents swaps the outputs."""
    rng = np.random.default_rng(4)
    dec = ImplicitDecoder(IMNET_PYTORCH, rngs=nnx.Rngs(0))
    _randomise_decoder(dec, rng)
    pts = np.broadcast_to(rng.uniform(-0.5, 0.5, (1, 16, 3)), (2, 16, 3)).astype(np.float32)
    z = rng.uniform(0, 1, (2, 256)).astype(np.float32)
    a = run(dec, pts, z)
    b = run(dec, pts, np.ascontiguousarray(z[::-1]))
    np.testing.assert_allclose(a, b[::-1], atol=1e-6)
    assert np.abs(a[0] - a[1]).max() > 1e-3


def test_decoder_init_follows_imnet_pytorch():
    dec = ImplicitDecoder(IMNET_PYTORCH, rngs=nnx.Rngs(0))
    w2 = np.asarray(dec.layers[1].kernel[...])
    assert abs(w2.std() - 0.02) < 0.001 and abs(w2.mean()) < 0.001
    assert np.all(np.asarray(dec.layers[1].bias[...]) == 0)
    w7 = np.asarray(dec.layers[6].kernel[...])
    assert w7.shape == (128, 1)


def test_leaky_clip_formula():
    x = np.array([-2.0, -0.5, 0.0, 0.3, 1.0, 1.5, 10.0], np.float32)
    want = np.where(x < 0, 0.01 * x, np.where(x > 1, 0.01 * x + 0.99, x))
    np.testing.assert_allclose(np.asarray(leaky_clip(jnp.asarray(x))), want, atol=1e-7)


def test_decoder_jits_with_split_state():
    """The decoder is usable as a pure function under jax.jit (nnx.split/merge), as the trainer and
    the extractor use it."""
    rng = np.random.default_rng(5)
    dec = ImplicitDecoder(IMNET_PYTORCH, rngs=nnx.Rngs(0))
    weights = _randomise_decoder(dec, rng)
    graphdef, state = nnx.split(dec)

    @jax.jit
    def f(state, pts, z):
        return nnx.merge(graphdef, state)(pts, z)

    pts = rng.uniform(-0.5, 0.5, (1, 8, 3)).astype(np.float32)
    z = rng.uniform(0, 1, (1, 256)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(f(state, pts, z)), ref.pytorch_decoder(pts, z, weights), atol=1e-5)


# ----------------------------------------------------------------------------------------------
# encoders against numpy


def test_instance_norm_matches_numpy():
    x = np.random.default_rng(6).normal(2.0, 3.0, (2, 5, 4, 3, 6)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(instance_norm(jnp.asarray(x))), ref.instance_norm(x), atol=1e-5)


def test_voxel_encoder_matches_numpy():
    rng = np.random.default_rng(7)
    enc = VoxelEncoder(IMNET_PYTORCH, rngs=nnx.Rngs(0))
    enc.conv_5.bias[...] = jnp.asarray(rng.normal(0, 0.5, 256).astype(np.float32))
    # a solid blob plus noise, so every layer sees structure
    g = (np.indices((64, 64, 64)).transpose(1, 2, 3, 0) - 31.5) / 32
    vox = np.stack([(np.linalg.norm(g, axis=-1) < 0.6), rng.uniform(size=(64, 64, 64)) < 0.3]).astype(np.float32)
    got = run(enc, vox)
    convs = [np.asarray(getattr(enc, f"conv_{i}").kernel[...], np.float64) for i in range(1, 6)]
    want = ref.voxel_encoder(vox, convs, np.asarray(enc.conv_5.bias[...], np.float64))
    assert got.shape == (2, 256)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all((got > 0) & (got < 1)) and want.std() > 0.05


def _ref_image_encoder(enc, images):
    """numpy forward of ImageEncoder in eval mode (running statistics), from its parameters."""
    p = lambda v: np.asarray(v[...], np.float64)  # noqa: E731

    def bn(m, x):
        return ref.batch_norm(x, p(m.scale), p(m.bias), p(m.mean), p(m.var))

    x = 1.0 - np.asarray(images, np.float64)[..., None]
    h = ref.lrelu(bn(enc.bn_0, ref.conv(x, p(enc.conv_0.kernel), 2, 3)))
    for i in range(1, 9):
        blk = getattr(enc, f"res_{i}")
        s = 2 if blk.down else 1
        o = ref.lrelu(bn(blk.bn_1, ref.conv(h, p(blk.conv_1.kernel), s, 1)))
        o = bn(blk.bn_2, ref.conv(o, p(blk.conv_2.kernel), 1, 1))
        skip = bn(blk.bn_s, ref.conv(h, p(blk.conv_s.kernel), 2, 0)) if blk.down else h
        h = ref.lrelu(o + skip)
    h = ref.lrelu(bn(enc.bn_9, ref.conv(h, p(enc.conv_9.kernel), 2, 1)))
    h = ref.conv(h, p(enc.conv_10.kernel), 1, 0, p(enc.conv_10.bias))
    return ref.sigmoid(h.reshape(h.shape[0], -1))


def test_image_encoder_matches_numpy_in_eval_mode():
    rng = np.random.default_rng(8)
    enc = ImageEncoder(SVRConfig(), rngs=nnx.Rngs(0))
    for path, var in nnx.iter_graph(enc):
        if isinstance(var, nnx.BatchNorm):  # non-trivial statistics and affine parameters
            c = var.mean[...].shape[0]
            var.mean[...] = jnp.asarray(rng.normal(0, 0.3, c), jnp.float32)
            var.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32)
            var.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32)
            var.bias[...] = jnp.asarray(rng.normal(0, 0.1, c), jnp.float32)
    enc.eval()
    images = rng.uniform(0, 1, (2, 128, 128)).astype(np.float32)
    got = run(enc, images)
    want = _ref_image_encoder(enc, images)
    assert got.shape == (2, 256)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_image_encoder_spatial_sizes():
    """128² → 64² (conv_0) → 64, 32, 16, 8 (res blocks) → 4 (conv_9) → 1 (conv_10), as modelSVR."""
    enc = ImageEncoder(SVRConfig(), rngs=nnx.Rngs(0))
    x = jnp.zeros((1, 128, 128, 1))
    sizes = [enc.conv_0(x).shape[1]]
    h = enc.conv_0(x)
    for i in (1, 3, 5, 7):
        sizes.append(getattr(enc, f"res_{i}").conv_1(h).shape[1])
        h = getattr(enc, f"res_{i}").conv_1(h)
    assert sizes == [64, 64, 32, 16, 8]
    assert enc.conv_9(jnp.zeros((1, 8, 8, 512))).shape == (1, 4, 4, 512)
    assert enc.conv_10(jnp.zeros((1, 4, 4, 512))).shape == (1, 1, 1, 256)


def test_images_from_pixels_centre_crop():
    pix = np.arange(137 * 137, dtype=np.int64).reshape(137, 137) % 256
    got = np.asarray(images_from_pixels(pix.astype(np.uint8)))
    np.testing.assert_allclose(got, pix[4:132, 4:132] / 255.0, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# losses


def test_occupancy_and_latent_mse_formulas():
    rng = np.random.default_rng(9)
    a, b = rng.uniform(size=(3, 7)).astype(np.float32), rng.uniform(size=(3, 7, 1)).astype(np.float32)
    np.testing.assert_allclose(float(occupancy_mse(a, b)), np.mean((a - b[..., 0]) ** 2), rtol=1e-6)
    za, zb = rng.uniform(size=(4, 16)), rng.uniform(size=(4, 16))
    np.testing.assert_allclose(float(latent_mse(za, zb)), np.mean((za - zb) ** 2), rtol=1e-6)


def test_ae_loss_and_gradients_flow_to_both_parts():
    cfg = dataclasses.replace(IMNET_PYTORCH, gf_dim=8, z_dim=16, ef_dim=4)
    model = IMNetAE(cfg, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(10)
    batch = {"voxels": (rng.uniform(size=(2, 64, 64, 64)) < 0.5).astype(np.float32),
             "points": rng.uniform(-0.5, 0.5, (2, 32, 3)).astype(np.float32),
             "values": (rng.uniform(size=(2, 32, 1)) < 0.5).astype(np.float32)}

    @nnx.jit  # one compilation instead of op-by-op ones
    def run(model, batch):
        return nnx.value_and_grad(ae_loss, has_aux=True)(model, batch), model(batch["voxels"], batch["points"])

    ((loss, metrics), grads), (z, occ) = run(model, batch)
    assert z.shape == (2, 16) and occ.shape == (2, 32)
    np.testing.assert_allclose(float(loss), np.mean((np.asarray(occ) - batch["values"][..., 0]) ** 2), rtol=1e-6)
    assert float(metrics["mse"]) == float(loss)
    assert float(jnp.abs(grads.encoder.conv_1.kernel[...]).sum()) > 0
    assert float(jnp.abs(grads.generator.layers[0].kernel[...]).sum()) > 0
