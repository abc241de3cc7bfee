"""The IM-NET decode core shared by IM-AE, IM-GAN and IM-SVR inference: load an IM-AE run, query its
decoder for one code, and mesh the 0.5 level set with the multi-resolution extractor
(:func:`impax.inference.extract.extract_mesh`, the idea of IM-NET's ``z2voxel``) instead of the
original's Python loops; the decoder's per-shape part is computed once per code
(:func:`impax.models.imnet_codes.decoder_query`). Frames: the model lives in the IM-NET frame
(bounding box centred, diagonal 1); ``extract`` maps to an original frame when given its transform.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from impax.conventions import IMNET_BOX_HALF, IMNET_ISO_LEVEL, Transform
from impax.inference.extract import LEARNED_FRAME, coarse_resolution, extract_mesh
from impax.models.imnet_codes import decoder_query
from impax.models.platform import QUERY_BATCH_CPU, query_batch
from impax.train.runs import load_imnet_ae

#: Why a decoded IM-NET shape can be empty (the row's ``reason`` when the extractor gives none).
EMPTY_REASON = "empty mesh: the decoded occupancy never crosses 0.5"

#: Query batch of the extractor on CPU (fixed, so the decoder compiles once); :func:`extract` uses
#: :func:`impax.models.platform.query_batch` (larger off CPU).
QUERY_BATCH = QUERY_BATCH_CPU


# ----------------------------------------------------------------------------------------------
# loading a run


def load_ae(run: str | Path) -> tuple[Any, dict[str, Any]]:
    """The trained IM-AE of an ``imnet-ae`` run: ``(model, run.json)`` with ``model`` an
    :class:`~impax.models.imnet.IMNetAE` rebuilt from ``run.json`` holding the newest checkpoint's
    parameters (:func:`impax.train.runs.load_imnet_ae`)."""
    return load_imnet_ae(run)


class DecoderQuery:
    """``fn(z)`` → a ``[B, 3] → [B]`` occupancy function for :func:`extract_mesh`
    (:func:`impax.models.imnet_codes.decoder_query`: the decoder's per-shape part computed once;
    one compilation for all shapes of a batch size)."""

    def __init__(self, decoder: Any):
        self.decoder = decoder

    def __call__(self, z: np.ndarray):
        return decoder_query(self.decoder, z)


def extract(query: DecoderQuery, z: np.ndarray, resolution: int, transform: Transform | None = None) -> Any:
    """Mesh the 0.5 level set of the decoder for code ``z`` in IM-NET's box (``inside="above"``),
    mapped to the original frame by ``transform`` (original → IM-NET) when given."""
    return extract_mesh(query(z), resolution, level=IMNET_ISO_LEVEL, half=IMNET_BOX_HALF,
                        coarse=coarse_resolution(resolution, LEARNED_FRAME), inside="above", batch_size=query_batch(),
                        transform=transform, frame="imnet" if transform is not None else None)
