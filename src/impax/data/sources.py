"""Finding the meshes of a dataset folder, naming them, and splitting them.

Recognised layouts (mixed freely inside one folder; found by walking it):

* ShapeNet v2: ``<synset>/<model id>/models/model_normalized.obj`` → class = synset, model = model id;
* ShapeNet v1: ``<synset>/<model id>/model.obj`` → class = synset, model = model id;
* class folders: ``<class>/<file>.<ext>`` → class = folder name, model = file stem;
* a flat folder: ``<file>.<ext>`` → no class (``""``), model = file stem;
* anything deeper: class = first folder, model = the remaining path joined with ``_``.

Only files with a mesh suffix (:data:`impax.geometry.mesh_io.MESH_SUFFIXES`) are considered, so
ShapeNet's textures and ``.mtl`` files are ignored. Bad meshes are *listed* here and rejected later
by the prepare job, which reports them.

Symbolic links are followed, to files and to folders alike (a dataset assembled from links to
class folders elsewhere is found whole); a folder reached twice (a link loop, or two links to one
place) is walked once. Names starting with ``.`` are skipped.

Shape ids are ``<class>_<model>`` (or ``<model>`` without a class) with characters outside
``[A-Za-z0-9._-]`` replaced by ``-``; when two files map to the same id with different suffixes
(``a.obj`` and ``a.ply``) both get their suffix appended (``a_obj``, ``a_ply``); files that still
share an id after that (``a b.ply`` and ``a-b.ply``) each get ``-`` and the first 8 hex digits of
the sha256 of their relative path appended (``a-b-1f2e3d4c``). Ids are unique and stable: they
depend on the file's own path and on which other files collide with it, never on the order of
discovery.

Splits are deterministic: by default a hash of the shape id puts it in train/val/test with
fractions 0.8/0.1/0.1 (:data:`DEFAULT_SPLIT_FRACTIONS`; the hash ignores the order and number of
other shapes, so adding shapes never moves existing ones). IM-NET's official data instead split the
sorted names 80/20 train/test, and LDIF uses OccNet's lists: pass user split lists (text files, one
shape id, ``class/model`` or model id per line) to reproduce those; shapes in no list get the split
``"unlisted"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from impax.geometry.mesh_io import MESH_SUFFIXES

#: (train, val, test) fractions of the hash split.
DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
SPLITS = ("train", "val", "test")

_BAD = re.compile(r"[^A-Za-z0-9._-]")


@dataclasses.dataclass(frozen=True)
class SourceShape:
    """One mesh file of a dataset folder."""

    shape_id: str
    cls: str
    model_id: str
    path: Path  # absolute
    rel: str  # path relative to the dataset root (posix)
    split: str = ""


def _clean(s: str) -> str:
    return _BAD.sub("-", s)


def shape_id_of(cls: str, model: str) -> str:
    """The shape id of ``model`` of class ``cls`` (``<class>_<model>``, or ``<model>`` without a
    class), before any collision suffix (see the module doc)."""
    return _clean(f"{cls}_{model}" if cls else model)


def _classify(parts: tuple[str, ...]) -> tuple[str, str]:
    """(class, model) for a path relative to the root, given as its parts."""
    name = parts[-1]
    stem = Path(name).stem
    if name == "model_normalized.obj" and len(parts) >= 4 and parts[-2] == "models":
        return parts[-4], parts[-3]
    if name == "model.obj" and len(parts) >= 3:
        return parts[-3], parts[-2]
    if len(parts) == 1:
        return "", stem
    if len(parts) == 2:
        return parts[0], stem
    return parts[0], "_".join([*parts[1:-1], stem])


def _walk(root: Path) -> list[Path]:
    """Every file under ``root`` (sorted), following links to folders, each real folder once;
    names starting with ``.`` are skipped."""
    import os

    seen: set[tuple[int, int]] = set()
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # a loop, or a second link to the same folder
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    return sorted(files)


def discover(root: str | Path) -> list[SourceShape]:
    """All mesh files under ``root``, sorted by shape id (split not assigned yet)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"source folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"source {root} is not a folder")
    found = []
    for p in _walk(root):
        if p.suffix.lower() not in MESH_SUFFIXES or not (p.is_file() or p.is_symlink()):
            continue
        rel = p.relative_to(root)
        cls, model = _classify(rel.parts)
        found.append((cls, model, p, rel.as_posix()))
    base: dict[str, list[str]] = {}
    for cls, model, _, rel in found:
        sid = shape_id_of(cls, model)
        base.setdefault(sid, []).append(rel)
    named = []
    for cls, model, p, rel in found:
        sid = shape_id_of(cls, model)
        if len(base[sid]) > 1 and len({Path(r).suffix.lower() for r in base[sid]}) > 1:
            sid = f"{sid}_{_clean(p.suffix.lower().lstrip('.'))}"
            model = f"{model}_{p.suffix.lower().lstrip('.')}"
        named.append([sid, cls, model, p, rel])
    counts: dict[str, int] = {}
    for item in named:
        counts[item[0]] = counts.get(item[0], 0) + 1
    shapes = []
    for sid, cls, model, p, rel in named:
        if counts[sid] > 1:  # e.g. "a b.obj" and "a-b.obj": a hash of the path tells them apart
            tag = hashlib.sha256(rel.encode()).hexdigest()[:8]
            sid, model = f"{sid}-{tag}", f"{model}-{tag}"
        shapes.append(SourceShape(sid, cls, model, p.resolve(), rel))
    return sorted(shapes, key=lambda s: s.shape_id)


def hash_unit(text: str, salt: str = "") -> float:
    """A stable number in [0, 1) from a string (sha256)."""
    h = hashlib.sha256(f"{salt}{text}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def hash_split(shape_id: str, fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """train/val/test by hashing the id with the given fractions (normalised to sum 1)."""
    f = [float(x) for x in fractions]
    if len(f) != 3 or min(f) < 0 or sum(f) <= 0:
        raise ValueError(f"split fractions must be 3 non-negative numbers, got {fractions}")
    u = hash_unit(shape_id, "split:") * sum(f)
    if u < f[0]:
        return "train"
    if u < f[0] + f[1]:
        return "val"
    return "test"


def read_split_lists(lists: Mapping[str, str | Path]) -> dict[str, str]:
    """``{split: text file}`` → ``{entry: split}``; blank lines and ``#`` comments ignored."""
    out: dict[str, str] = {}
    for split, path in lists.items():
        for line in Path(path).read_text().splitlines():
            entry = line.split("#", 1)[0].strip()
            if entry:
                out[entry] = split
    return out


def assign_splits(shapes: Sequence[SourceShape], fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                  lists: Mapping[str, str | Path] | None = None) -> list[SourceShape]:
    """Shapes with ``split`` filled in: from user ``lists`` if given, else by :func:`hash_split`."""
    if not lists:
        return [dataclasses.replace(s, split=hash_split(s.shape_id, fractions)) for s in shapes]
    table = read_split_lists(lists)
    out = []
    for s in shapes:
        split = "unlisted"
        for key in (s.shape_id, f"{s.cls}/{s.model_id}", s.model_id):
            if key in table:
                split = table[key]
                break
        out.append(dataclasses.replace(s, split=split))
    return out


def shard_of(shape_id: str, n: int) -> int:
    """The shard (0 .. n-1) a shape belongs to: a hash of its id, independent of the other shapes."""
    return int(hash_unit(shape_id, "shard:") * n)
