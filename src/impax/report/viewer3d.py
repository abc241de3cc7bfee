"""Interactive 3D viewers for the demo report, working offline from ``file://``.

Each mesh is written beside the page as ``report/3d/<row>/<name>.glb`` (plain glTF 2.0: float32
positions, 16- or 32-bit indices) and as ``<name>.glb.js``, a classic script that registers the same
bytes in base64 under ``window.IMPAX_GLB[<name>.glb path]``: Chromium refuses ``fetch()``/XHR and
module imports of ``file://`` URLs but runs classic ``<script src>`` tags, so that is how the page
gets the bytes. three.js (core, OrbitControls, GLTFLoader) is the vendored classic bundle in
``vendor/`` (see its README), copied to ``report/assets/``. ``viewer3d.js`` (inlined into the page)
starts a row's viewers when it scrolls into view, or all of them from a button or
``impaxViewers.initAll()``; all viewers draw through one shared WebGL context into their own 2D
canvases (so twenty rows never hit the browser's limit on WebGL contexts), and the viewers of one
row share one camera.

Meshes above ``max_faces`` faces are simplified for the viewers only: quadric edge collapse
(libigl) for closed edge-manifold meshes, vertex clustering otherwise.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np

VENDOR = Path(__file__).resolve().parent / "vendor"
BUNDLE = "impax-three.min.js"
THREE_VERSION = "0.187.0"
#: Folders under ``report/``: the three.js bundle and its licence; the meshes.
ASSETS_DIR, MESH_DIR = "assets", "3d"
#: Face cap of one viewer mesh: about 280 kB (glb + its base64 script) per mesh at the cap.
DEFAULT_MAX_FACES = 10_000
#: CSS pixels of one viewer (square).
VIEWER_PX = 240

_GLB_MAGIC, _JSON, _BIN = 0x46546C67, 0x4E4F534A, 0x004E4942


def viewer_script() -> str:
    """The viewers' JavaScript (inlined into the page)."""
    return (Path(__file__).resolve().parent / "viewer3d.js").read_text(encoding="utf-8")


def copy_assets(report_dir: Path) -> Path:
    """Copy the three.js bundle and its licence into ``report_dir/assets``; returns the bundle."""
    dest = Path(report_dir) / ASSETS_DIR
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(VENDOR / BUNDLE, dest / BUNDLE)
    shutil.copyfile(VENDOR / "LICENSE", dest / "three.js-LICENSE.txt")
    return dest / BUNDLE


def _cluster(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering on a grid of ``cell``: one vertex (the mean) per occupied cell, collapsed
    and repeated faces dropped."""
    keys = np.floor((vertices - vertices.min(axis=0)) / cell).astype(np.int64)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, inv, vertices)
    f = inv[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    f = f[np.sort(first)]
    used, f = np.unique(f, return_inverse=True)
    return (sums / counts[:, None])[used], f.reshape(-1, 3)


def simplify(mesh, max_faces: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(vertices, faces, method)`` with at most ``max_faces`` faces (``method``: "" when ``mesh``
    already has that few, else how it was simplified)."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    if len(f) <= max_faces:
        return v, f, ""
    if mesh.is_watertight:  # every edge shared by exactly two faces: what edge collapse assumes
        try:
            import igl

            res = igl.decimate(v, f, int(max_faces))
            if isinstance(res[0], (bool, np.bool_)):  # older bindings: (ok, U, G, J, I)
                res = res[1:] if res[0] else None
            if res is not None and 0 < len(res[1]) <= max_faces:
                return np.asarray(res[0], np.float64), np.asarray(res[1], np.int64), "quadric edge collapse"
        except Exception:  # noqa: BLE001 - fall back to clustering
            pass
    area = float(mesh.area) or 1.0
    cell = np.sqrt(2.0 * area / max_faces)
    for _ in range(12):
        cv, cf = _cluster(v, f, cell)
        if len(cf) <= max_faces:
            return cv, cf, "vertex clustering"
        cell *= 1.2
    return cv, cf, "vertex clustering"


def glb_bytes(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """A binary glTF 2.0 of one triangle mesh: float32 positions, uint16 indices when they fit."""
    pos = np.ascontiguousarray(vertices, dtype="<f4").reshape(-1, 3)
    small = len(pos) <= 65535
    idx = np.ascontiguousarray(faces, dtype="<u2" if small else "<u4").reshape(-1)
    ib = idx.tobytes()
    ib += b"\0" * (-len(ib) % 4)
    pb = pos.tobytes()
    doc = {
        "asset": {"version": "2.0", "generator": "impax report"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 1}, "indices": 0, "mode": 4}]}],
        "buffers": [{"byteLength": len(ib) + len(pb)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": idx.nbytes, "target": 34963},
                        {"buffer": 0, "byteOffset": len(ib), "byteLength": len(pb), "target": 34962}],
        "accessors": [
            {"bufferView": 0, "componentType": 5123 if small else 5125, "count": int(idx.size), "type": "SCALAR"},
            {"bufferView": 1, "componentType": 5126, "count": int(len(pos)), "type": "VEC3",
             "min": pos.min(axis=0).tolist() if len(pos) else [0, 0, 0],
             "max": pos.max(axis=0).tolist() if len(pos) else [0, 0, 0]}],
    }
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    binary = ib + pb
    total = 12 + 8 + len(js) + 8 + len(binary)
    return (struct.pack("<III", _GLB_MAGIC, 2, total) + struct.pack("<II", len(js), _JSON) + js
            + struct.pack("<II", len(binary), _BIN) + binary)


def safe_name(text: str) -> str:
    """``text`` as one file-name part (letters, digits, ``._-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "shape"
    return name[:80]


def write_glb(mesh, report_dir: Path, rel: str, max_faces: int = DEFAULT_MAX_FACES) -> dict:
    """Write ``report_dir/rel`` (a .glb) and ``rel + ".js"``; returns ``{"glb": rel, "faces",
    "original_faces", "method", "bytes"}`` (bytes: both files)."""
    v, f, method = simplify(mesh, int(max_faces))
    data = glb_bytes(v, f)
    path = Path(report_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    script = (f"(window.IMPAX_GLB=window.IMPAX_GLB||{{}})[{json.dumps(rel)}]="
              f"\"{base64.b64encode(data).decode('ascii')}\";\n")
    js = path.with_name(path.name + ".js")
    js.write_text(script, encoding="ascii")
    return {"glb": rel, "faces": int(len(f)), "original_faces": int(len(mesh.faces)), "method": method,
            "bytes": len(data) + js.stat().st_size}


def hex_color(rgb) -> str:
    r, g, b = (int(round(255 * min(max(float(c), 0.0), 1.0))) for c in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def viewer_div(glb: str, color, label: str) -> str:
    """One viewer: a canvas the script draws into and a message line (shown until it draws)."""
    px = VIEWER_PX
    return (f'<div class="v3d" data-glb="{html.escape(glb)}" data-color="{hex_color(color)}" '
            f'data-label="{html.escape(label)}"><canvas width="{px}" height="{px}" aria-label="'
            f'{html.escape(label)} (drag to orbit, wheel to zoom)"></canvas><div class="v3d-msg">'
            "3D view: scroll here or press the button above</div></div>")


def row_attrs(bounds: np.ndarray, radius: float, azimuth: float, elevation: float) -> str:
    """The ``<tr>`` attributes of one row of viewers: the shared camera's target, framing radius
    and starting view (as the static renders: y up, azimuth 0 on +z)."""
    centre = np.asarray(bounds, dtype=np.float64).reshape(2, 3).mean(axis=0)
    return (f'class="v3d-row" data-center="{",".join(f"{c:.6g}" for c in centre)}" '
            f'data-radius="{float(radius):.6g}" data-az="{azimuth:g}" data-el="{elevation:g}"')
