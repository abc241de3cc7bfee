"""The TensorFlow tensor-bundle reader (:mod:`impax.models.tf_bundle`) against checkpoints written by
an independent test writer (``tf_bundle_writer.py``: bitwise CRC, its own protobuf/varint/snappy
encoders), built byte by byte from the format's description."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tf_bundle_writer import crc32c_bitwise, masked, snappy_compress, write_bundle

from impax.models.tf_bundle import (Bundle, BundleError, crc32c, list_bundle, mask_crc, read_bundle, resolve_prefix,
                                    snappy_decompress, unmask_crc)


def _tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = {
        "beta1_power": np.float32(0.25),
        "encoder/conv_1/Matrix": rng.normal(size=(2, 2, 2, 1, 3)).astype(np.float32),
        "encoder/conv_1/Matrix/Adam": rng.normal(size=(2, 2, 2, 1, 3)).astype(np.float32),
        "encoder/conv_1/Matrix/Adam_1": rng.normal(size=(2, 2, 2, 1, 3)).astype(np.float32),
        "encoder/conv_1/bias": rng.normal(size=(3,)).astype(np.float32),
        "global_step": np.int64(123456789012),
        "counts": np.array([-3, 0, 7, 2**40, -(2**62)], np.int64),
        "half": rng.normal(size=(4, 2)).astype(np.float16),
        "double": rng.normal(size=(3,)),
        "flags": np.array([True, False, True]),
        "bytes_u8": np.arange(7, dtype=np.uint8),
        "ints32": np.array([[1, -2], [3, -4]], np.int32),
        "empty": np.zeros((0, 3), np.float32),
    }
    for i in range(30):  # names sharing long prefixes: prefix compression, several restarts and blocks
        t[f"simple_net/h{i:02d}_lin/Matrix"] = rng.normal(size=(3, 2)).astype(np.float32)
    return t


@pytest.fixture
def bundle(tmp_path):
    rng = np.random.default_rng(0)
    tensors = _tensors(rng)
    prefix = tmp_path / "IMAE.model-7"
    facts = write_bundle(prefix, tensors, shards=2, restart_interval=4, block_bytes=300)
    return prefix, tensors, facts


def test_reads_every_tensor_exactly(bundle):
    prefix, tensors, facts = bundle
    assert facts["data_blocks"] >= 3 and facts["entries"] == len(tensors) + 1  # + the header entry
    got = read_bundle(prefix)
    assert list(got) == sorted(tensors)  # table order is key order
    for name, want in tensors.items():
        arr = got[name]
        assert arr.dtype == np.asarray(want).dtype, name
        assert arr.shape == np.shape(want), name
        np.testing.assert_array_equal(arr, want, err_msg=name)
    b = Bundle(prefix)
    assert (b.header.num_shards, b.header.endianness, b.header.producer) == (2, "little", 1)
    assert {e.shard_id for e in b.entries.values()} == {0, 1}


def test_list_needs_only_the_index(bundle):
    prefix, tensors, _ = bundle
    for f in prefix.parent.glob("*.data-*"):
        f.unlink()
    listing = list_bundle(prefix)
    assert listing["encoder/conv_1/Matrix"] == ("float32", (2, 2, 2, 1, 3))
    assert listing["global_step"] == ("int64", ())
    assert listing["empty"] == ("float32", (0, 3))
    assert listing["half"] == ("float16", (4, 2))
    assert len(listing) == len(tensors)
    with pytest.raises(BundleError, match=r"missing data shard .* of 2"):
        read_bundle(prefix, ["counts"])


def test_snappy_compressed_blocks_big_endian_strings_and_bfloat16(tmp_path):
    rng = np.random.default_rng(1)
    tensors = _tensors(rng)
    strings = np.array([b"object graph \x00 bytes", b"", b"x" * 300], dtype=object)
    tensors["_CHECKPOINTABLE_OBJECT_GRAPH"] = strings
    bf = np.array([1.0, -2.5, 3.140625, 1e-3], np.float32)
    tensors["bf16"] = bf
    prefix = tmp_path / "ckpt"
    write_bundle(prefix, tensors, shards=3, restart_interval=3, block_bytes=200, compress=True, big_endian=True,
                 dtypes={"_CHECKPOINTABLE_OBJECT_GRAPH": "string", "bf16": "bfloat16"})
    got = read_bundle(prefix)
    assert Bundle(prefix).header.endianness == "big"
    assert list(got["_CHECKPOINTABLE_OBJECT_GRAPH"]) == list(strings)
    bf_trunc = (bf.view(np.uint32) & 0xFFFF0000).view(np.float32)  # bfloat16 keeps the top 16 bits
    np.testing.assert_array_equal(got["bf16"], bf_trunc)
    assert got["bf16"].dtype == np.float32
    for name, want in tensors.items():
        if name in ("_CHECKPOINTABLE_OBJECT_GRAPH", "bf16"):
            continue
        np.testing.assert_array_equal(got[name], want, err_msg=name)
        assert got[name].dtype == np.asarray(want).dtype and got[name].dtype.isnative


def test_corrupt_tensor_bytes_fail_the_checksum(bundle):
    prefix, tensors, _ = bundle
    b = Bundle(prefix)
    e = b.entries["encoder/conv_1/bias"]
    shard = b.shard_path(e.shard_id)
    raw = bytearray(shard.read_bytes())
    raw[e.offset + 5] ^= 0x01
    shard.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"checksum mismatch for 'encoder/conv_1/bias'") as err:
        read_bundle(prefix)
    assert "\n" not in str(err.value) and str(shard) in str(err.value)
    # the altered value is what an unverified read returns
    bad = read_bundle(prefix, ["encoder/conv_1/bias"], verify=False)["encoder/conv_1/bias"]
    assert not np.array_equal(bad, tensors["encoder/conv_1/bias"])


def test_truncated_and_missing_shards(bundle):
    prefix, _, _ = bundle
    shard1 = prefix.parent / f"{prefix.name}.data-00001-of-00002"
    data = shard1.read_bytes()
    shard1.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated data shard"):
        read_bundle(prefix)
    shard1.unlink()
    with pytest.raises(BundleError, match=r"data-00001-of-00002: missing data shard 2 of 2"):
        read_bundle(prefix)


def test_wrong_magic_truncated_index_and_corrupt_block(bundle):
    prefix, _, _ = bundle
    index = prefix.parent / f"{prefix.name}.index"
    good = index.read_bytes()
    index.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    with pytest.raises(BundleError, match="bad magic number"):
        list_bundle(prefix)
    index.write_bytes(good[:30])
    with pytest.raises(BundleError, match="truncated"):
        list_bundle(prefix)
    index.write_bytes(good[:-48][:-40] + good[-48:])  # footer intact, blocks cut short
    with pytest.raises(BundleError, match="truncated table"):
        list_bundle(prefix)
    broken = bytearray(good)
    broken[20] ^= 0x40  # inside the first data block
    index.write_bytes(bytes(broken))
    with pytest.raises(BundleError, match="checksum mismatch in the data #0 block"):
        list_bundle(prefix)
    index.unlink()
    with pytest.raises(BundleError, match="no such checkpoint index file"):
        list_bundle(prefix)


def test_newer_format_version_is_refused(tmp_path):
    from tf_bundle_writer import header_proto, write_table

    prefix = tmp_path / "future"
    write_table(tmp_path / "future.index", [(b"", header_proto(1, min_consumer=2))])
    with pytest.raises(BundleError, match="needs a newer reader"):
        list_bundle(prefix)


def test_prefix_resolution(bundle, tmp_path):
    prefix, _, _ = bundle
    assert resolve_prefix(f"{prefix}.index") == prefix
    assert resolve_prefix(f"{prefix}.data-00001-of-00002") == prefix
    # a TF 'checkpoint' state file written on another machine (absolute path elsewhere)
    (prefix.parent / "checkpoint").write_text(
        'model_checkpoint_path: "/home/someone/ckpt/IMAE.model-7"\nall_model_checkpoint_paths: "IMAE.model-7"\n')
    assert resolve_prefix(prefix.parent) == prefix
    assert len(read_bundle(prefix.parent)) == len(list_bundle(prefix))


def test_crc32c_matches_published_vectors_and_a_bitwise_crc():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 30011, dtype=np.uint8).tobytes()  # the chunked numpy path
    assert crc32c(data) == crc32c_bitwise(data)
    assert crc32c(data[1000:], crc32c(data[:1000])) == crc32c_bitwise(data)
    for c in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert mask_crc(c) == masked(c) and unmask_crc(masked(c)) == c


def test_snappy_roundtrip_and_corruption():
    rng = np.random.default_rng(4)
    data = (b"abcabcabcabc" * 50 + rng.integers(0, 256, 700, dtype=np.uint8).tobytes() + b"z" * 200
            + b"pattern-" * 40)
    comp = snappy_compress(data)
    assert len(comp) < len(data)
    assert snappy_decompress(comp) == data
    with pytest.raises(ValueError, match="snappy"):
        snappy_decompress(comp[:-3])
    bad = bytearray(comp)
    bad[0] ^= 0x05  # wrong declared length
    with pytest.raises(ValueError, match="snappy"):
        snappy_decompress(bytes(bad))
    # a copy pointing before the start of the output
    with pytest.raises(ValueError, match="offset"):
        snappy_decompress(bytes([10, 2 | (3 << 2)]) + struct.pack("<H", 5))
