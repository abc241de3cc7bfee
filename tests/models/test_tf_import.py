"""IM-NET TF1 and google/ldif checkpoint variables → impax modules (:mod:`impax.models.tf_import`).

Arrays are stored under the originals' variable names (IM-NET ``IMGAN/model.py`` + ``ops.py``,
implicit-decoder's generator, LDIF ``nets/occnet.py``, slim ``resnet_v2_50``, ``pointnet_depr``),
partly through a byte-level bundle written by the independent test writer, imported, and the
impax outputs compared with numpy re-statements of the original layers (written here).

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx
from numpy.lib.stride_tricks import sliding_window_view
from tf_bundle_writer import write_bundle

from impax.models.imnet import IMNetAE, VoxelEncoder
from impax.models.tf_import import (TFImportError, assign_imnet_tf1_encoder,
                                    assign_ldif_depth_encoder, assign_pointnet, imnet_tf1_config,
                                    imnet_tf1_stock_exact, import_imnet_tf1, ldif_decoder_weights, ldif_sizes)

Z, EF, GF = 16, 4, 8


def run(module, *args):
    return np.asarray(nnx.jit(lambda m, *a: m(*a))(module, *args))


# ---------------------------------------------------------------------------- numpy re-statements


def lrelu(x, a=0.02):
    return np.maximum(x, a * x)


def tf_conv3d(x, w, b, stride, padding):
    """``tf.nn.conv3d`` (NDHWC, filter [k, k, k, in, out]) + bias; SAME pads (total // 2) before."""
    k = w.shape[0]
    if padding == "SAME":
        pads = []
        for n in x.shape[1:4]:
            out = -(-n // stride)
            total = max((out - 1) * stride + k - n, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, ((0, 0), *pads, (0, 0)))
    win = sliding_window_view(x, (k, k, k), axis=(1, 2, 3))[:, ::stride, ::stride, ::stride]
    return np.einsum("bxyzcijk,ijkco->bxyzo", win, w, optimize=True) + b


def contrib_instance_norm(x, gamma, beta, eps=1e-6):
    m = x.mean(axis=(1, 2, 3), keepdims=True)
    v = x.var(axis=(1, 2, 3), keepdims=True)
    return gamma * (x - m) / np.sqrt(v + eps) + beta


def imae_encoder(a, vox):
    x = vox[..., None].astype(np.float64)
    for k, norm in enumerate(("InstanceNorm", "InstanceNorm_1", "InstanceNorm_2", "InstanceNorm_3"), start=1):
        x = tf_conv3d(x, a[f"encoder/conv_{k}/Matrix"], a[f"encoder/conv_{k}/bias"], 2, "SAME")
        x = lrelu(contrib_instance_norm(x, a[f"encoder/{norm}/gamma"], a[f"encoder/{norm}/beta"]))
    x = tf_conv3d(x, a["encoder/conv_5/Matrix"], a["encoder/conv_5/bias"], 1, "VALID")
    return 1 / (1 + np.exp(-x.reshape(x.shape[0], -1)))


def imae_generator(a, points, z):
    h = np.concatenate([points, np.broadcast_to(z, (len(points), len(z)))], 1)
    for i in range(1, 7):
        h = lrelu(h @ a[f"simple_net/h{i}_lin/Matrix"] + a[f"simple_net/h{i}_lin/bias"])
    h = h @ a["simple_net/h7_lin/Matrix"] + a["simple_net/h7_lin/bias"]
    return np.clip(h, 0, 1)[:, 0]


def implicit_decoder_generator(a, coords, z):
    """implicit-decoder's generator: coordinates in [-1, 1], [h, points, z] skips, sigmoid."""
    pz = np.concatenate([coords, np.broadcast_to(z, (len(coords), len(z)))], 1)
    h = pz
    for n in ("h1_lin", "h4_lin", "h5_lin", "h6_lin"):
        h = np.concatenate([lrelu(h @ a[f"simple_net/{n}/Matrix"] + a[f"simple_net/{n}/bias"]), pz], 1)
    h = lrelu(h @ a["simple_net/h7_lin/Matrix"] + a["simple_net/h7_lin/bias"])
    return (1 / (1 + np.exp(-(h @ a["simple_net/h8_lin/Matrix"] + a["simple_net/h8_lin/bias"]))))[:, 0]


# ---------------------------------------------------------------------------- fixtures


def _imae_arrays(rng, affine=True):
    a = {}
    chans = [1, EF, 2 * EF, 4 * EF, 8 * EF]
    for k in range(4):
        a[f"encoder/conv_{k + 1}/Matrix"] = rng.normal(0, (2 / (64 * chans[k])) ** 0.5, (4, 4, 4, chans[k], chans[k + 1]))
        a[f"encoder/conv_{k + 1}/bias"] = rng.normal(0, 0.3, chans[k + 1])
        norm = "InstanceNorm" + (f"_{k}" if k else "")
        a[f"encoder/{norm}/gamma"] = rng.uniform(0.5, 1.5, chans[k + 1]) if affine else np.ones(chans[k + 1])
        a[f"encoder/{norm}/beta"] = rng.normal(0, 0.3, chans[k + 1]) if affine else np.zeros(chans[k + 1])
    a["encoder/conv_5/Matrix"] = rng.normal(0, 0.1, (4, 4, 4, 8 * EF, Z))
    a["encoder/conv_5/bias"] = rng.normal(0, 0.5, Z)
    widths = [3 + Z, 8 * GF, 8 * GF, 8 * GF, 4 * GF, 2 * GF, GF, 1]
    for i in range(7):
        a[f"simple_net/h{i + 1}_lin/Matrix"] = rng.normal(0, (2 / widths[i]) ** 0.5, (widths[i], widths[i + 1]))
        a[f"simple_net/h{i + 1}_lin/bias"] = rng.normal(0, 0.1, widths[i + 1])
    a["simple_net/h1_lin/Matrix"][:3] *= 8.0
    a["simple_net/h7_lin/bias"][:] = 0.5
    a = {k: v.astype(np.float32) for k, v in a.items()}
    # what a tf.train.Saver of IMAE also holds: Adam slots and its power accumulators
    a.update({f"{k}/Adam": np.zeros_like(v) for k, v in list(a.items())[:3]})
    a["beta1_power"] = np.float32(0.5)
    return a


def _voxels(rng):
    g = (np.indices((64, 64, 64)).transpose(1, 2, 3, 0) - 31.5) / 32
    return np.stack([np.linalg.norm(g - [0.1, 0, -0.2], axis=-1) < 0.55,
                     rng.uniform(size=(64, 64, 64)) < 0.3]).astype(np.float32)


def _spread_output(a, points, zs):
    """Rescale the last layer so its pre-activations span [-1, 2]: all three pieces of the clip."""
    pre = []
    for z in zs:
        h = np.concatenate([points, np.broadcast_to(z, (len(points), len(z)))], 1)
        for i in range(1, 7):
            h = lrelu(h @ a[f"simple_net/h{i}_lin/Matrix"] + a[f"simple_net/h{i}_lin/bias"])
        pre.append(h @ a["simple_net/h7_lin/Matrix"])
    pre = np.concatenate(pre)
    s = 3.0 / float(pre.max() - pre.min())
    a["simple_net/h7_lin/Matrix"] = (a["simple_net/h7_lin/Matrix"] * s).astype(np.float32)
    a["simple_net/h7_lin/bias"] = np.full(1, -1.0 - s * float(pre.min()), np.float32)


@pytest.fixture(scope="module")
def imae():
    rng = np.random.default_rng(0)
    arrays, vox = _imae_arrays(rng), _voxels(rng)
    points = rng.uniform(-0.5, 0.5, (300, 3)).astype(np.float32)
    _spread_output(arrays, points, imae_encoder({k: v.astype(np.float64) for k, v in arrays.items()}, vox))
    return arrays, vox, points


# ---------------------------------------------------------------------------- IM-NET TF1


def test_imnet_tf1_config_from_shapes(imae):
    cfg = imnet_tf1_config(imae[0])
    assert (cfg.layout, cfg.z_dim, cfg.ef_dim, cfg.gf_dim, cfg.output, cfg.norm_eps) == (
        "pytorch", Z, EF, GF, "clip", 1e-6)


def test_improved_imae_import_reproduces_the_original_through_a_bundle(imae, tmp_path):
    arrays, vox, points = imae
    prefix = tmp_path / "checkpoint" / "all_vox256_img_64" / "IMAE.model-399"
    prefix.parent.mkdir(parents=True)
    write_bundle(prefix, arrays, shards=2, block_bytes=400)
    model = import_imnet_tf1(prefix.parent)  # the folder: one *.index in it
    assert model.cfg.norm_affine and model.encoder.cfg.norm_affine
    want_z = imae_encoder({k: v.astype(np.float64) for k, v in arrays.items()}, vox)
    got_z = run(model.encoder, vox)
    np.testing.assert_allclose(got_z, want_z, atol=2e-5)
    assert want_z.std() > 0.05
    z = want_z.astype(np.float32)
    for s in range(2):
        want = imae_generator(arrays, points, z[s])
        got = run(model.generator, points[None], z[s:s + 1])[0]
        np.testing.assert_allclose(got, want, atol=2e-5)
        assert (want == 0).any() and (want == 1).any() and ((want > 0) & (want < 1)).any()  # clip exercised


def test_stock_encoder_only_when_the_norms_are_the_identity(imae):
    arrays, vox, _ = imae
    ok, why = imnet_tf1_stock_exact(arrays)
    assert not ok and "encoder/InstanceNorm" in why
    with pytest.raises(TFImportError, match="InstanceNorm"):
        assign_imnet_tf1_encoder(VoxelEncoder(imnet_tf1_config(arrays), rngs=nnx.Rngs(0)), arrays)
    plain = _imae_arrays(np.random.default_rng(1), affine=False)
    assert imnet_tf1_stock_exact(plain)[0]
    model = import_imnet_tf1(plain, stock=True)
    assert type(model.encoder) is VoxelEncoder
    want = imae_encoder({k: v.astype(np.float64) for k, v in plain.items()}, vox)
    np.testing.assert_allclose(run(model.encoder, vox), want, atol=2e-5)


def test_missing_and_misshaped_variables_are_named(imae):
    arrays = dict(imae[0])
    del arrays["simple_net/h3_lin/bias"]
    arrays["simple_net/h2_lin/Matrix"] = arrays["simple_net/h2_lin/Matrix"][:, :5]
    with pytest.raises(TFImportError) as err:
        import_imnet_tf1(arrays)
    msg = str(err.value)
    assert "simple_net/h3_lin/bias" in msg and "simple_net/h2_lin/Matrix" in msg and "\n" not in msg
    with pytest.raises(TFImportError, match="not an IM-NET TF1 checkpoint"):
        import_imnet_tf1({"foo/bar": np.zeros(3, np.float32)})


def test_original_implicit_decoder_import_rescales_coordinates():
    rng = np.random.default_rng(2)
    z, gf = 8, 4
    pz = 3 + z
    widths = [16 * gf, 8 * gf, 4 * gf, 2 * gf, gf, 1]
    fan_in = [pz, 16 * gf + pz, 8 * gf + pz, 4 * gf + pz, 2 * gf + pz, gf]
    names = ["h1_lin", "h4_lin", "h5_lin", "h6_lin", "h7_lin", "h8_lin"]
    a = {}
    for n, i, o in zip(names, fan_in, widths):
        a[f"simple_net/{n}/Matrix"] = rng.normal(0, (2 / i) ** 0.5, (i, o)).astype(np.float32)
        a[f"simple_net/{n}/bias"] = rng.normal(0, 0.1, o).astype(np.float32)
    a["encoder/conv_1/Matrix"] = np.zeros((4, 4, 4, 1, 8), np.float32)
    a["encoder/BatchNorm/beta"] = np.zeros(8, np.float32)
    cfg = imnet_tf1_config(a)
    assert (cfg.layout, cfg.z_dim, cfg.gf_dim, cfg.output_activation) == ("tf1", z, gf, "sigmoid")
    assert "batch norm" in imnet_tf1_stock_exact(a)[1]
    model = import_imnet_tf1(a)
    p = rng.uniform(-0.5, 0.5, (200, 3)).astype(np.float32)
    code = rng.uniform(0, 1, z).astype(np.float32)
    want = implicit_decoder_generator(a, 2.0 * p, code)  # the original sees [-1, 1] coordinates
    got = run(model.generator, p[None], code[None])[0]
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert want.std() > 0.05


# ---------------------------------------------------------------------------- LDIF


def _fc(rng, a, name, i, o, scale=None):
    a[f"{name}/fully_connected/weights"] = rng.normal(0, scale or (1 / i) ** 0.5, (i, o)).astype(np.float32)
    a[f"{name}/fully_connected/biases"] = rng.normal(0, 0.2, o).astype(np.float32)


def _ldif_decoder_arrays(rng, width=8, latent=8, blocks=2):
    base = "imp_net/eval_implicit_parameters/all_elements/OccNet/"
    a = {}
    _fc(rng, a, base + "sample_resize_fc", 3, width, 1.0)

    def cbn(name):
        _fc(rng, a, f"{name}/beta_fc", latent, width)
        _fc(rng, a, f"{name}/gamma_fc", latent, width)
        a[f"{name}/running_mean"] = rng.normal(0, 0.3, 1).astype(np.float32)
        a[f"{name}/running_variance"] = rng.uniform(0.5, 2.0, 1).astype(np.float32)

    for i in range(blocks):
        layer = f"{base}fc_resnet_layer_{i}"
        cbn(f"{layer}/cbn_1")
        _fc(rng, a, f"{layer}/fc_1", width, width)
        cbn(f"{layer}/cbn_2")
        _fc(rng, a, f"{layer}/fc_2", width, width)
    cbn(base + "final_cbn")
    _fc(rng, a, base + "final_activation", width, 1)
    return a


def ldif_occnet_eval(a, latents, samples, blocks):
    """``multishape_occnet_decoder`` in evaluation mode (running statistics), fon='t'."""
    base = "imp_net/eval_implicit_parameters/all_elements/OccNet/"

    def fc(name, x):
        return x @ a[f"{name}/fully_connected/weights"] + a[f"{name}/fully_connected/biases"]

    def cbn(name, x):
        beta, gamma = fc(f"{name}/beta_fc", latents), fc(f"{name}/gamma_fc", latents)
        m, v = a[f"{name}/running_mean"][0], a[f"{name}/running_variance"][0]
        return gamma[:, None] * ((x - m) / np.sqrt(v + 1e-5)) + beta[:, None]

    x = fc(base + "sample_resize_fc", samples)
    for i in range(blocks):
        layer = f"{base}fc_resnet_layer_{i}"
        x = cbn(f"{layer}/cbn_1", x)
        skip = x
        h = fc(f"{layer}/fc_1", np.maximum(x, 0))
        h = cbn(f"{layer}/cbn_2", h)
        h = fc(f"{layer}/fc_2", np.maximum(h, 0))
        x = skip + h
    x = cbn(base + "final_cbn", x)
    return fc(base + "final_activation", x)[..., 0]


def test_ldif_decoder_matches_the_original_and_the_occnet_file(tmp_path):
    from impax.models.occnet import occnet_forward
    from impax.models.sif_format import read_occnet, write_occnet

    rng = np.random.default_rng(3)
    a = _ldif_decoder_arrays(rng, blocks=2)
    a["imp_net/eval_implicit_parameters/all_elements/OccNet/final_cbn/beta_fc/fully_connected/weights/Adam"] = \
        np.zeros((8, 8), np.float32)
    prefix = tmp_path / "model.ckpt-1000"
    write_bundle(prefix, a, shards=1)
    from impax.models.tf_bundle import read_bundle

    w = ldif_decoder_weights(read_bundle(prefix))
    assert w["block1.cbn2.var"].shape == () and w["output.kernel"].shape == (8, 1)
    latents = rng.normal(size=(5, 8)).astype(np.float32)
    pts = rng.uniform(-1, 1, (5, 40, 3)).astype(np.float32)
    want = ldif_occnet_eval(a, latents.astype(np.float64), pts.astype(np.float64), 2)
    got = np.asarray(occnet_forward(w, latents, pts)[0])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    write_occnet(tmp_path / "extracted.occnet", w)
    back = read_occnet(tmp_path / "extracted.occnet")
    assert all(np.array_equal(back[k], w[k]) for k in w)
    assert ldif_sizes(a)["decoder_blocks"] == 2
    broken = dict(a)
    del broken["imp_net/eval_implicit_parameters/all_elements/OccNet/fc_resnet_layer_1/cbn_2/running_mean"]
    with pytest.raises(TFImportError, match="fc_resnet_layer_1/cbn_2/running_mean"):
        ldif_decoder_weights(broken)
    with pytest.raises(TFImportError, match="no LDIF local decoder"):
        ldif_decoder_weights({"imp_net/forward/x": np.zeros(1)})


def test_local_pointnet_matches_pointnet_depr():
    from impax.models.ldif_encoders import PointNet

    rng = np.random.default_rng(4)
    scope = "imp_net/forward/implicit_embedding_net/pointnet/"
    a = {}
    dims = [6, 64, 64, 64, 128, 16]
    names = ["mlp_block_1/conv1", "mlp_block_1/conv2", "mlp_block_2/conv1", "mlp_block_2/conv2", "mlp_block_2/conv3"]
    for n, i, o in zip(names, dims, dims[1:]):
        a[f"{scope}{n}/weights"] = rng.normal(0, (2 / i) ** 0.5, (1, 1, i, o)).astype(np.float32)
        a[f"{scope}{n}/biases"] = rng.normal(0, 0.1, o).astype(np.float32)
    for n, i, o in (("fc1", 16, 512), ("fc2", 512, 256), ("final_fc", 256, 8)):
        a[f"{scope}final_mlp/{n}/weights"] = rng.normal(0, (2 / i) ** 0.5, (i, o)).astype(np.float32)
        a[f"{scope}final_mlp/{n}/biases"] = rng.normal(0, 0.1, o).astype(np.float32)
    net = assign_pointnet(PointNet(6, 8, 16, rngs=nnx.Rngs(0)), a)
    x = rng.normal(size=(3, 50, 6)).astype(np.float32)
    h = x
    for n in names:
        h = np.maximum(h @ a[f"{scope}{n}/weights"][0, 0] + a[f"{scope}{n}/biases"], 0)
    h = h.max(axis=1)
    for n in ("fc1", "fc2"):
        h = np.maximum(h @ a[f"{scope}final_mlp/{n}/weights"] + a[f"{scope}final_mlp/{n}/biases"], 0)
    want = h @ a[f"{scope}final_mlp/final_fc/weights"] + a[f"{scope}final_mlp/final_fc/biases"]
    np.testing.assert_allclose(run(net, x), want, rtol=1e-4, atol=1e-4)
    a[f"{scope}learned_feature_transformation/feature_transformation_net/conv1/weights"] = np.zeros((1, 1, 64, 64))
    with pytest.raises(TFImportError, match="unexpected: .*learned_feature_transformation"):
        assign_pointnet(PointNet(6, 8, 16, rngs=nnx.Rngs(0)), a)


def slim_bottleneck(a, base, x, stride, has_shortcut_conv):
    """slim ``resnet_v2.bottleneck`` in inference mode (conv2d_same for the strided 3x3)."""
    def bn(name, x):
        return (x - a[f"{name}/moving_mean"]) / np.sqrt(a[f"{name}/moving_variance"] + 1e-5) * a[f"{name}/gamma"] \
            + a[f"{name}/beta"]

    def conv(x, w, b=None, s=1, explicit=False):
        k = w.shape[0]
        if k > 1:
            if explicit:
                p = (k - 1) // 2, (k - 1) - (k - 1) // 2
                x = np.pad(x, ((0, 0), p, p, (0, 0)))
            else:
                x = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
        win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]
        y = np.einsum("bxycij,ijco->bxyo", win, w)
        return y + b if b is not None else y

    pre = np.maximum(bn(f"{base}preact", x), 0)
    short = conv(pre, a[f"{base}shortcut/weights"], a[f"{base}shortcut/biases"], stride) if has_shortcut_conv \
        else x[:, ::stride, ::stride]
    h = np.maximum(bn(f"{base}conv1/BatchNorm", conv(pre, a[f"{base}conv1/weights"])), 0)
    h = np.maximum(bn(f"{base}conv2/BatchNorm", conv(h, a[f"{base}conv2/weights"], s=stride, explicit=stride > 1)), 0)
    return short + conv(h, a[f"{base}conv3/weights"], a[f"{base}conv3/biases"])


def test_ldif_resnet50_encoder_names_shapes_and_units():
    from impax.models.ldif_config import LdifConfig
    from impax.models.ldif_encoders import DepthEncoder

    cfg = LdifConfig(image_count=2, image_size=33, fc_width=32, element_count=4)
    enc = nnx.eval_shape(lambda: DepthEncoder(cfg, rngs=nnx.Rngs(0)))
    from impax.models.tf_import import resnet_v2_50_entries

    rng = np.random.default_rng(5)
    scope = "imp_net/forward/explicit_embedding_cnn/"
    a = {}
    for name, (var, _) in resnet_v2_50_entries(enc.backbone, scope).items():
        shape = tuple(var.get_value().shape)
        if name.endswith("logits/weights"):
            shape = (1, 1) + shape
        if name.endswith("moving_variance") or name.endswith("gamma"):
            a[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            a[name] = rng.normal(0, 0.1, shape).astype(np.float32)
    for n, i, o in (("fully_connected", 2048, 32), ("fully_connected_1", 32, 32), ("fully_connected_2", 32, 40)):
        a[f"{scope}{n}/weights"] = rng.normal(0, 0.1, (i, o)).astype(np.float32)
        a[f"{scope}{n}/biases"] = rng.normal(0, 0.1, o).astype(np.float32)
    assert len([n for n in a if "/block" in n]) == 16 * 16 + 4 * 2  # 16 units x 16 arrays + 4 shortcut convs
    assign_ldif_depth_encoder(enc, a)
    enc.eval()
    np.testing.assert_array_equal(np.asarray(enc.backbone.units[4].conv2.kernel[...]),
                                  a[f"{scope}resnet_v2_50/block2/unit_2/bottleneck_v2/conv2/weights"])
    np.testing.assert_array_equal(np.asarray(enc.backbone.logits.kernel[...]),
                                  a[f"{scope}resnet_v2_50/logits/weights"][0, 0])
    np.testing.assert_array_equal(np.asarray(enc.backbone.units[15].bn2.var[...]),
                                  a[f"{scope}resnet_v2_50/block4/unit_3/bottleneck_v2/conv2/BatchNorm/moving_variance"])
    # units as slim computes them: block1/unit_1 (projection shortcut), block1/unit_3 (stride 2, odd size)
    x = rng.normal(size=(1, 9, 9, 64)).astype(np.float32)
    base = f"{scope}resnet_v2_50/block1/unit_1/bottleneck_v2/"
    np.testing.assert_allclose(run(enc.backbone.units[0], x), slim_bottleneck(a, base, x, 1, True),
                               rtol=1e-3, atol=1e-3)
    x = rng.normal(size=(1, 9, 9, 256)).astype(np.float32)
    base = f"{scope}resnet_v2_50/block1/unit_3/bottleneck_v2/"
    np.testing.assert_allclose(run(enc.backbone.units[2], x), slim_bottleneck(a, base, x, 2, False),
                               rtol=1e-3, atol=1e-3)
    # stride 2 at an even size (LDIF's 137^2 views reach block2's stride at 18^2): slim pads 1/1
    x = rng.normal(size=(1, 10, 10, 256)).astype(np.float32)
    np.testing.assert_allclose(run(enc.backbone.units[2], x), slim_bottleneck(a, base, x, 2, False),
                               rtol=1e-3, atol=1e-3)
    # the head: 2 x FC(leaky ReLU 0.2) + linear output, N x dof
    e = rng.normal(size=(1, 2048)).astype(np.float32)
    h = e
    for n in ("fully_connected", "fully_connected_1"):
        h = h @ a[f"{scope}{n}/weights"] + a[f"{scope}{n}/biases"]
        h = np.where(h > 0, h, 0.2 * h)
    want = h @ a[f"{scope}fully_connected_2/weights"] + a[f"{scope}fully_connected_2/biases"]
    got = np.asarray(enc.out(_leaky(enc.fc2(_leaky(enc.fc1(e))))))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    a2 = dict(a)
    a2[f"{scope}resnet_v2_50/conv1/weights"] = np.zeros((7, 7, 3, 64), np.float32)
    with pytest.raises(TFImportError, match=r"resnet_v2_50/conv1/weights is \[7, 7, 3, 64\]"):
        assign_ldif_depth_encoder(enc, a2)


def _leaky(x):
    import jax

    return jax.nn.leaky_relu(x, 0.2)


def test_imnet_ae_built_from_config_accepts_the_stock_import():
    plain = _imae_arrays(np.random.default_rng(6), affine=False)
    model = IMNetAE(imnet_tf1_config(plain), rngs=nnx.Rngs(0))
    assign_imnet_tf1_encoder(model.encoder, plain)
    np.testing.assert_array_equal(np.asarray(model.encoder.conv_3.kernel[...]), plain["encoder/conv_3/Matrix"])


def test_affine_import_trains_with_the_space_to_depth_encoder(imae):
    """The training loss's fast encoder (:func:`impax.models.imnet_s2d.encode_s2d`) applies the
    imported norms' scale/offset too: fine-tuning an imported TF1 model encodes as the model does."""
    from impax.models.imnet_s2d import encode_s2d

    arrays, vox, _ = imae
    model = import_imnet_tf1(arrays)
    assert model.cfg.norm_affine
    np.testing.assert_allclose(np.asarray(encode_s2d(model.encoder, vox)), run(model.encoder, vox), atol=2e-5)
