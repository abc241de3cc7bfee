"""Read TensorFlow checkpoints (the "V2" tensor-bundle format) without TensorFlow.

A TF1 ``tf.train.Saver`` checkpoint (and a TF2 ``tf.train.Checkpoint``) named ``PREFIX`` is

* ``PREFIX.index`` — a LevelDB-format sorted table mapping each tensor name to a
  ``BundleEntryProto`` (dtype, shape, shard id, offset, size, masked CRC32C of the bytes); the entry
  under the empty name is the ``BundleHeaderProto`` (number of shards, endianness, format version);
* ``PREFIX.data-00000-of-0000N`` … — the shards holding the raw tensor bytes, one after the other.

The table layout, as this module reads it (the public LevelDB ``table_format`` description):

* the last 48 bytes are the footer: two block handles (varint64 offset, varint64 size) for the
  metaindex and the index block, zero padding to 40 bytes, then the magic number
  ``0xdb4775248b80fb57`` as a little-endian 64-bit integer;
* every block is followed by a 5-byte trailer: its compression type (0 none, 1 snappy) and the
  masked CRC32C of the block bytes plus that type byte;
* a block is a run of entries ``varint32 shared, varint32 unshared, varint32 value_length,
  key[shared:], value`` (each key shares its first ``shared`` bytes with the previous key), then
  ``uint32`` restart offsets (entries that start with ``shared = 0``) and their ``uint32`` count;
* the index block maps, for each data block, a key at or after that block's last key to the
  block's handle; the metaindex block is empty in TensorFlow's tables.

Tensor bytes are little-endian (or big-endian when the header says so) in C order; ``DT_STRING``
tensors hold varint64 lengths, a masked CRC32C of the lengths and the string bytes. CRC32C is the
Castagnoli CRC; "masked" is TensorFlow/LevelDB's ``((c >> 15 | c << 17) + 0xa282ead8) mod 2^32``.
Every value is checked against its checksum by default.

Everything is decoded here: protobuf wire format (varints, length-delimited fields, fixed32),
CRC32C (numpy, chunked and recombined), and snappy block decompression. Problems raise
:class:`BundleError` with one line naming the file and the reason.

Public API: :func:`read_bundle`, :func:`list_bundle`, :class:`Bundle`, :func:`resolve_prefix`,
:func:`crc32c`, :func:`mask_crc`, :func:`unmask_crc`, :func:`snappy_decompress`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

#: LevelDB/TensorFlow table magic number (the footer's last 8 bytes, little-endian).
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
#: The tensor-bundle format version this reader implements (``kTensorBundleVersion``).
BUNDLE_VERSION = 1
CRC_MASK_DELTA = 0xA282EAD8

#: ``tensorflow.DataType`` enum value → (name, numpy dtype or None for special handling).
DTYPES: dict[int, tuple[str, Any]] = {
    1: ("float32", np.float32), 2: ("float64", np.float64), 3: ("int32", np.int32), 4: ("uint8", np.uint8),
    5: ("int16", np.int16), 6: ("int8", np.int8), 7: ("string", None), 8: ("complex64", np.complex64),
    9: ("int64", np.int64), 10: ("bool", np.bool_), 14: ("bfloat16", None), 17: ("uint16", np.uint16),
    18: ("complex128", np.complex128), 19: ("float16", np.float16), 22: ("uint32", np.uint32),
    23: ("uint64", np.uint64),
}
_OTHER_DTYPES = {11: "qint8", 12: "quint8", 13: "qint32", 15: "qint16", 16: "quint16", 20: "resource",
                 21: "variant"}


class BundleError(ValueError):
    """A missing, truncated or corrupt checkpoint file; ``str()`` is ``"PATH: REASON"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# ----------------------------------------------------------------------------------------------
# CRC32C (Castagnoli, reflected polynomial 0x82F63B78)

_POLY = 0x82F63B78


def _byte_table() -> np.ndarray:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    return t


_TABLE = _byte_table()
_TABLE_LIST = [int(v) for v in _TABLE]
#: Inputs shorter than this are checksummed byte by byte in Python.
_SMALL = 2048


def _reg_update_py(reg: int, data: bytes | memoryview) -> int:
    t = _TABLE_LIST
    for b in bytes(data):
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


@functools.lru_cache(maxsize=16)
def _shift_tables(length: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """The linear map "feed ``length`` zero bytes to the CRC register", as four byte-indexed tables
    (the register is the XOR of the images of its four bytes)."""
    basis = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None])
    reg = basis.reshape(-1).copy()
    for _ in range(length):
        reg = _TABLE[reg & 0xFF] ^ (reg >> 8)
    reg = reg.reshape(4, 256)
    return tuple([int(v) for v in reg[k]] for k in range(4))  # type: ignore[return-value]


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, value: int = 0) -> int:
    """CRC32C of ``data``, extending ``value`` (the CRC of preceding bytes; 0 to start).

    Long inputs are cut into equal chunks whose CRC registers are computed together with numpy
    (one table step per byte column), then chained: CRC is linear over GF(2), so the register after
    chunk ``i`` is (the register before it, advanced over ``L`` zero bytes) XOR (the chunk's own
    register from zero)."""
    buf = memoryview(np.ascontiguousarray(data) if isinstance(data, np.ndarray) else data).cast("B")
    n = len(buf)
    reg = (value ^ 0xFFFFFFFF) & 0xFFFFFFFF
    if n < _SMALL:
        return _reg_update_py(reg, buf) ^ 0xFFFFFFFF
    length = int(min(16384, max(256, 2 ** round(np.log2(np.sqrt(n) * 2)))))
    count = n // length
    arr = np.frombuffer(buf, dtype=np.uint8, count=count * length).reshape(count, length)
    cols = np.ascontiguousarray(arr.T).astype(np.uint32)
    regs = np.zeros(count, dtype=np.uint32)
    for j in range(length):
        regs = _TABLE[(regs ^ cols[j]) & 0xFF] ^ (regs >> 8)
    s0, s1, s2, s3 = _shift_tables(length)
    for r in regs.tolist():
        reg = s0[reg & 0xFF] ^ s1[(reg >> 8) & 0xFF] ^ s2[(reg >> 16) & 0xFF] ^ s3[reg >> 24] ^ r
    reg = _reg_update_py(reg, buf[count * length:])
    return reg ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """TensorFlow/LevelDB's stored form of a CRC (rotate right by 15, add a constant)."""
    crc &= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + CRC_MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Inverse of :func:`mask_crc`."""
    rot = (masked - CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------
# varints and protobuf wire format


class _Truncated(Exception):
    pass


def _varint(buf: bytes | memoryview, pos: int, end: int | None = None) -> tuple[int, int]:
    end = len(buf) if end is None else end
    result = shift = 0
    while True:
        if pos >= end:
            raise _Truncated("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Truncated("varint longer than 10 bytes")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def proto_fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of a serialised protobuf message: varints as ints,
    fixed32/fixed64 as unsigned ints, length-delimited fields as bytes. Raises ``ValueError`` on
    malformed input (groups are not used by these messages)."""
    out = []
    pos, n = 0, len(buf)
    try:
        while pos < n:
            key, pos = _varint(buf, pos)
            field, wire = key >> 3, key & 7
            if field == 0:
                raise ValueError("field number 0")
            if wire == 0:
                value, pos = _varint(buf, pos)
            elif wire == 1:
                if pos + 8 > n:
                    raise _Truncated("truncated fixed64")
                value = struct.unpack_from("<Q", buf, pos)[0]
                pos += 8
            elif wire == 2:
                size, pos = _varint(buf, pos)
                if pos + size > n:
                    raise _Truncated("truncated length-delimited field")
                value = bytes(buf[pos:pos + size])
                pos += size
            elif wire == 5:
                if pos + 4 > n:
                    raise _Truncated("truncated fixed32")
                value = struct.unpack_from("<I", buf, pos)[0]
                pos += 4
            else:
                raise ValueError(f"unsupported wire type {wire}")
            out.append((field, wire, value))
    except _Truncated as e:
        raise ValueError(str(e)) from None
    return out


def _packed_varints(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    vals, pos = [], 0
    try:
        while pos < len(value):
            v, pos = _varint(value, pos)
            vals.append(v)
    except _Truncated as e:
        raise ValueError(str(e)) from None
    return vals


@dataclasses.dataclass(frozen=True)
class BundleHeader:
    """``BundleHeaderProto``: shard count, byte order of the tensor data and format version."""

    num_shards: int
    endianness: str  # "little" | "big"
    producer: int
    min_consumer: int
    bad_consumers: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class BundleEntry:
    """``BundleEntryProto`` of one tensor."""

    name: str
    dtype: str
    dtype_code: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None  # the stored (masked) value; None when absent
    sliced: bool = False


def parse_header(buf: bytes) -> BundleHeader:
    num_shards, endian, producer, min_consumer, bad = 0, 0, 0, 0, []
    for field, wire, value in proto_fields(buf):
        if field == 1 and wire == 0:
            num_shards = _signed64(value)
        elif field == 2 and wire == 0:
            endian = value
        elif field == 3 and wire == 2:
            for f2, w2, v2 in proto_fields(value):
                if f2 == 1 and w2 == 0:
                    producer = _signed64(v2)
                elif f2 == 2 and w2 == 0:
                    min_consumer = _signed64(v2)
                elif f2 == 3:
                    bad += [_signed64(v) for v in _packed_varints(v2)]
    if endian not in (0, 1):
        raise ValueError(f"unknown endianness value {endian}")
    return BundleHeader(int(num_shards), "little" if endian == 0 else "big", int(producer), int(min_consumer),
                        tuple(bad))


def parse_shape(buf: bytes) -> tuple[int, ...]:
    dims: list[int] = []
    for field, wire, value in proto_fields(buf):
        if field == 2 and wire == 2:
            size = 0
            for f2, w2, v2 in proto_fields(value):
                if f2 == 1 and w2 == 0:
                    size = _signed64(v2)
            dims.append(size)
        elif field == 3 and wire == 0 and value:
            raise ValueError("tensor shape of unknown rank")
    if any(d < 0 for d in dims):
        raise ValueError(f"negative dimension in shape {dims}")
    return tuple(int(d) for d in dims)


def parse_entry(name: str, buf: bytes) -> BundleEntry:
    code, shape, shard, offset, size, crc, sliced = 0, (), 0, 0, 0, None, False
    for field, wire, value in proto_fields(buf):
        if field == 1 and wire == 0:
            code = value
        elif field == 2 and wire == 2:
            shape = parse_shape(value)
        elif field == 3 and wire == 0:
            shard = _signed64(value)
        elif field == 4 and wire == 0:
            offset = _signed64(value)
        elif field == 5 and wire == 0:
            size = _signed64(value)
        elif field == 6 and wire == 5:
            crc = value
        elif field == 7 and wire == 2:
            sliced = True
    if code in DTYPES:
        dname = DTYPES[code][0]
    else:
        dname = _OTHER_DTYPES.get(code, f"dtype#{code}")
    if shard < 0 or offset < 0 or size < 0:
        raise ValueError(f"negative shard/offset/size ({shard}, {offset}, {size})")
    return BundleEntry(name, dname, int(code), shape, int(shard), int(offset), int(size), crc, sliced)


# ----------------------------------------------------------------------------------------------
# snappy (block format: varint length, then literal and copy elements)


def snappy_decompress(data: bytes | memoryview) -> bytes:
    """Decompress one raw snappy block (not the framed stream format). Raises ``ValueError``."""
    data = bytes(data)
    try:
        total, pos = _varint(data, 0)
    except _Truncated:
        raise ValueError("snappy: truncated length header") from None
    out = bytearray()
    n = len(data)
    while pos < n:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            ln = tag >> 2
            if ln >= 60:
                extra = ln - 59
                if pos + extra > n:
                    raise ValueError("snappy: truncated literal length")
                ln = int.from_bytes(data[pos:pos + extra], "little")
                pos += extra
            ln += 1
            if pos + ln > n:
                raise ValueError("snappy: literal runs past the end of the block")
            out += data[pos:pos + ln]
            pos += ln
            continue
        if kind == 1:
            if pos + 1 > n:
                raise ValueError("snappy: truncated copy")
            ln = 4 + ((tag >> 2) & 7)
            off = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            if pos + 2 > n:
                raise ValueError("snappy: truncated copy")
            ln = (tag >> 2) + 1
            off = int.from_bytes(data[pos:pos + 2], "little")
            pos += 2
        else:
            if pos + 4 > n:
                raise ValueError("snappy: truncated copy")
            ln = (tag >> 2) + 1
            off = int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        if off == 0 or off > len(out):
            raise ValueError(f"snappy: copy offset {off} outside the {len(out)} bytes written")
        start = len(out) - off
        if off >= ln:
            out += out[start:start + ln]
        else:  # overlapping copy repeats the last `off` bytes
            chunk = bytes(out[start:])
            reps = -(-ln // off)
            out += (chunk * reps)[:ln]
        if len(out) > total:
            break
    if len(out) != total:
        raise ValueError(f"snappy: decompressed {len(out)} bytes, header says {total}")
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# the sorted table (.index)


def _read_block(raw: bytes, offset: int, size: int, path: Path, what: str, limit: int) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if offset < 0 or size < 0 or end > limit:
        raise BundleError(path, f"truncated table: the {what} block [{offset}, {end}) runs past the data "
                                f"({limit} bytes before the footer)")
    body = raw[offset:offset + size]
    kind = raw[offset + size]
    stored = struct.unpack_from("<I", raw, offset + size + 1)[0]
    if crc32c(raw[offset:offset + size + 1]) != unmask_crc(stored):
        raise BundleError(path, f"checksum mismatch in the {what} block at offset {offset} (corrupt index file)")
    if kind == 0:
        return body
    if kind == 1:
        try:
            return snappy_decompress(body)
        except ValueError as e:
            raise BundleError(path, f"corrupt snappy-compressed {what} block at offset {offset} ({e})") from None
    raise BundleError(path, f"unknown block compression type {kind} in the {what} block at offset {offset}")


def _block_entries(block: bytes, path: Path, what: str) -> list[tuple[bytes, bytes]]:
    n = len(block)
    if n < 4:
        raise BundleError(path, f"corrupt {what} block: {n} bytes, too short for its restart count")
    num_restarts = struct.unpack_from("<I", block, n - 4)[0]
    limit = n - 4 - 4 * num_restarts
    if num_restarts == 0 and n > 4 or limit < 0:
        raise BundleError(path, f"corrupt {what} block: bad restart count {num_restarts}")
    restarts = list(struct.unpack_from(f"<{num_restarts}I", block, limit)) if num_restarts else []
    entries: list[tuple[bytes, bytes]] = []
    starts: dict[int, int] = {}  # entry offset -> shared
    pos, key = 0, b""
    try:
        while pos < limit:
            start = pos
            shared, pos = _varint(block, pos, limit)
            unshared, pos = _varint(block, pos, limit)
            vlen, pos = _varint(block, pos, limit)
            if shared > len(key) or pos + unshared + vlen > limit:
                raise _Truncated(f"entry at offset {start} overruns the block")
            key = key[:shared] + block[pos:pos + unshared]
            pos += unshared
            entries.append((key, block[pos:pos + vlen]))
            pos += vlen
            starts[start] = shared
    except _Truncated as e:
        raise BundleError(path, f"corrupt {what} block ({e})") from None
    prev = -1
    for r in restarts:
        if r <= prev or (entries and starts.get(r) != 0) or (not entries and r != 0):
            raise BundleError(path, f"corrupt {what} block: restart offset {r} is not the start of an "
                                    "unshared entry")
        prev = r
    return entries


def read_table(path: str | os.PathLike) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` pairs of a LevelDB-format table file, in key order (every block's
    checksum and the key order are verified)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(path, "no such checkpoint index file") from None
    except OSError as e:
        raise BundleError(path, f"cannot read ({e.strerror or e})") from None
    if len(raw) < FOOTER_SIZE:
        raise BundleError(path, f"truncated: {len(raw)} bytes, a table needs at least its {FOOTER_SIZE}-byte footer")
    footer = raw[-FOOTER_SIZE:]
    magic = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0]
    if magic != TABLE_MAGIC:
        raise BundleError(path, f"not a TensorFlow checkpoint index (bad magic number {magic:#018x}, expected "
                                f"{TABLE_MAGIC:#018x})")
    try:
        meta_off, p = _varint(footer, 0, 40)
        meta_size, p = _varint(footer, p, 40)
        index_off, p = _varint(footer, p, 40)
        index_size, p = _varint(footer, p, 40)
    except _Truncated:
        raise BundleError(path, "corrupt footer (bad block handle)") from None
    limit = len(raw) - FOOTER_SIZE
    _block_entries(_read_block(raw, meta_off, meta_size, path, "metaindex", limit), path, "metaindex")
    index = _block_entries(_read_block(raw, index_off, index_size, path, "index", limit), path, "index")
    out: list[tuple[bytes, bytes]] = []
    for i, (_, handle) in enumerate(index):
        try:
            off, q = _varint(handle, 0)
            size, q = _varint(handle, q)
        except _Truncated:
            raise BundleError(path, f"corrupt index entry {i} (bad block handle)") from None
        out += _block_entries(_read_block(raw, off, size, path, f"data #{i}", limit), path, f"data #{i}")
    for (a, _), (b, _) in zip(out, out[1:]):
        if not a < b:
            raise BundleError(path, f"corrupt table: keys out of order ({a[:40]!r} before {b[:40]!r})")
    return out


# ----------------------------------------------------------------------------------------------
# the bundle


def data_filename(prefix: str | os.PathLike, shard: int, num_shards: int) -> Path:
    return Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")


def resolve_prefix(path: str | os.PathLike) -> Path:
    """The checkpoint prefix named by ``path``: the prefix itself, its ``.index`` or one of its
    ``.data-*`` files, or a folder holding a TensorFlow ``checkpoint`` state file (its
    ``model_checkpoint_path``) or exactly one ``*.index`` file."""
    p = Path(path)
    s = str(p)
    if s.endswith(".index"):
        return Path(s[: -len(".index")])
    m = re.match(r"^(.*)\.data-\d{5}-of-\d{5}$", s)
    if m:
        return Path(m.group(1))
    if p.is_dir():
        state = p / "checkpoint"
        if state.is_file():
            m = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', state.read_text(errors="replace"),
                          re.MULTILINE)
            if m:
                name = Path(m.group(1))
                cand = name if name.is_absolute() else p / name
                if not Path(f"{cand}.index").is_file():
                    cand = p / name.name  # the state file often holds the trainer's absolute path
                return cand
        indexes = sorted(p.glob("*.index"))
        if len(indexes) == 1:
            return Path(str(indexes[0])[: -len(".index")])
        if not indexes:
            raise BundleError(p, "no checkpoint here (no 'checkpoint' state file and no *.index file)")
        raise BundleError(p, f"{len(indexes)} checkpoints here ({', '.join(i.name for i in indexes[:4])}); "
                             "name one by its prefix")
    return p


class Bundle:
    """An opened checkpoint: :attr:`header`, :attr:`entries` (name → :class:`BundleEntry`),
    :meth:`read` one tensor, :meth:`read_all`."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = resolve_prefix(prefix)
        self.index_path = Path(f"{self.prefix}.index")
        table = read_table(self.index_path)
        if not table or table[0][0] != b"":
            raise BundleError(self.index_path, "corrupt bundle: the header entry (empty key) is missing")
        try:
            self.header = parse_header(table[0][1])
        except ValueError as e:
            raise BundleError(self.index_path, f"corrupt bundle header ({e})") from None
        h = self.header
        if h.min_consumer > BUNDLE_VERSION or BUNDLE_VERSION in h.bad_consumers:
            raise BundleError(self.index_path, f"checkpoint format version needs a newer reader (producer "
                                               f"{h.producer}, min consumer {h.min_consumer}; this reader is "
                                               f"version {BUNDLE_VERSION})")
        if h.num_shards < 1:
            raise BundleError(self.index_path, f"corrupt bundle header: {h.num_shards} data shards")
        self.entries: dict[str, BundleEntry] = {}
        for key, value in table[1:]:
            if key.startswith(b"\x00"):
                continue  # a slice of a partitioned tensor (ordered-code key); see BundleEntry.sliced
            name = key.decode("utf-8", errors="replace")
            try:
                entry = parse_entry(name, value)
            except ValueError as e:
                raise BundleError(self.index_path, f"corrupt entry for {name!r} ({e})") from None
            if not entry.sliced and entry.shard_id >= h.num_shards:
                raise BundleError(self.index_path, f"entry {name!r} names shard {entry.shard_id} of "
                                                   f"{h.num_shards}")
            self.entries[name] = entry

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        return list(self.entries)

    def shard_path(self, shard: int) -> Path:
        return data_filename(self.prefix, shard, self.header.num_shards)

    def _bytes(self, entry: BundleEntry) -> bytes:
        path = self.shard_path(entry.shard_id)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if entry.offset + entry.size > size:
                    raise BundleError(path, f"truncated data shard: {entry.name!r} needs bytes "
                                            f"[{entry.offset}, {entry.offset + entry.size}), the file has {size}")
                f.seek(entry.offset)
                return f.read(entry.size)
        except FileNotFoundError:
            raise BundleError(path, f"missing data shard {entry.shard_id + 1} of {self.header.num_shards} "
                                    f"(holds {entry.name!r})") from None
        except IsADirectoryError:
            raise BundleError(path, "is a folder, expected a data shard") from None

    def read(self, name: str, verify: bool = True) -> np.ndarray:
        """The tensor ``name`` as a numpy array (native byte order; bfloat16 widened exactly to
        float32; strings as an object array of ``bytes``)."""
        if name not in self.entries:
            raise KeyError(f"{self.index_path}: no tensor {name!r} in the checkpoint")
        e = self.entries[name]
        where = self.index_path
        if e.sliced:
            raise BundleError(where, f"{name!r} is a partitioned (sliced) variable; not supported")
        if e.dtype_code not in DTYPES:
            raise BundleError(where, f"{name!r} has unsupported dtype {e.dtype}")
        raw = self._bytes(e)
        count = int(np.prod(e.shape, dtype=np.int64))
        order = "<" if self.header.endianness == "little" else ">"
        if e.dtype == "string":
            out, actual = self._strings(e, raw, count)
        else:
            out, actual = None, (crc32c(raw) if verify else 0)
        if verify and e.crc32c is not None and actual != unmask_crc(e.crc32c):
            raise BundleError(self.shard_path(e.shard_id),
                              f"checksum mismatch for {name!r} (bytes [{e.offset}, {e.offset + e.size})): corrupt "
                              "data shard")
        if out is not None:
            return out
        if e.dtype == "bfloat16":
            if len(raw) != 2 * count:
                raise BundleError(where, f"{name!r}: {len(raw)} bytes for {count} bfloat16 values")
            half = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32)
            return (half << 16).view(np.float32).reshape(e.shape)
        dt = np.dtype(DTYPES[e.dtype_code][1]).newbyteorder(order)
        if len(raw) != dt.itemsize * count:
            raise BundleError(where, f"{name!r}: entry size {len(raw)} bytes, shape {list(e.shape)} of {e.dtype} "
                                     f"needs {dt.itemsize * count}")
        return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="), copy=True).reshape(e.shape)

    def _strings(self, e: BundleEntry, raw: bytes, count: int) -> tuple[np.ndarray, int]:
        """Decode a ``DT_STRING`` entry: varint64 lengths, the masked CRC32C of the lengths (as
        uint32, or uint64 above 2^32), then the bytes. Returns the strings and the entry's CRC as
        the format defines it (lengths, length checksum bytes, string bytes)."""
        where = self.shard_path(e.shard_id)
        lengths, pos = [], 0
        try:
            for _ in range(count):
                ln, pos = _varint(raw, pos)
                lengths.append(ln)
        except _Truncated:
            raise BundleError(where, f"{e.name!r}: truncated string lengths") from None
        if pos + 4 > len(raw):
            raise BundleError(where, f"{e.name!r}: truncated string length checksum")
        order = "<" if self.header.endianness == "little" else ">"
        packed = b"".join(struct.pack(order + ("I" if ln <= 0xFFFFFFFF else "Q"), ln) for ln in lengths)
        stored = struct.unpack_from(order + "I", raw, pos)[0]
        if crc32c(packed) != unmask_crc(stored):
            raise BundleError(where, f"{e.name!r}: string length checksum mismatch (corrupt data shard)")
        crc = crc32c(raw[pos:pos + 4], crc32c(packed))
        pos += 4
        out = np.empty(count, dtype=object)
        for i, ln in enumerate(lengths):
            if pos + ln > len(raw):
                raise BundleError(where, f"{e.name!r}: string {i} runs past the entry")
            out[i] = raw[pos:pos + ln]
            crc = crc32c(out[i], crc)
            pos += ln
        return out.reshape(e.shape), crc

    def read_all(self, names: Iterable[str] | None = None, verify: bool = True) -> dict[str, np.ndarray]:
        return {n: self.read(n, verify) for n in (self.names() if names is None else names)}


def read_bundle(prefix: str | os.PathLike, names: Iterable[str] | None = None,
                verify: bool = True) -> dict[str, np.ndarray]:
    """``{name: array}`` of every tensor (or of ``names``) of the checkpoint ``prefix``."""
    return Bundle(prefix).read_all(names, verify)


def list_bundle(prefix: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype name, shape)}`` from the index alone (the data shards are not opened)."""
    return {n: (e.dtype, e.shape) for n, e in Bundle(prefix).entries.items()}
