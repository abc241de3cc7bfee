"""IM-SVR inference: meshes from single images through an ``imnet-svr`` run.

Follows IM-NET-pytorch's ``IM_SVR.test_mesh`` flow (one 128² grayscale view → image encoder → code →
the AE decoder → mesh of the 0.5 level set), with impax's multi-resolution extractor. Meshes are in
the IM-NET frame (centred bounding box, unit diagonal): an image carries no original frame.

Image preparation matches training (the ``imnet-svr`` recipe's view loader): RGBA is
alpha-composited on white, colour is converted to gray (ITU-R 601 luma, PIL's ``"L"``), a
non-square image is padded with white to a square, which is resized to 137² (IM-NET's render size)
when it is not already, then centre-cropped to 128² and scaled to ``pixel/255``. A render of
:func:`impax.geometry.render.render_views` saved as PNG goes through unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from impax.configs import from_dict
from impax.models.imnet import IMNetConfig
from impax.models.imnet_svr import VIEW_SIZE, SVRConfig, SVRModel, crop_views, encode_images
from impax.train.checkpoint import load_model
from impax.train.runs import read_run


def load_svr(run: str | Path) -> tuple[Any, SVRConfig, dict[str, Any]]:
    """``(SVRModel with the newest checkpoint's parameters, in eval mode; its SVRConfig; run.json)``,
    rebuilt from ``run.json``. The run holds the frozen AE decoder too, so the AE run is not needed."""
    info = read_run(run)
    if info.get("recipe") != "imnet-svr":
        raise ValueError(f"{run}: an imnet-svr run is needed, run.json says {info.get('recipe')!r}")
    cfg = from_dict(SVRConfig, info["config"]["model"])
    model = SVRModel(cfg, from_dict(IMNetConfig, info["ae_model"]), rngs=nnx.Rngs(0))
    load_model(run, model)
    model.eval()
    return model, cfg, info


def image_pixels(path: str | Path, size: int = 137) -> np.ndarray:
    """A PNG/JPEG file → uint8 ``[size, size]`` gray on white (see the module docstring)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, rgba)
        gray = im.convert("L")
    w, h = gray.size
    if w != h:
        side = max(w, h)
        canvas = Image.new("L", (side, side), 255)
        canvas.paste(gray, ((side - w) // 2, (side - h) // 2))
        gray = canvas
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.BILINEAR)
    return np.asarray(gray, np.uint8)


def reconstruct_images(run: str | Path, inputs: Sequence[str | Path], out: str | Path, resolution: int = 128,
                       mesh_format: str = "ply", **kw: Any) -> list[dict[str, Any]]:
    """Meshes ``out/<stem>.<mesh_format>`` of single images (PNG files) through an ``imnet-svr``
    run, in the IM-NET frame; one row per input ``{"id", "input", "path", "ok", "queries",
    "seconds", ...}`` (``ok`` False with a ``reason`` for an unreadable image or an empty mesh)."""
    from impax.inference.extract import safe_name, save_row
    from impax.inference.imnet_decode import EMPTY_REASON, DecoderQuery, extract

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, cfg, _ = load_svr(run)
    query = DecoderQuery(model.generator)
    rows = []
    for p in inputs:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"id": Path(p).stem, "input": str(p), "path": None, "ok": False, "frame": "imnet"}
        try:
            img = crop_views(image_pixels(p, VIEW_SIZE), cfg.image_size)
            z = encode_images(model.encoder, img[None])[0]
            res = extract(query, z, resolution)
            save_row(row, res, out / f"{safe_name(Path(p).stem)}.{mesh_format}", empty_reason=EMPTY_REASON)
        except Exception as e:  # one bad input must not stop the batch
            row["reason"] = f"{type(e).__name__}: {e}".splitlines()[0]
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    return rows
