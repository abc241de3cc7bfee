"""``impax import``: IM-NET-pytorch and IM-NET TF1 checkpoints become imnet-ae runs that
``impax reconstruct`` / ``interpolate`` use (and whose latents ``impax train imnet-gan`` takes);
LDIF's decoder becomes an ``extracted.occnet`` that ``impax mesh`` uses.

The IM-NET-pytorch checkpoint is written by torch from a small torch re-statement of
IM-NET-pytorch's ``im_network`` (written here); the TF1 checkpoints by the independent bundle
writer. Checks are against the source networks: the run's model reproduces the torch encoder and
decoder, and every vertex of the mesh ``impax reconstruct`` writes lies on the torch decoder's
0.5 level set."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import trimesh
from conftest import require
from flax import nnx
from tf_bundle_writer import write_bundle

from impax.cli import main

torch = require("torch", 'python3 -m pip install "torch==2.13.0" (or run bash scripts/test.sh)')
nn = torch.nn
torch.manual_seed(0)
torch.set_num_threads(1)

Z, EF, GF = 32, 4, 16


def lrelu(x):
    return torch.nn.functional.leaky_relu(x, 0.02)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        c = [1, EF, 2 * EF, 4 * EF, 8 * EF]
        for i in range(4):
            setattr(self, f"conv_{i + 1}", nn.Conv3d(c[i], c[i + 1], 4, stride=2, padding=1, bias=False))
        self.conv_5 = nn.Conv3d(8 * EF, Z, 4, stride=1, padding=0, bias=True)

    def forward(self, x):
        for i in range(1, 5):
            x = lrelu(torch.nn.functional.instance_norm(getattr(self, f"conv_{i}")(x), eps=1e-5))
        return torch.sigmoid(self.conv_5(x).view(-1, Z))


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        w = [Z + 3, 8 * GF, 8 * GF, 8 * GF, 4 * GF, 2 * GF, GF, 1]
        for i in range(7):
            setattr(self, f"linear_{i + 1}", nn.Linear(w[i], w[i + 1]))

    def forward(self, points, z):
        h = torch.cat([points, z[:, None, :].expand(-1, points.shape[1], -1)], dim=2)
        for i in range(1, 7):
            h = lrelu(getattr(self, f"linear_{i}")(h))
        h = self.linear_7(h)
        return torch.max(torch.min(h, h * 0.01 + 0.99), h * 0.01)[..., 0]


class AE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.generator = Generator()


def ball_mesh(path, radius=0.8, centre=(2.0, 0.0, -1.0)):
    trimesh.creation.icosphere(subdivisions=3, radius=radius).apply_translation(centre).export(path)
    return path


@pytest.fixture(scope="module")
def torch_ae():
    """An AE whose decoder, for the codes of our two meshes, is inside (> 0.5) near the centre of
    IM-NET's box and outside near its faces: a closed 0.5 level set to extract."""
    ae = AE().eval()
    with torch.no_grad():
        for m in ae.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, (2.0 / m.in_features) ** 0.5)
                nn.init.zeros_(m.bias)
        ae.encoder.conv_5.bias.normal_(0, 0.5)
        # first layer: |xyz| features, so the field depends on the distance from the centre
        ae.generator.linear_1.weight[:, :3] *= 6.0
        g = np.stack(np.meshgrid(*[np.linspace(-0.5, 0.5, 9)] * 3, indexing="ij"), -1).reshape(-1, 3)
        pts = torch.from_numpy(g.astype(np.float32))[None]
        z = torch.rand(1, Z)
        h = torch.cat([pts, z[:, None].expand(-1, pts.shape[1], -1)], 2)
        for i in range(1, 7):
            h = lrelu(getattr(ae.generator, f"linear_{i}")(h))
        pre = (h @ ae.generator.linear_7.weight.T)[0, :, 0].numpy()
        r = np.linalg.norm(g, axis=1)
        # fit the last layer so the output is ~1 at the centre and ~0 at the corners: least squares
        target = np.clip(1.2 - 2.4 * r, -0.5, 1.5)
        feats = np.concatenate([h[0].numpy(), np.ones((len(g), 1), np.float32)], 1)
        coef = np.linalg.lstsq(feats, target, rcond=None)[0]
        ae.generator.linear_7.weight.copy_(torch.from_numpy(coef[:-1][None].astype(np.float32)))
        ae.generator.linear_7.bias.fill_(float(coef[-1]))
        assert pre.std() > 0
    return ae


def _state(ae):
    return {k: v.detach().clone() for k, v in ae.state_dict().items()}


def test_imnet_pytorch_import_reconstruct_interpolate_and_latents(torch_ae, tmp_path, capsys):
    from impax.inference.imnet import load_ae, mesh_to_voxels

    ckpt = tmp_path / "IM_AE.model64-399.pth"
    torch.save(_state(torch_ae), ckpt)
    a, b = ball_mesh(tmp_path / "a.ply"), ball_mesh(tmp_path / "b.ply", 0.5, (0.0, 1.0, 0.0))
    # a tiny IM-NET HDF5 data file: the voxels of the two meshes
    vox = np.stack([mesh_to_voxels(a)[0], mesh_to_voxels(b)[0]])[..., None]
    from impax.data.imnet_hdf5 import write_imnet_hdf5

    pts = {lv: np.zeros((2, 8, 3), np.uint8) for lv in (16, 32, 64)}
    val = {lv: np.zeros((2, 8, 1), np.uint8) for lv in (16, 32, 64)}
    data = write_imnet_hdf5(tmp_path / "all_vox256_img_train.hdf5", ["s/a", "s/b"], vox, pts, val)
    run = tmp_path / "run"
    assert main(["import", "imnet-pytorch", str(ckpt), "--out", str(run), "--data", str(data)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shapes"] == 2 and summary["model"]["z_dim"] == Z
    info = json.loads((run / "run.json").read_text())
    assert info["recipe"] == "imnet-ae" and info["imported_from"]["format"] == "imnet-pytorch"
    # the run's model is the torch model
    model, _ = load_ae(run)
    assert (model.cfg.z_dim, model.cfg.ef_dim, model.cfg.gf_dim) == (Z, EF, GF)
    with torch.no_grad():
        z_t = torch_ae.encoder(torch.from_numpy(vox[:, None, ..., 0].astype(np.float32))).numpy()
    z_j = np.asarray(nnx.jit(lambda m, v: m(v))(model.encoder, vox[..., 0].astype(np.float32)))
    np.testing.assert_allclose(z_j, z_t, atol=1e-5)
    with h5py.File(run / "zs_train.hdf5", "r") as f:
        np.testing.assert_allclose(f["zs"][:], z_t, atol=1e-5)
    assert (run / "zs_train.txt").read_text().split() == ["s/a", "s/b"]
    # reconstruct: every vertex of the written mesh is on the torch decoder's 0.5 level set
    out = tmp_path / "rec"
    assert main(["reconstruct", str(run), "--input", "mesh", str(a), "--out", str(out), "--resolution", "32"]) == 0
    rows = json.loads(capsys.readouterr().out)
    mesh = trimesh.load(rows[0]["path"], process=False)
    assert len(mesh.faces) > 100
    _, t = mesh_to_voxels(a)
    v = t.apply(np.asarray(mesh.vertices)).astype(np.float32)  # back into IM-NET's frame
    with torch.no_grad():
        f = torch_ae.generator(torch.from_numpy(v)[None], torch.from_numpy(z_t[:1]))[0].numpy()
        grad_scale = np.abs(torch_ae.generator(torch.from_numpy(v * 1.05)[None],
                                               torch.from_numpy(z_t[:1]))[0].numpy() - f)
    assert np.median(np.abs(f - 0.5)) < 0.05 and np.median(grad_scale) > np.median(np.abs(f - 0.5))
    # interpolate between two shape ids of the recorded data
    out2 = tmp_path / "interp"
    assert main(["interpolate", str(run), "s/a", "s/b", "--steps", "2", "--out", str(out2),
                 "--resolution", "32"]) == 0
    assert all(r["ok"] for r in json.loads(capsys.readouterr().out))
    # a second import into the same folder is refused with one line
    assert main(["import", "imnet-pytorch", str(ckpt), "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0]


def _tf1_arrays(torch_ae, affine=False, rng=None):
    """The torch AE's weights under IM-NET TF1's names (Matrix [in, out]; conv [k, k, k, in, out])."""
    s = {k: v.numpy() for k, v in torch_ae.state_dict().items()}
    a = {}
    for i in range(1, 6):
        a[f"encoder/conv_{i}/Matrix"] = s[f"encoder.conv_{i}.weight"].transpose(2, 3, 4, 1, 0)
        a[f"encoder/conv_{i}/bias"] = s.get(f"encoder.conv_{i}.bias", np.full(a[f"encoder/conv_{i}/Matrix"].shape[-1], 0.3))
    for k, norm in enumerate(("InstanceNorm", "InstanceNorm_1", "InstanceNorm_2", "InstanceNorm_3")):
        c = a[f"encoder/conv_{k + 1}/Matrix"].shape[-1]
        a[f"encoder/{norm}/gamma"] = rng.uniform(0.5, 1.5, c) if affine else np.ones(c)
        a[f"encoder/{norm}/beta"] = np.zeros(c)
    for i in range(1, 8):
        a[f"simple_net/h{i}_lin/Matrix"] = s[f"generator.linear_{i}.weight"].T
        a[f"simple_net/h{i}_lin/bias"] = s[f"generator.linear_{i}.bias"]
    a = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in a.items()}
    a["simple_net/h1_lin/Matrix/Adam"] = np.zeros_like(a["simple_net/h1_lin/Matrix"])
    a["beta1_power"] = np.float32(0.9)
    return a


def test_imnet_tf1_import_cli(torch_ae, tmp_path, capsys):
    from impax.inference.imnet import load_ae

    rng = np.random.default_rng(0)
    ckpt = tmp_path / "checkpoint" / "all_vox256_img_64"
    ckpt.mkdir(parents=True)
    write_bundle(ckpt / "IMAE.model-399", _tf1_arrays(torch_ae, rng=rng), shards=2)
    (ckpt / "checkpoint").write_text('model_checkpoint_path: "IMAE.model-399"\n')
    assert main(["import", "inspect", str(ckpt)]) == 0
    listing = capsys.readouterr().out
    assert "simple_net/h1_lin/Matrix\tfloat32\t[35, 128]" in listing
    run = tmp_path / "run"
    assert main(["import", "imnet-tf1", str(ckpt), "--out", str(run)]) == 0
    capsys.readouterr()
    model, _ = load_ae(run)
    assert (model.cfg.output, model.cfg.norm_eps) == ("clip", 1e-6)
    p = rng.uniform(-0.5, 0.5, (1, 64, 3)).astype(np.float32)
    z = rng.uniform(0, 1, (1, Z)).astype(np.float32)
    with torch.no_grad():
        pre = torch_ae.generator(torch.from_numpy(p), torch.from_numpy(z))[0].numpy()
    got = np.asarray(nnx.jit(lambda m, a, b: m(a, b))(model.generator, p, z))[0]
    np.testing.assert_allclose(got, np.clip(pre, 0, 1), rtol=1e-4, atol=5e-5)  # TF1's hard clip, not the leaky one
    a = ball_mesh(tmp_path / "a.ply")
    assert main(["reconstruct", str(run), "--input", "mesh", str(a), "--out", str(tmp_path / "rec"),
                 "--resolution", "32"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["ok"]
    # learned instance-norm scale/offset (the released IM-NET TF1 weights): a run whose encoder has
    # affine norms; its codes equal the stock run's only where gamma = 1 and beta = 0, so they differ
    affine_arrays = _tf1_arrays(torch_ae, affine=True, rng=rng)
    write_bundle(tmp_path / "affine", affine_arrays, shards=1)
    assert main(["import", "imnet-tf1", str(tmp_path / "affine"), "--out", str(tmp_path / "run2")]) == 0
    capsys.readouterr()
    m2, _ = load_ae(tmp_path / "run2")
    assert m2.cfg.norm_affine
    np.testing.assert_allclose(np.asarray(m2.encoder.norm_1_scale[...]), affine_arrays["encoder/InstanceNorm/gamma"], rtol=1e-6)
    vox = (rng.uniform(size=(1, 64, 64, 64)) < 0.3).astype(np.float32)
    assert not np.allclose(np.asarray(m2.encoder(vox)), np.asarray(model.encoder(vox)), atol=1e-4)
    # a corrupt checkpoint: one line naming the shard
    shard = tmp_path / "affine.data-00000-of-00001"
    raw = bytearray(shard.read_bytes())
    raw[100] ^= 1
    shard.write_bytes(bytes(raw))
    assert main(["import", "imnet-tf1", str(tmp_path / "affine"), "--out", str(tmp_path / "run3")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0] and "affine.data-00000-of-00001" in err[0]


def test_ldif_tf1_import_writes_a_decoder_that_impax_mesh_uses(tmp_path, capsys, ldif_fixtures):
    from impax.models.sif_format import read_occnet

    ref = read_occnet(ldif_fixtures / "extracted.occnet") if (ldif_fixtures / "extracted.occnet").is_file() else None
    if ref is None:
        pytest.fail("the LDIF fixtures should ship extracted.occnet")
    base = "imp_net/eval_implicit_parameters/all_elements/OccNet/"
    a = {}

    def fc(name, key):
        a[f"{base}{name}/fully_connected/weights"] = ref[f"{key}.kernel"]
        a[f"{base}{name}/fully_connected/biases"] = ref[f"{key}.bias"]

    def cbn(name, key):
        fc(f"{name}/beta_fc", f"{key}.beta")
        fc(f"{name}/gamma_fc", f"{key}.gamma")
        a[f"{base}{name}/running_mean"] = np.reshape(ref[f"{key}.mean"], 1)
        a[f"{base}{name}/running_variance"] = np.reshape(ref[f"{key}.var"], 1)

    fc("sample_resize_fc", "input")
    cbn("fc_resnet_layer_0/cbn_1", "block0.cbn1")
    fc("fc_resnet_layer_0/fc_1", "block0.fc1")
    cbn("fc_resnet_layer_0/cbn_2", "block0.cbn2")
    fc("fc_resnet_layer_0/fc_2", "block0.fc2")
    cbn("final_cbn", "cbn_final")
    fc("final_activation", "output")
    a["imp_net/forward/explicit_embedding_cnn/fully_connected/weights"] = np.zeros((4, 4), np.float32)
    write_bundle(tmp_path / "model.ckpt-1000000", a, shards=2)
    out = tmp_path / "ldif"
    assert main(["import", "ldif-tf1", str(tmp_path / "model.ckpt-1000000"), "--out", str(out)]) == 0
    capsys.readouterr()
    # the same bytes as LDIF's own extracted.occnet
    assert (out / "extracted.occnet").read_bytes() == (ldif_fixtures / "extracted.occnet").read_bytes()
    info = json.loads((out / "import.json").read_text())
    assert info["sizes"]["decoder_width"] == 32
    shape = ldif_fixtures / "test-ldif.txt"
    assert main(["mesh", str(shape), "--decoder", str(out / "extracted.occnet"), "--resolution", "32",
                 "--out", str(tmp_path / "m.ply")]) == 0
    assert len(trimesh.load(tmp_path / "m.ply").faces) > 100
    assert main(["import", "ldif-tf1", str(tmp_path / "model.ckpt-1000000"), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
