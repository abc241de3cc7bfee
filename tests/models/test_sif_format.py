"""SIF v1 text and extracted.occnet binary I/O: round trips, the original's rules, clear errors."""

from __future__ import annotations

import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impax.cli import main as cli_main
from impax.models import occnet, sif as S
from impax.models.sif_format import (FormatError, decode_sif_v1, encode_sif_v1, read_occnet, read_sif,
                                     write_occnet, write_sif)


def _numbers(text):
    return [np.float32(float(t)) for line in text.splitlines()[2:] for t in line.split()]


@pytest.mark.parametrize("name", ["sif", "ldif"])
def test_fixture_rewrite_is_identical(ldif_fixtures, tmp_path, name):
    src = ldif_fixtures / f"test-{name}.txt"
    s = read_sif(src)
    header = src.read_text().splitlines()[1].split()
    assert [s.element_count, 0, s.latent_size] == [int(t) for t in header]
    out = tmp_path / "again.txt"
    write_sif(out, s)
    assert _numbers(out.read_text()) == _numbers(src.read_text())
    assert out.read_text().split() == src.read_text().split()  # same %.9g tokens
    if name == "ldif":
        assert (s.symmetric_count, s.latent_size) == (16, 32)


def test_random_sif_roundtrip_bit_identical(tmp_path, rng):
    act = rng.normal(scale=3, size=(7, 10 + 5)).astype(np.float32)
    s = S.from_activation(jnp.asarray(act), "cov", 3, 5).as_numpy()
    write_sif(tmp_path / "a.txt", s)
    back = read_sif(tmp_path / "a.txt")
    for field in ("constants", "centers", "sigmas", "rotations", "latents"):
        assert np.array_equal(getattr(back, field), getattr(s, field)), field
    assert back.symmetric_count == 3
    lines = (tmp_path / "a.txt").read_text().splitlines()
    assert lines[:2] == ["SIF", "7 0 5"]
    assert [ln.split()[10] for ln in lines[2:]] == ["1"] * 3 + ["0"] * 4
    assert all(len(ln.split()) == 16 for ln in lines[2:])
    # the file stores sigma = sqrt(variance)
    np.testing.assert_allclose(np.float32(lines[2].split()[4]) ** 2, s.variances[0, 0], rtol=1e-6)


def test_occnet_fixture_roundtrip(ldif_fixtures, tmp_path):
    src = ldif_fixtures / "extracted.occnet"
    w = read_occnet(src)
    assert occnet.parameter_count(32, 32, 1) == 8615 == sum(np.size(v) for v in w.values())
    assert src.stat().st_size == 8 + 4 * 8615
    write_occnet(tmp_path / "w.occnet", w)
    assert (tmp_path / "w.occnet").read_bytes() == src.read_bytes()
    # independent parse of the header and the first array (input FC, [3, 32] input-major)
    raw = src.read_bytes()
    assert struct.unpack("<ii", raw[:8]) == (1, 32)
    first = np.frombuffer(raw, "<f4", count=96, offset=8).reshape(3, 32)
    assert np.array_equal(w["input.kernel"], first)


def test_nnx_decoder_weights_roundtrip(tmp_path):
    from flax import nnx
    model = occnet.OccNetDecoder(rngs=nnx.Rngs(4))
    write_occnet(tmp_path / "m.occnet", model.weights())
    back = read_occnet(tmp_path / "m.occnet")
    again = occnet.OccNetDecoder.from_weights(back)
    z, x = jnp.ones((2, 32)), jnp.linspace(-1, 1, 2 * 5 * 3).reshape(2, 5, 3)
    assert np.array_equal(np.asarray(model(z, x)), np.asarray(again(z, x)))
    for k, v in model.weights().items():
        assert np.array_equal(np.asarray(v), back[k]), k


GOOD = "SIF\n2 0 1\n-0.1 0 0 0 0.1 0.1 0.1 0 0 0 1 0.5\n-0.2 0.1 0 0 0.1 0.1 0.1 0 0 0 0 0.25\n"


@pytest.mark.parametrize("text, reason", [
    ("", "header 'SIF'"),
    ("SIFF\n1 0 0\n", "header 'SIF'"),
    ("SIF\n", "truncated"),
    ("SIF\n2 0 x\n", "three integers"),
    ("SIF\n2 1 1\n", "version"),
    (GOOD.rsplit("\n", 2)[0] + "\n", "truncated: header announces 2 elements"),
    (GOOD + "-0.3 0 0 0 0.1 0.1 0.1 0 0 0 0 1\n", "wrong count"),
    (GOOD.replace(" 0.25\n", "\n"), "expected 12 values"),
    (GOOD.replace("0.25", "nan"), "non-finite"),
    (GOOD.replace("0.25", "abc"), "not a number"),
    (GOOD.replace(" 1 0.5", " 2 0.5"), "symmetry flag"),
    (GOOD.replace(" 1 0.5", " 0 0.5").replace(" 0 0.25", " 1 0.25"), "must come first"),
])
def test_malformed_sif_errors(tmp_path, text, reason):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(FormatError) as e:
        read_sif(p)
    assert str(p) in str(e.value) and reason in e.value.reason
    assert isinstance(e.value, ValueError) and e.value.path == str(p)
    decode_sif_v1(GOOD)  # the unmodified text is fine


def test_malformed_occnet_errors(ldif_fixtures, tmp_path):
    raw = (ldif_fixtures / "extracted.occnet").read_bytes()
    cases = {
        "trunc.occnet": (raw[:-4], "truncated"),
        "head.occnet": (raw[:5], "truncated"),
        "extra.occnet": (raw + b"\0\0\0\0", "trailing data"),
        "dims.occnet": (struct.pack("<ii", 1, 31) + raw[8:], "width 31"),
        "blocks.occnet": (struct.pack("<ii", 2, 32) + raw[8:], "truncated"),
        "nan.occnet": (raw[:100] + struct.pack("<f", float("nan")) + raw[104:], "non-finite"),
        "var.occnet": (None, "negative running variance"),
    }
    w = read_occnet(ldif_fixtures / "extracted.occnet")
    w["block0.cbn2.var"] = np.float32(-1.0)
    from impax.models.sif_format import encode_occnet
    cases["var.occnet"] = (encode_occnet(w), "negative running variance")
    for name, (data, reason) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(FormatError) as e:
            read_occnet(p)
        assert str(e.value).startswith(str(p) + ": ") and reason in e.value.reason, (name, str(e.value))
    with pytest.raises(FormatError, match="cannot read"):
        read_occnet(tmp_path / "missing.occnet")


def test_encode_aa_and_iso_shapes():
    act = np.zeros((2, 7), np.float32)
    s = S.from_activation(jnp.asarray(act), "aa")
    back = decode_sif_v1(encode_sif_v1(s))
    assert back.radius_type == "cov" and np.array_equal(back.rotations, np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(back.sigmas, np.asarray(s.sigmas))


def test_cli_mesh(ldif_fixtures, tmp_path, capsys):
    out = tmp_path / "m.ply"
    assert cli_main(["mesh", str(ldif_fixtures / "test-sif.txt"), "--resolution", "32", "--method", "dense",
                     "--out", str(out)]) == 0
    import trimesh
    m = trimesh.load(out, process=False)
    assert len(m.faces) > 100 and np.abs(m.vertices).max() <= 0.75
    # an LDIF without its decoder, and a malformed file, fail with a clear message
    assert cli_main(["mesh", str(ldif_fixtures / "test-ldif.txt"), "--out", str(out)]) == 1
    assert "--decoder" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("SIF\n3 0 0\n")
    assert cli_main(["mesh", str(bad), "--out", str(out)]) == 1
    assert f"{bad}: truncated" in capsys.readouterr().err
    # an empty level set is reported, not replaced by a sphere
    empty = tmp_path / "empty.txt"
    empty.write_text("SIF\n1 0 0\n-0.01 0 0 0 0.1 0.1 0.1 0 0 0 0\n")
    assert cli_main(["mesh", str(empty), "--method", "dense", "--resolution", "16", "--out", str(out)]) == 1


def test_decoder_training_mode_updates_ema():
    from flax import nnx
    model = occnet.OccNetDecoder(8, 8, 1, rngs=nnx.Rngs(0))
    w0 = {k: np.asarray(v) for k, v in model.weights().items()}
    z = jax.random.normal(jax.random.key(1), (3, 8))
    x = jax.random.normal(jax.random.key(2), (3, 20, 3))
    f_eval = np.asarray(model(z, x))
    assert float(model.weights()["cbn_final.mean"]) == 0.0  # eval mode leaves the statistics
    model.train()
    f_train = np.asarray(model(z, x))
    # numpy reference of the first CBN's update: per-element moments over samples+channels, averaged
    h = np.asarray(x) @ w0["input.kernel"] + w0["input.bias"]
    bm = h.mean(axis=(1, 2))
    bv = ((h - bm[:, None, None]) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(float(model.weights()["block0.cbn1.mean"]), 0.005 * bm.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(model.weights()["block0.cbn1.var"]), 0.005 * bv.mean(), rtol=1e-5)
    assert not np.allclose(f_eval, f_train)
