"""Rebuild impax's real-mesh evaluation collection from public packages (no hand-made files).

    python scripts/real_meshes.py OUT [--cache DIR]

Downloads two packages from the registries this project uses — Debian's ``sweethome3d-furniture``
(Sweet Home 3D furniture libraries: Blend Swap CC-0 and Kator Legaz models) with ``apt-get
download``, and PyPI's ``pybullet`` wheel (its ``pybullet_data`` meshes) with ``pip download`` —
and writes 43 models as ``OUT/meshes/<class>/<name>.ply`` (the OBJ's geometry, scene parts merged;
materials dropped), ``OUT/train.lst`` / ``OUT/test.lst`` (8 held-out models, fixed below) and
``OUT/manifest.json`` (source package, path inside it, licence note, faces). Then, as the papers'
data is made (watertight meshes first, as OccNet's TSDF fusion; ``docs/tuning.md``), e.g.::

    impax watertight OUT/meshes OUT/wt
    impax prepare OUT/wt OUT/data --quick --skip views \
        --split-list train=OUT/train.lst --split-list test=OUT/test.lst
    impax test RUN --data OUT/data --meshes OUT/wt --split train

or ``impax prepare OUT/meshes …`` to train and score on the raw, open meshes (inside by winding
number; ``python scripts/iou_ceiling.py OUT/meshes`` shows what their thin walls cost any model).

The models are real scanned and CAD meshes with thin parts, open surfaces and many components —
the opposite of the built-in procedural shapes. They are not shipped with impax (licences: Blend
Swap CC-0 models are public domain; Kator Legaz models are CC-BY per the package's copyright file;
pybullet_data models carry their own notices), only this script that rebuilds them.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DEB = "sweethome3d-furniture"
WHEEL = "pybullet==3.2.7"
SH3F = "usr/share/sweethome3d/furniture/{}.sh3f"

#: (class, name, source, path in the archive); the source is "BlendSwap-CC-0" / "KatorLegaz" (a
#: Sweet Home 3D library in the Debian package) or "pybullet" (the wheel).
MODELS: tuple[tuple[str, str, str, str], ...] = (
    ("chair", "oak_chair", "BlendSwap-CC-0", "blendswap-cc-0/oakChair/oakChair.obj"),
    ("chair", "plastic_chair", "BlendSwap-CC-0", "blendswap-cc-0/plasticChair/plasticChair.obj"),
    ("chair", "armchair", "BlendSwap-CC-0", "blendswap-cc-0/armchair/armchair.obj"),
    ("chair", "stool", "BlendSwap-CC-0", "blendswap-cc-0/stool/stool.obj"),
    ("chair", "folding_chair", "BlendSwap-CC-0", "blendswap-cc-0/foldingChair/foldingChair.obj"),
    ("chair", "deck_chair", "BlendSwap-CC-0", "blendswap-cc-0/deckChair/deckChair.obj"),
    ("chair", "cafe_chair", "KatorLegaz", "katorlegaz/cafe-chair/cafe-chair.obj"),
    ("chair", "dining_chair", "KatorLegaz", "katorlegaz/dining-chair/dining-chair.obj"),
    ("chair", "office_chair", "KatorLegaz", "katorlegaz/office-chair/office-chair.obj"),
    ("chair", "bar_stool", "KatorLegaz", "katorlegaz/bar-stool/bar-stool.obj"),
    ("table", "oak_table", "BlendSwap-CC-0", "blendswap-cc-0/oakTable/oakTable.obj"),
    ("table", "desk", "BlendSwap-CC-0", "blendswap-cc-0/desk/desk.obj"),
    ("table", "bedside_table", "BlendSwap-CC-0", "blendswap-cc-0/bedsideTable2/bedsideTable2.obj"),
    ("table", "technical_table", "BlendSwap-CC-0", "blendswap-cc-0/technicalTable1/technicalTable1.obj"),
    ("table", "cafe_table", "KatorLegaz", "katorlegaz/cafe-table/cafe-table.obj"),
    ("table", "folding_table", "KatorLegaz", "katorlegaz/folding-table/folding-table.obj"),
    ("lamp", "desk_lamp", "BlendSwap-CC-0", "blendswap-cc-0/desklamp/desklamp.obj"),
    ("lamp", "lamp", "BlendSwap-CC-0", "blendswap-cc-0/lamp2/lamp2.obj"),
    ("lamp", "outdoor_lamp", "BlendSwap-CC-0", "blendswap-cc-0/outdoorLamp/outdoorLamp.obj"),
    ("lamp", "japanese_lantern", "BlendSwap-CC-0", "blendswap-cc-0/JapaneseLantern/JapaneseLantern.obj"),
    ("lamp", "classic_lamppost", "KatorLegaz", "katorlegaz/classic-lamppost/classic-lamppost.obj"),
    ("lamp", "park_light", "KatorLegaz", "katorlegaz/park-light/park-light.obj"),
    ("lamp", "pedestal_vase_lamp", "KatorLegaz", "katorlegaz/pedestal-vase-lamp/pedestal-vase-lamp.obj"),
    ("sofa", "corner_sofa", "BlendSwap-CC-0", "blendswap-cc-0/L_shaped_sofa/L_shaped_sofa.obj"),
    ("sofa", "sofa", "BlendSwap-CC-0", "blendswap-cc-0/sofa/sofa.obj"),
    ("sofa", "bed", "BlendSwap-CC-0", "blendswap-cc-0/bed1/bed1.obj"),
    ("sofa", "baby_bed", "BlendSwap-CC-0", "blendswap-cc-0/babyRockingBed/babyRockingBed.obj"),
    ("sofa", "mid_century_sofa", "KatorLegaz", "katorlegaz/mid-century-sofa/mid-century-sofa.obj"),
    ("mug", "coffee_cup", "BlendSwap-CC-0", "blendswap-cc-0/caffe_final/caffe_final.obj"),
    ("mug", "coffee_mug", "KatorLegaz", "katorlegaz/coffee-mug/coffee-mug.obj"),
    ("mug", "bullet_mug", "pybullet", "pybullet_data/objects/mug.obj"),
    ("object", "teddy_bear", "BlendSwap-CC-0", "blendswap-cc-0/teddyBear/teddyBear.obj"),
    ("object", "rocking_horse", "BlendSwap-CC-0", "blendswap-cc-0/caballito/caballito.obj"),
    ("object", "barrel", "BlendSwap-CC-0", "blendswap-cc-0/barrel/barrel.obj"),
    ("object", "bench", "BlendSwap-CC-0", "blendswap-cc-0/bench/bench.obj"),
    ("object", "dustbin", "BlendSwap-CC-0", "blendswap-cc-0/dustbin/dustbin.obj"),
    ("object", "fire_hydrant", "KatorLegaz", "katorlegaz/fire-hydrant/fire-hydrant.obj"),
    ("object", "park_trashcan", "KatorLegaz", "katorlegaz/park-trashcan/park-trashcan.obj"),
    ("object", "duck", "pybullet", "pybullet_data/duck.obj"),
    ("object", "bunny", "pybullet", "pybullet_data/bunny.obj"),
    ("object", "soccer_ball", "pybullet", "pybullet_data/soccerball.obj"),
    ("object", "torus", "pybullet", "pybullet_data/torus/torus_textured.obj"),
    ("object", "lego_brick", "pybullet", "pybullet_data/lego/lego.obj"),
)
#: Held-out models (one or two per class), never trained on.
HELDOUT = ("plastic_chair", "office_chair", "desk", "lamp", "sofa", "coffee_mug", "teddy_bear", "bunny")
LICENCE = {"BlendSwap-CC-0": "CC0 (Blend Swap), via Debian sweethome3d-furniture",
           "KatorLegaz": "Kator Legaz models via Debian sweethome3d-furniture (see its copyright file)",
           "pybullet": "pybullet_data (bullet3, see the pybullet wheel's notices)"}


def _fetch(cache: Path) -> tuple[Path, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{DEB}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", DEB], cwd=cache, check=True)
        debs = sorted(cache.glob(f"{DEB}_*.deb"))
    wheels = sorted(cache.glob("pybullet-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", WHEEL,
                        "-d", str(cache)], check=True)
        wheels = sorted(cache.glob("pybullet-*.whl"))
    deb_dir = cache / "deb"
    if not (deb_dir / SH3F.format("BlendSwap-CC-0")).is_file():
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(deb_dir)], check=True)
    return deb_dir, wheels[-1]


def _load_obj(archive: zipfile.ZipFile, path: str):
    """An OBJ inside a zip as one trimesh (scene parts merged, materials ignored)."""
    import trimesh

    data = archive.read(path)
    loaded = trimesh.load(io.BytesIO(data), file_type="obj", process=False, skip_materials=True,
                          force="mesh")
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"{path}: no faces")
    return loaded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--cache", type=Path, default=None, help="download folder (default: a temporary one)")
    args = ap.parse_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="impax-real-"))
    deb_dir, wheel = _fetch(cache)
    archives = {name: zipfile.ZipFile(deb_dir / SH3F.format(name)) for name in ("BlendSwap-CC-0", "KatorLegaz")}
    archives["pybullet"] = zipfile.ZipFile(wheel)
    out = args.out
    manifest = []
    for cls, name, source, path in MODELS:
        mesh = _load_obj(archives[source], path)
        dst = out / "meshes" / cls / f"{name}.ply"
        dst.parent.mkdir(parents=True, exist_ok=True)
        mesh.export(dst)
        manifest.append({"id": f"{cls}_{name}", "class": cls, "file": str(dst.relative_to(out)), "source": source,
                         "path": path, "licence": LICENCE[source], "faces": int(len(mesh.faces)),
                         "split": "test" if name in HELDOUT else "train"})
        print(f"{dst}  {len(mesh.faces)} faces", flush=True)
    (out / "train.lst").write_text("".join(f"{m['id']}\n" for m in manifest if m["split"] == "train"))
    (out / "test.lst").write_text("".join(f"{m['id']}\n" for m in manifest if m["split"] == "test"))
    (out / "manifest.json").write_text(json.dumps({"packages": [DEB, WHEEL], "models": manifest}, indent=1) + "\n")
    print(f"{len(manifest)} models ({sum(m['split'] == 'test' for m in manifest)} held out) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
