"""impax.data: preparing meshes into training data, storing it, and batching it.

* :mod:`impax.data.sources` — find meshes (flat, class folders, ShapeNet v1/v2), ids, splits.
* :mod:`impax.data.pipeline` — :class:`PrepareConfig`, :func:`prepare_shape` (one mesh → arrays).
* :mod:`impax.data.prepare` — the parallel, resumable, sharded job (``impax prepare``).
* :mod:`impax.data.store` — :class:`ShapeStore` (one HDF5 per shape + ``index.json``), IM-NET export.
* :mod:`impax.data.imnet_hdf5` — IM-NET's official HDF5 layout (reader, writer).
* :mod:`impax.data.imnet_sampling` — IM-NET's hierarchical point–value sampling.
* :mod:`impax.data.loader` — deterministic, resumable, prefetching batch loaders.

Submodules are imported on demand (``from impax.data.store import ShapeStore``).
"""
