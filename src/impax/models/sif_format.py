"""File formats of google/ldif: SIF v1 text shapes and the ``extracted.occnet`` decoder weights.

**SIF v1** (``predict.Decoder.encode_sif_v1``; read by ``ldif2mesh.cu``)::

    SIF
    N 0 L
    c  cx cy cz  sx sy sz  roll pitch yaw  sym  [L latents]     # N lines

``s`` is the per-axis standard deviation (sqrt of the variance), ``sym`` is 1 for the first
elements that get a z-mirrored twin and 0 after (the kernel rejects a 1 after a 0); numbers are
written with ``%.9g``, which round-trips float32 exactly. Files written by :func:`write_sif` are
read back bit-identically by :func:`read_sif`. The file has no radius type: shapes read from it
are ``cov`` (the kernel's general formula; ``aa`` shapes have zero angles).

**extracted.occnet** (``OccNet::LoadFile``): little-endian ``int32 num_blocks, int32 width``,
then float32 arrays in :func:`impax.models.occnet.weight_layout` order (input FC; per block CBN1,
FC1, CBN2, FC2; final CBN; output FC; each FC ``[in, out]`` input-major then its bias; each CBN
beta FC, gamma FC, running mean, running variance). The latent length equals the width.

Every problem is a :class:`FormatError` naming the file and the reason.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from impax.models.occnet import Weights, infer_sizes, weight_layout
from impax.models.sif import StructuredImplicit


class FormatError(ValueError):
    """A malformed SIF or occnet file; ``str()`` is ``"PATH: REASON"``."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _fmt(v: float) -> str:
    return "%.9g" % float(np.float32(v))


def encode_sif_v1(sif: StructuredImplicit) -> str:
    """The SIF v1 text of one unbatched shape."""
    s = sif.as_numpy()
    if s.constants.ndim != 1:
        raise ValueError("encode_sif_v1 needs an unbatched StructuredImplicit")
    n, latent = s.element_count, s.latent_size
    lines = ["SIF", f"{n} 0 {latent}"]
    for i in range(n):
        vals = [s.constants[i], *s.centers[i], *s.sigmas[i], *s.rotations[i]]
        row = " ".join(_fmt(v) for v in vals) + f" {int(i < s.symmetric_count)}"
        if latent:
            row += " " + " ".join(_fmt(v) for v in s.latents[i])
        lines.append(row)
    return "\n".join(lines) + "\n"


def write_sif(path, sif: StructuredImplicit) -> None:
    """Write one shape as a SIF v1 text file."""
    Path(path).write_text(encode_sif_v1(sif))


def _parse_float(tok: str, path, where: str) -> np.float32:
    try:
        v = float(tok)
    except ValueError:
        raise FormatError(path, f"{where}: {tok!r} is not a number") from None
    if not math.isfinite(v):
        raise FormatError(path, f"{where}: non-finite value {tok!r}")
    return np.float32(v)


def decode_sif_v1(text: str, path="<string>") -> StructuredImplicit:
    """Parse SIF v1 text (see the module docstring) into a ``cov`` :class:`StructuredImplicit`."""
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines or lines[0] != "SIF":
        got = lines[0][:40] if lines else "an empty file"
        raise FormatError(path, f"line 1: expected the header 'SIF', got {got!r}")
    if len(lines) < 2:
        raise FormatError(path, "truncated: missing line 2 'N VERSION L'")
    head = lines[1].split()
    if len(head) != 3 or not all(t.lstrip("-").isdigit() for t in head):
        raise FormatError(path, f"line 2: expected three integers 'N VERSION L', got {lines[1][:60]!r}")
    n, version, latent = (int(t) for t in head)
    if version != 0:
        raise FormatError(path, f"line 2: unsupported SIF version {version} (only 0)")
    if n < 0 or latent < 0:
        raise FormatError(path, f"line 2: negative element count or latent length ({n}, {latent})")
    rows = lines[2:]
    if len(rows) < n:
        raise FormatError(path, f"truncated: header announces {n} elements, file has {len(rows)} element lines")
    if len(rows) > n and any(rows[n:]):
        raise FormatError(path, f"wrong count: header announces {n} elements, file has {len(rows)} lines after it")
    expected = 11 + latent
    data = np.zeros((n, 10), np.float32)
    lat = np.zeros((n, latent), np.float32)
    sym = np.zeros(n, np.int64)
    for i in range(n):
        toks = rows[i].split()
        where = f"line {i + 3} (element {i})"
        if len(toks) != expected:
            raise FormatError(path, f"{where}: expected {expected} values (10 explicit + symmetry flag + "
                                    f"{latent} latents), got {len(toks)}")
        data[i] = [_parse_float(t, path, where) for t in toks[:10]]
        if toks[10] not in ("0", "1"):
            raise FormatError(path, f"{where}: symmetry flag must be 0 or 1, got {toks[10]!r}")
        sym[i] = int(toks[10])
        lat[i] = [_parse_float(t, path, where) for t in toks[11:]]
    k = int(np.argmin(sym)) if (sym == 0).any() else n
    if sym[k:].any():
        raise FormatError(path, "symmetric elements (flag 1) must come first, before all flag-0 elements")
    if (data[:, 4:7] < 0).any():
        raise FormatError(path, "negative radius (standard deviation) value")
    return StructuredImplicit(constants=data[:, 0], centers=data[:, 1:4], sigmas=data[:, 4:7],
                              rotations=data[:, 7:10], latents=lat if latent else None,
                              symmetric_count=k, radius_type="cov")


def read_sif(path) -> StructuredImplicit:
    """Read a SIF v1 text file; raises :class:`FormatError` with the path and the problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise FormatError(path, f"cannot read file ({e.strerror or e})") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(path, "not a SIF text file (non-ASCII bytes)") from None
    return decode_sif_v1(text, path)


# ---------------------------------------------------------------------------------------------
# extracted.occnet


def encode_occnet(weights: Weights) -> bytes:
    """Serialise decoder weights to the ``extracted.occnet`` byte layout."""
    width, latent, blocks = infer_sizes(weights)
    if latent != width:
        raise ValueError(f"the occnet format needs latent length == width, got {latent} != {width}")
    parts = [struct.pack("<ii", blocks, width)]
    for name, shape in weight_layout(width, latent, blocks):
        arr = np.asarray(weights[name], dtype="<f4")
        if arr.shape != shape:
            raise ValueError(f"weight {name} has shape {arr.shape}, expected {shape}")
        parts.append(arr.tobytes(order="C"))
    return b"".join(parts)


def write_occnet(path, weights: Weights) -> None:
    Path(path).write_bytes(encode_occnet(weights))


#: The local decoder's file in a run folder (google/ldif's name for it).
DECODER_FILE = "extracted.occnet"


def write_decoder_file(folder, weights: Weights) -> Path:
    """Write ``folder/extracted.occnet`` atomically (a temporary file, then a rename)."""
    path = Path(folder) / DECODER_FILE
    tmp = path.with_name(path.name + ".tmp")
    write_occnet(tmp, weights)
    tmp.replace(path)
    return path


def decode_occnet(raw: bytes, path="<bytes>") -> Weights:
    """Parse ``extracted.occnet`` bytes into a weight dict of float32 numpy arrays."""
    if len(raw) < 8:
        raise FormatError(path, f"truncated: {len(raw)} bytes, the header alone needs 8")
    blocks, width = struct.unpack("<ii", raw[:8])
    if not (0 <= blocks <= 64) or not (1 <= width <= 4096):
        raise FormatError(path, f"implausible header (residual blocks={blocks}, width={width})")
    layout = weight_layout(width, width, blocks)
    count = sum(int(np.prod(s)) for _, s in layout)
    expected = 8 + 4 * count
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "trailing data"
        raise FormatError(path, f"{what}: {len(raw)} bytes, expected {expected} for {blocks} residual block(s) "
                                f"of width {width} ({count} float32 values)")
    flat = np.frombuffer(raw, dtype="<f4", offset=8, count=count).astype(np.float32)
    if not np.all(np.isfinite(flat)):
        bad = int(np.argmax(~np.isfinite(flat)))
        raise FormatError(path, f"non-finite value (NaN/Inf) at float index {bad}")
    out: Weights = {}
    off = 0
    for name, shape in layout:
        size = int(np.prod(shape))
        out[name] = flat[off:off + size].reshape(shape).copy()
        off += size
        if name.endswith(".var") and out[name] < 0:
            raise FormatError(path, f"negative running variance in {name[:-4]}")
    return out


def read_occnet(path) -> Weights:
    """Read an ``extracted.occnet`` file; raises :class:`FormatError` with the path and the problem."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise FormatError(path, f"cannot read file ({e.strerror or e})") from None
    return decode_occnet(raw, path)
