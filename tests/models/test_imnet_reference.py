"""Independent numpy re-statements of the IM-NET layers (float64), used as references by the
IM-NET model tests. They follow the original code bases' definitions directly (concatenated
inputs, im2col convolutions), not impax's split/precomputed forms."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def lrelu(x, slope=0.02):
    return np.where(x > 0, x, slope * x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def conv(x, w, stride, pad, bias=None):
    """Channels-last N-d convolution by im2col: ``x [B, *S, Cin]``, ``w [*K, Cin, Cout]``,
    symmetric zero padding ``pad`` on every spatial side, equal ``stride`` on every axis."""
    nd = w.ndim - 2
    x = np.pad(np.asarray(x, np.float64), [(0, 0)] + [(pad, pad)] * nd + [(0, 0)])
    k = w.shape[:nd]
    win = sliding_window_view(x, k, axis=tuple(range(1, nd + 1)))  # [B, *S', Cin, *K]
    win = win[(slice(None),) + (slice(None, None, stride),) * nd]
    # contract Cin and the window axes against w [*K, Cin, Cout]
    wt = np.moveaxis(np.asarray(w, np.float64), nd, 0)  # [Cin, *K, Cout]
    out = np.tensordot(win, wt, axes=(list(range(nd + 1, 2 * nd + 2)), list(range(nd + 1))))
    return out if bias is None else out + bias


def instance_norm(x, eps=1e-5):
    axes = tuple(range(1, x.ndim - 1))
    m = x.mean(axis=axes, keepdims=True)
    v = x.var(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + eps)


def batch_norm(x, scale, bias, mean=None, var=None, eps=1e-5):
    """Inference form with given statistics, or training form (batch statistics) when None."""
    if mean is None:
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def pytorch_decoder(points, z, weights):
    """IM-NET-pytorch generator: ``weights`` = [(W [in, out], b)] × 7; input ``[points, z]``."""
    s, p, _ = points.shape
    h = np.concatenate([points, np.broadcast_to(z[:, None, :], (s, p, z.shape[1]))], axis=-1).astype(np.float64)
    for i, (w, b) in enumerate(weights):
        h = h @ w + b
        h = lrelu(h) if i < len(weights) - 1 else np.maximum(np.minimum(h, 0.01 * h + 0.99), 0.01 * h)
    return h[..., 0]


def tf1_decoder(points, z, weights):
    """Original TF1 generator: pointz = [points, z]; h1..h4 are re-concatenated as [h, pointz]."""
    s, p, _ = points.shape
    pointz = np.concatenate([points, np.broadcast_to(z[:, None, :], (s, p, z.shape[1]))], axis=-1).astype(np.float64)
    h = lrelu(pointz @ weights[0][0] + weights[0][1])
    for w, b in weights[1:5]:
        h = lrelu(np.concatenate([h, pointz], axis=-1) @ w + b)
    w, b = weights[5]
    return sigmoid(h @ w + b)[..., 0]


def voxel_encoder(voxels, convs, bias5):
    """IM-NET encoder: ``convs`` = 5 kernels ``[4,4,4,in,out]``; voxels ``[B, 64, 64, 64]``."""
    x = np.asarray(voxels, np.float64)[..., None]
    for w in convs[:4]:
        x = lrelu(instance_norm(conv(x, w, 2, 1)))
    x = conv(x, convs[4], 1, 0, bias5)
    return sigmoid(x.reshape(x.shape[0], -1))


# ----------------------------------------------------------------------------------------------
# the reference's own building block, checked against scipy


def test_reference_conv_matches_scipy_correlate():
    from scipy.signal import correlate

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 8, 7, 3))
    w = rng.normal(size=(4, 4, 4, 3, 5))
    got = conv(x, w, stride=2, pad=1)
    xp = np.pad(x, [(0, 0), (1, 1), (1, 1), (1, 1), (0, 0)])
    for b in range(2):
        for o in range(5):
            full = sum(correlate(xp[b, ..., c], w[..., c, o], mode="valid") for c in range(3))
            np.testing.assert_allclose(got[b, ..., o], full[::2, ::2, ::2], rtol=1e-12, atol=1e-12)
    assert got.shape == (2, 4, 4, 3, 5)
