"""Choices that depend on the platform JAX runs on (``jax.default_backend()``: ``"cpu"``, ``"gpu"``,
``"tpu"``), made in one place so training, inference and ``impax info`` agree.

* :func:`query_batch`: points per compiled query call of the mesh extractors and
  :func:`~impax.models.ldif_model.shape_values`. 32768 on CPU (measured there: larger batches
  gain nothing and cost memory); 262144 elsewhere, where one call of 32768 points leaves most of
  an accelerator idle between launches.
* :func:`device_masks`: whether the sparse LDIF query keeps its activity masks on the device
  (:class:`~impax.models.ldif_query.SparseLdifQuery`): off CPU a round trip to the host per batch
  stalls the device; on CPU host and device share memory and ``np.nonzero`` is the faster path.
* :func:`matmul_precision`: the float32 matmul precision in effect (``JAX_DEFAULT_MATMUL_PRECISION``
  / ``jax.config.jax_default_matmul_precision``).

The IM-NET encoder's own choice (space-to-depth on CPU, ``nnx.Conv`` elsewhere) is
:func:`impax.models.imnet_s2d.resolve_encoder`. Every function takes the platform as an argument
(``None``: the current backend), so the choices are testable without the hardware.
"""

from __future__ import annotations

#: :func:`query_batch` on CPU and on accelerators.
QUERY_BATCH_CPU = 32768
QUERY_BATCH_ACCELERATOR = 262144

#: What :func:`matmul_precision` says when JAX's default is in effect on a GPU.
TF32_NOTE = ("TF32 may be used for float32 matmuls on NVIDIA GPUs unless "
             "JAX_DEFAULT_MATMUL_PRECISION=highest")


def platform(name: str | None = None) -> str:
    """``name`` lower-cased, or the current backend's (``jax.default_backend()``) when ``None``."""
    if name is not None:
        return str(name).lower()
    import jax

    return jax.default_backend()


def is_cpu(name: str | None = None) -> bool:
    """Whether ``name`` (``None``: the current backend) is the CPU."""
    return platform(name) == "cpu"


def query_batch(name: str | None = None) -> int:
    """Points per compiled query call on ``name`` (``None``: the current backend)."""
    return QUERY_BATCH_CPU if is_cpu(name) else QUERY_BATCH_ACCELERATOR


def device_masks(name: str | None = None) -> bool:
    """Whether the sparse LDIF query keeps its masks on the device (every platform but the CPU)."""
    return not is_cpu(name)


def matmul_precision() -> str:
    """The default float32 matmul/convolution precision in effect: ``jax_default_matmul_precision``
    (set by ``JAX_DEFAULT_MATMUL_PRECISION``) or ``"default"`` when unset (the backend's choice:
    exact float32 on CPU, possibly TF32 on recent NVIDIA GPUs)."""
    import jax

    value = jax.config.jax_default_matmul_precision
    return "default" if value is None else str(value)


def tf32_possible(name: str | None = None, precision: str | None = None) -> bool:
    """Whether float32 matmuls/convolutions may run in TF32 on ``name`` (``None``: the current
    backend) at ``precision`` (``None``: :func:`matmul_precision`): on a GPU, unless the precision is
    ``highest`` / ``float32``. (TPUs have their own bfloat16 passes; ``impax info`` reports GPUs.)"""
    prec = matmul_precision() if precision is None else str(precision)
    return platform(name) in ("gpu", "cuda", "rocm") and prec not in ("highest", "float32")
