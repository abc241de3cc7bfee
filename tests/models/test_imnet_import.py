"""IM-NET-pytorch weight import: small torch re-statements of the IM-NET-pytorch modules
(``modelAE.py`` encoder/generator, ``modelSVR.py`` img_encoder; written for this test), randomly
initialised, exported as state dicts, imported into impax; the outputs must agree to 1e-5.

Precision: the tolerances here assume exact float32, i.e. the CPU backend tests/conftest.py pins; on a
GPU run with JAX_DEFAULT_MATMUL_PRECISION=highest (TF32 otherwise; docs/gpu.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from flax import nnx

torch = require("torch", 'python3 -m pip install "torch==2.13.0" (or run bash scripts/test.sh)')
F = torch.nn.functional
nn = torch.nn

from impax.models.imnet import IMNET_PYTORCH, IMNET_TF1, ImplicitDecoder, count_params
from impax.models.imnet_import import (WeightImportError, assign_decoder, import_autoencoder, import_svr,
                                       infer_config, load_state_dict)

torch.manual_seed(0)
torch.set_num_threads(1)


def lrelu(x):
    return F.leaky_relu(x, negative_slope=0.02)


class TorchGenerator(nn.Module):
    def __init__(self, z_dim=256, gf=128):
        super().__init__()
        self.z_dim = z_dim
        widths = [z_dim + 3, 8 * gf, 8 * gf, 8 * gf, 4 * gf, 2 * gf, gf, 1]
        for i in range(7):
            setattr(self, f"linear_{i + 1}", nn.Linear(widths[i], widths[i + 1], bias=True))

    def forward(self, points, z):
        h = torch.cat([points, z[:, None, :].expand(-1, points.shape[1], -1)], dim=2)
        for i in range(1, 7):
            h = lrelu(getattr(self, f"linear_{i}")(h))
        h = self.linear_7(h)
        return torch.max(torch.min(h, h * 0.01 + 0.99), h * 0.01)


class TorchEncoder(nn.Module):
    def __init__(self, ef=32, z_dim=256):
        super().__init__()
        chans = [1, ef, 2 * ef, 4 * ef, 8 * ef]
        for i in range(4):
            setattr(self, f"conv_{i + 1}", nn.Conv3d(chans[i], chans[i + 1], 4, stride=2, padding=1, bias=False))
            setattr(self, f"in_{i + 1}", nn.InstanceNorm3d(chans[i + 1]))
        self.conv_5 = nn.Conv3d(8 * ef, z_dim, 4, stride=1, padding=0, bias=True)
        self.z_dim = z_dim

    def forward(self, x):
        for i in range(1, 5):
            x = lrelu(getattr(self, f"in_{i}")(getattr(self, f"conv_{i}")(x)))
        return torch.sigmoid(self.conv_5(x).view(-1, self.z_dim))


class TorchAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = TorchEncoder()
        self.generator = TorchGenerator()


class TorchResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.down = cin != cout
        self.conv_1 = nn.Conv2d(cin, cout, 3, stride=2 if self.down else 1, padding=1, bias=False)
        self.bn_1 = nn.BatchNorm2d(cout)
        self.conv_2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn_2 = nn.BatchNorm2d(cout)
        if self.down:
            self.conv_s = nn.Conv2d(cin, cout, 1, stride=2, padding=0, bias=False)
            self.bn_s = nn.BatchNorm2d(cout)

    def forward(self, x):
        h = lrelu(self.bn_1(self.conv_1(x)))
        h = self.bn_2(self.conv_2(h))
        return lrelu(h + (self.bn_s(self.conv_s(x)) if self.down else x))


class TorchImgEncoder(nn.Module):
    def __init__(self, ef=64, z_dim=256):
        super().__init__()
        self.conv_0 = nn.Conv2d(1, ef, 7, stride=2, padding=3, bias=False)
        self.bn_0 = nn.BatchNorm2d(ef)
        w = [ef, ef, ef, 2 * ef, 2 * ef, 4 * ef, 4 * ef, 8 * ef, 8 * ef]
        for i in range(8):
            setattr(self, f"res_{i + 1}", TorchResBlock(w[i], w[i + 1]))
        self.conv_9 = nn.Conv2d(8 * ef, 8 * ef, 4, stride=2, padding=1, bias=False)
        self.bn_9 = nn.BatchNorm2d(8 * ef)
        self.conv_10 = nn.Conv2d(8 * ef, z_dim, 4, stride=1, padding=0, bias=True)
        self.z_dim = z_dim

    def forward(self, view):
        h = lrelu(self.bn_0(self.conv_0(1 - view)))
        for i in range(1, 9):
            h = getattr(self, f"res_{i}")(h)
        h = lrelu(self.bn_9(self.conv_9(h)))
        return torch.sigmoid(self.conv_10(h).view(-1, self.z_dim))


class TorchSVR(nn.Module):
    def __init__(self):
        super().__init__()
        self.img_encoder = TorchImgEncoder()
        self.generator = TorchGenerator()


def _spread_generator(gen, points, z):
    """He-scale weights and a last layer whose outputs span the three pieces of the leaky clip."""
    with torch.no_grad():
        for i in range(1, 8):
            lin = getattr(gen, f"linear_{i}")
            nn.init.normal_(lin.weight, 0.0, (2.0 / lin.in_features) ** 0.5)
            nn.init.normal_(lin.bias, 0.0, 0.1)
        gen.linear_1.weight[:, :3] *= 20.0
        gen.linear_7.bias.zero_()
        out = gen(points, z)
        pre = torch.where(out < 0, out / 0.01, torch.where(out > 1, (out - 0.99) / 0.01, out))
        a = 3.0 / float(pre.max() - pre.min())
        gen.linear_7.weight *= a
        gen.linear_7.bias.fill_(-1.0 - a * float(pre.min()))


def run(module, *args):
    """``module(*args)`` as one compiled program (faster to compile than op by op)."""
    return np.asarray(nnx.jit(lambda m, *a: m(*a))(module, *args))


def _state_numpy(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def torch_ae():
    ae = TorchAE().eval()
    rng = np.random.default_rng(0)
    points = torch.from_numpy(rng.uniform(-0.5, 0.5, (2, 64, 3)).astype(np.float32))
    z = torch.from_numpy(rng.uniform(0, 1, (2, 256)).astype(np.float32))
    _spread_generator(ae.generator, points, z)
    with torch.no_grad():
        ae.encoder.conv_5.bias.normal_(0, 0.5)
    return ae, points, z


def test_state_dict_names_and_shapes_are_imnet_pytorchs(torch_ae):
    """The re-statement has IM-NET-pytorch's names/shapes (e.g. generator.linear_1.weight [1024, 259])."""
    state = _state_numpy(torch_ae[0])
    assert state["generator.linear_1.weight"].shape == (1024, 259)
    assert state["encoder.conv_1.weight"].shape == (32, 1, 4, 4, 4) and "encoder.conv_1.bias" not in state
    assert state["encoder.conv_5.bias"].shape == (256,)
    assert len(state) == 5 + 1 + 14  # 5 conv kernels, 1 conv bias, 7 linear weights + biases


def test_autoencoder_import_reproduces_torch(torch_ae):
    ae, points, z = torch_ae
    model = import_autoencoder(_state_numpy(ae))
    assert model.cfg == IMNET_PYTORCH
    assert count_params(model) == sum(p.numel() for p in ae.parameters())
    # decoder
    with torch.no_grad():
        want = ae.generator(points, z)[..., 0].numpy()
    got = run(model.generator, points.numpy(), z.numpy())
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert (want < 0).any() and (want > 1).any() and ((want > 0) & (want < 1)).any()
    np.testing.assert_allclose(np.asarray(model.generator.for_shape(z[0].numpy())(points[0].numpy())), want[0],
                               atol=1e-5, rtol=1e-5)
    # encoder: a sphere and random voxels, torch NCDHW vs impax [B, D, H, W]
    rng = np.random.default_rng(1)
    g = (np.indices((64, 64, 64)).transpose(1, 2, 3, 0) - 31.5) / 32
    vox = np.stack([np.linalg.norm(g - [0.2, 0, -0.1], axis=-1) < 0.5,
                    rng.uniform(size=(64, 64, 64)) < 0.3]).astype(np.float32)
    with torch.no_grad():
        z_t = ae.encoder(torch.from_numpy(vox[:, None])).numpy()
    z_j = run(model.encoder, vox)
    np.testing.assert_allclose(z_j, z_t, atol=1e-5)
    assert z_t.std() > 0.05


def test_import_from_pth_file_and_dataparallel_prefix(torch_ae, tmp_path):
    ae = torch_ae[0]
    path = tmp_path / "IM_AE.model64-399.pth"
    torch.save({"module." + k: v for k, v in ae.state_dict().items()}, path)
    model = import_autoencoder(path)
    np.testing.assert_array_equal(np.asarray(model.generator.layers[0].kernel[...]),
                                  ae.generator.linear_1.weight.detach().numpy().T)
    np.testing.assert_array_equal(np.asarray(model.encoder.conv_2.kernel[...]),
                                  ae.encoder.conv_2.weight.detach().numpy().transpose(2, 3, 4, 1, 0))
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "missing.pth")


def test_mismatched_state_dicts_are_rejected_by_name(torch_ae):
    state = _state_numpy(torch_ae[0])
    dec = ImplicitDecoder(IMNET_PYTORCH, rngs=nnx.Rngs(0))
    before = np.asarray(dec.layers[0].kernel[...]).copy()
    broken = dict(state)
    del broken["generator.linear_3.bias"]
    broken["generator.linear_2.weight"] = broken["generator.linear_2.weight"][:, :512]
    broken["generator.linear_8.weight"] = np.zeros((1, 1), np.float32)
    with pytest.raises(WeightImportError) as err:
        assign_decoder(dec, broken)
    msg = str(err.value)
    for name in ("generator.linear_3.bias", "generator.linear_2.weight", "generator.linear_8.weight"):
        assert name in msg
    np.testing.assert_array_equal(np.asarray(dec.layers[0].kernel[...]), before)  # nothing half-written
    with pytest.raises(WeightImportError):
        assign_decoder(ImplicitDecoder(IMNET_TF1, rngs=nnx.Rngs(0)), state)


def test_infer_config_reads_sizes():
    small = TorchAE()
    small.generator = TorchGenerator(z_dim=64, gf=16)
    small.encoder = TorchEncoder(ef=8, z_dim=64)
    cfg = infer_config(_state_numpy(small))
    assert (cfg.z_dim, cfg.gf_dim, cfg.ef_dim, cfg.layout) == (64, 16, 8, "pytorch")


def test_svr_import_reproduces_torch_in_eval_and_train_mode():
    svr = TorchSVR()
    rng = np.random.default_rng(2)
    with torch.no_grad():  # non-trivial batch-norm statistics and affine parameters
        for m in svr.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        svr.img_encoder.conv_10.bias.normal_(0, 0.5)
    state = _state_numpy(svr)
    assert state["img_encoder.res_3.conv_s.weight"].shape == (128, 64, 1, 1)
    assert "img_encoder.res_2.conv_s.weight" not in state
    encoder, decoder = import_svr(state)
    assert count_params(encoder) == sum(p.numel() for p in svr.img_encoder.parameters())
    views = rng.uniform(0, 1, (3, 128, 128)).astype(np.float32)
    # eval mode: running statistics
    svr.eval()
    with torch.no_grad():
        want = svr.img_encoder(torch.from_numpy(views[:, None])).numpy()
    np.testing.assert_allclose(run(encoder, views), want, atol=1e-5)
    # train mode: batch statistics, and the running mean moves the same way (momentum 0.1)
    svr.train()
    with torch.no_grad():
        want_train = svr.img_encoder(torch.from_numpy(views[:, None])).numpy()
    encoder.train()
    np.testing.assert_allclose(run(encoder, views), want_train, atol=1e-5)
    np.testing.assert_allclose(np.asarray(encoder.bn_0.mean[...]), svr.img_encoder.bn_0.running_mean.numpy(),
                               atol=1e-5)
    # the SVR checkpoint's generator is imported too
    pts = rng.uniform(-0.5, 0.5, (1, 8, 3)).astype(np.float32)
    with torch.no_grad():
        want_occ = svr.generator(torch.from_numpy(pts), torch.from_numpy(want[:1]))[..., 0].numpy()
    np.testing.assert_allclose(run(decoder, pts, want[:1]), want_occ, atol=1e-5)
