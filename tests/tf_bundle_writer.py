"""A small, independent writer of TensorFlow tensor-bundle checkpoints, for tests.

Written from the format's description (LevelDB ``table_format``: prefix-compressed block entries
with restart points, 5-byte block trailers with a masked CRC32C, an index block of separator keys
and block handles, an empty metaindex block, a 48-byte footer ending in the magic number; the
``BundleHeaderProto`` / ``BundleEntryProto`` messages of ``tensor_bundle.proto``; raw tensor bytes
in ``PREFIX.data-XXXXX-of-YYYYY`` shards). It shares no code with :mod:`impax.models.tf_bundle`:
its CRC is computed bit by bit, its protobuf and varint encoders are its own, and it can compress
index blocks with its own snappy encoder, so that the reader is checked against a second, separate
reading of the specification.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

MAGIC = 0xDB4775248B80FB57
DT = {"float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int16": 5, "int8": 6, "string": 7, "complex64": 8,
      "int64": 9, "bool": 10, "bfloat16": 14, "uint16": 17, "float16": 19}


def crc32c_bitwise(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field_varint(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def field_bytes(num: int, value: bytes) -> bytes:
    return varint((num << 3) | 2) + varint(len(value)) + value


def field_fixed32(num: int, value: int) -> bytes:
    return varint((num << 3) | 5) + struct.pack("<I", value)


def header_proto(num_shards: int, big_endian: bool = False, producer: int = 1, min_consumer: int = 0) -> bytes:
    version = field_varint(1, producer) + (field_varint(2, min_consumer) if min_consumer else b"")
    return (field_varint(1, num_shards) + (field_varint(2, 1) if big_endian else b"")
            + field_bytes(3, version))


def entry_proto(dtype: str, shape: tuple[int, ...], shard: int, offset: int, size: int, crc: int) -> bytes:
    dims = b"".join(field_bytes(2, field_varint(1, d) if d else b"") for d in shape)
    out = field_varint(1, DT[dtype]) + field_bytes(2, dims)
    if shard:
        out += field_varint(3, shard)
    if offset:
        out += field_varint(4, offset)
    if size:
        out += field_varint(5, size)
    return out + field_fixed32(6, crc)


# --------------------------------------------------------------------------------------------- snappy


def snappy_compress(data: bytes) -> bytes:
    """Greedy snappy block encoder that cycles through the three copy encodings it may use, so a
    decoder sees literals (short and long), 1-, 2- and 4-byte-offset copies and overlapping runs."""
    out = bytearray(varint(len(data)))
    seen: dict[bytes, int] = {}
    lit_start, i, turn = 0, 0, 0

    def literal(a: int, b: int) -> None:
        while a < b:
            n = min(b - a, 300)
            if n <= 60:
                out.append((n - 1) << 2)
            elif n <= 256:
                out.append(60 << 2)
                out.append(n - 1)
            else:
                out.append(61 << 2)
                out.extend(struct.pack("<H", n - 1))
            out.extend(data[a:a + n])
            a += n

    while i + 4 <= len(data):
        key = data[i:i + 4]
        j = seen.get(key)
        seen[key] = i
        if j is None:
            i += 1
            continue
        length = 4
        while i + length < len(data) and data[j + length] == data[i + length] and length < 64:
            length += 1
        literal(lit_start, i)
        off = i - j
        kind = ("copy1", "copy2", "copy4")[turn % 3]
        turn += 1
        if kind == "copy1" and length <= 11 and off < 2048:
            out.append(1 | ((length - 4) << 2) | ((off >> 8) << 5))
            out.append(off & 0xFF)
        elif kind == "copy4":
            out.append(3 | ((length - 1) << 2))
            out += struct.pack("<I", off)
        else:
            out.append(2 | ((length - 1) << 2))
            out += struct.pack("<H", off)
        i += length
        lit_start = i
    literal(lit_start, len(data))
    return bytes(out)


# --------------------------------------------------------------------------------------------- table


def _shortest_between(a: bytes, b: bytes) -> bytes:
    """A short key k with a <= k < b (LevelDB's separator idea): bump the first differing byte."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    if n < min(len(a), len(b)) and a[n] < 0xFF and a[n] + 1 < b[n]:
        return a[:n] + bytes([a[n] + 1])
    return a


def _block(items: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    body, restarts, prev = bytearray(), [], b""
    for k, (key, value) in enumerate(items):
        if k % restart_interval == 0:
            restarts.append(len(body))
            shared = 0
        else:
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        body += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        prev = key
    if not restarts:
        restarts = [0]
    return bytes(body) + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))


def write_table(path: Path, items: list[tuple[bytes, bytes]], restart_interval: int = 4, block_bytes: int = 256,
                compress: bool = False) -> dict[str, int]:
    """Write a sorted table; returns some facts about it (blocks, restarts) for assertions."""
    items = sorted(items)
    out = bytearray()
    handles: list[tuple[bytes, int, int]] = []  # (last key, offset, size)
    facts = {"data_blocks": 0, "entries": len(items)}

    def emit(raw: bytes) -> tuple[int, int]:
        kind = 0
        if compress:
            raw, kind = snappy_compress(raw), 1
        off = len(out)
        out.extend(raw)
        out.append(kind)
        out.extend(struct.pack("<I", masked(crc32c_bitwise(raw + bytes([kind])))))
        return off, len(raw)

    group: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in items:
        group.append((key, value))
        size += len(key) + len(value) + 3
        if size >= block_bytes:
            off, n = emit(_block(group, restart_interval))
            handles.append((group[-1][0], off, n))
            group, size = [], 0
    if group:
        off, n = emit(_block(group, restart_interval))
        handles.append((group[-1][0], off, n))
    facts["data_blocks"] = len(handles)
    meta = emit(_block([], 1))
    index_items = []
    for k, (last, off, n) in enumerate(handles):
        sep = _shortest_between(last, handles[k + 1][0]) if k + 1 < len(handles) else last
        index_items.append((sep, varint(off) + varint(n)))
    index = emit(_block(index_items, 1))
    footer = varint(meta[0]) + varint(meta[1]) + varint(index[0]) + varint(index[1])
    footer += b"\0" * (40 - len(footer)) + struct.pack("<II", MAGIC & 0xFFFFFFFF, MAGIC >> 32)
    out += footer
    Path(path).write_bytes(bytes(out))
    return facts


# --------------------------------------------------------------------------------------------- bundle


def _tensor_bytes(value: np.ndarray, dtype: str, big_endian: bool) -> tuple[bytes, int]:
    """(bytes as stored, unmasked crc of them)."""
    order = ">" if big_endian else "<"
    if dtype == "string":
        items = [bytes(v) for v in np.asarray(value, dtype=object).reshape(-1)]
        lengths = b"".join(varint(len(s)) for s in items)
        crc = crc32c_bitwise(b"".join(struct.pack(order + "I", len(s)) for s in items))
        length_crc = struct.pack(order + "I", masked(crc))
        crc = crc32c_bitwise(length_crc, crc)
        body = b"".join(items)
        return lengths + length_crc + body, crc32c_bitwise(body, crc)
    if dtype == "bfloat16":
        raw = np.asarray(value, dtype=np.float32).view(np.uint32) >> 16
        data = raw.astype(order + "u2").tobytes()
    else:
        data = np.ascontiguousarray(value).astype(np.dtype(value.dtype).newbyteorder(order)).tobytes()
    return data, crc32c_bitwise(data)


def write_bundle(prefix: str | Path, tensors: Mapping[str, np.ndarray], shards: int = 2, restart_interval: int = 4,
                 block_bytes: int = 256, compress: bool = False, big_endian: bool = False,
                 dtypes: Mapping[str, str] | None = None, alignment: int = 8) -> dict[str, int]:
    """Write a checkpoint ``prefix`` holding ``tensors`` spread over ``shards`` data files (tensor
    k goes to shard k mod shards), each tensor padded to ``alignment`` bytes. ``dtypes`` overrides
    the stored dtype name (``"bfloat16"``, ``"string"``)."""
    dtypes = dict(dtypes or {})
    shard_data = [bytearray() for _ in range(shards)]
    items = [(b"", header_proto(shards, big_endian))]
    for k, (name, value) in enumerate(tensors.items()):
        value = np.asarray(value) if dtypes.get(name) != "string" else value
        dtype = dtypes.get(name) or np.dtype(value.dtype).name
        data, crc = _tensor_bytes(value, dtype, big_endian)
        shard = k % shards
        buf = shard_data[shard]
        offset = len(buf)
        buf += data
        buf += b"\0" * (-len(buf) % alignment)
        shape = tuple(np.shape(value))
        items.append((name.encode(), entry_proto(dtype, shape, shard, offset, len(data), masked(crc))))
    for s, buf in enumerate(shard_data):
        Path(f"{prefix}.data-{s:05d}-of-{shards:05d}").write_bytes(bytes(buf))
    return write_table(Path(f"{prefix}.index"), items, restart_interval, block_bytes, compress)
