"""impax import FORMAT SOURCE --out DIR: start from the original authors' released weights.

Formats:

  imnet-pytorch CKPT --out RUN   an IM-NET-pytorch auto-encoder checkpoint (IM_AE.model64-*.pth,
                                 read with torch) becomes an imnet-ae run folder
  imnet-tf1 PREFIX --out RUN     an IM-NET TensorFlow 1 IMAE checkpoint (PREFIX.index and
                                 PREFIX.data-*; or the folder holding them) becomes an imnet-ae
                                 run folder; read without TensorFlow
  ldif-tf1 PREFIX --out DIR      google/ldif's TensorFlow 1 checkpoint: its local decoder is
                                 written as DIR/extracted.occnet (for impax mesh --decoder)
  inspect PREFIX                 list the variables of a TensorFlow checkpoint

An imported run works with impax reconstruct and impax interpolate like a trained one. With
--data (a prepared data folder or an IM-NET .hdf5 file) the run also records the data, so shapes
can be named by id, and holds the latent codes of its shapes (RUN/zs_train.hdf5), so that
impax train imnet-gan --data RUN trains a GAN whose runs impax sample accepts. impax train
--init-from RUN starts a new training run from the imported weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEBUG_HELP = "print the Python traceback of any error (also: IMPAX_DEBUG=1)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="turn the originals' released IM-NET / LDIF weights into impax runs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="format", metavar="FORMAT", required=True,
                             help="imnet-pytorch, imnet-tf1, ldif-tf1 or inspect (FORMAT --help for each)")

    def common_run(a: argparse.ArgumentParser) -> None:
        a.add_argument("--out", required=True, metavar="RUN",
                       help="run folder to create; it must not hold a run yet")
        a.add_argument("--data", default=None,
                       help="a prepared data folder or IM-NET .hdf5 file: recorded in run.json, and the latent "
                            "codes of its shapes are written to RUN/zs_train.hdf5 (default: none)")
        a.add_argument("--split", default="train",
                       help="which split of --data to encode (default: train; an .hdf5 file has one)")
        a.add_argument("--seed", type=int, default=0, help="seed recorded in run.json (default: 0)")
        a.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)

    a = kinds.add_parser("imnet-pytorch", help="IM-NET-pytorch auto-encoder checkpoint (.pth) -> imnet-ae run",
                         description="Import an IM-NET-pytorch auto-encoder checkpoint (needs torch to read it).")
    a.add_argument("checkpoint", help="the .pth file, e.g. IM_AE.model64-399.pth")
    common_run(a)
    a.set_defaults(func=run_imnet_pytorch)

    b = kinds.add_parser("imnet-tf1", help="IM-NET TensorFlow 1 IMAE checkpoint -> imnet-ae run",
                         description="Import an IM-NET TensorFlow 1 IMAE checkpoint, read without TensorFlow.")
    b.add_argument("prefix", help="checkpoint prefix (e.g. .../IMAE.model-399), its .index file, or its folder")
    common_run(b)
    b.set_defaults(func=run_imnet_tf1)

    c = kinds.add_parser("ldif-tf1", help="google/ldif TensorFlow 1 checkpoint -> extracted.occnet decoder",
                         description="Write the local decoder of a google/ldif checkpoint as DIR/extracted.occnet "
                                     "(impax mesh SHAPE.txt --decoder DIR/extracted.occnet meshes LDIF's SIF "
                                     "files with it) and a summary DIR/import.json.")
    c.add_argument("prefix", help="checkpoint prefix (e.g. .../model.ckpt-1000000), its .index file, or its folder")
    c.add_argument("--out", required=True, metavar="DIR", help="folder for extracted.occnet and import.json")
    c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    c.set_defaults(func=run_ldif_tf1)

    d = kinds.add_parser("inspect", help="list the variables of a TensorFlow checkpoint",
                         description="Print each variable of a TensorFlow checkpoint: name, dtype, shape.")
    d.add_argument("prefix", help="checkpoint prefix, its .index file, or its folder")
    d.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    d.set_defaults(func=run_inspect)


# ----------------------------------------------------------------------------------------------
# writing an imnet-ae run


def _check_new_run(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if (out / "run.json").exists() or (out / "checkpoints").exists():
        raise ValueError(f"--out {out} already holds a run; choose a new folder")


def _data_voxels(data: str, split: str) -> tuple[Any, list[str], Any]:
    from impax.data.voxel_source import VoxelSource

    src = VoxelSource(data)
    splits = src.splits()
    if src.kind == "store" and split not in splits:
        raise ValueError(f"--split {split!r}: {data} has the splits {', '.join(splits)}")
    names = src.names(split)
    if not names:
        raise ValueError(f"--data {data}: no shapes in split {split!r}")
    return src, names, src.voxels(split, names)


def write_imnet_run(model: Any, out: str | Path, source: dict[str, Any], data: str | None = None,
                    split: str = "train", seed: int = 0) -> dict[str, Any]:
    """Write an ``imnet-ae`` run folder holding ``model`` (an :class:`~impax.models.imnet.IMNetAE`
    with the stock encoder): ``run.json`` and one checkpoint at step 0; with ``data`` also the
    latent codes of its ``split`` (``zs_train.hdf5``). Returns a summary."""
    import dataclasses

    import numpy as np
    from flax import nnx

    from impax.configs import to_dict
    from impax.train import Position, TrainConfig
    from impax.train.checkpoint import CheckpointStore, named_leaves, to_host
    from impax.data.latents import write_codes
    from impax.models.imnet_codes import encode_voxels
    from impax.train.registry import recipe
    from impax.train.runs import write_run_json

    ae_recipe = recipe("imnet-ae")

    out = Path(out)
    _check_new_run(out)
    loaded = _data_voxels(data, split) if data else None  # fail on bad data before writing anything
    cfg = dataclasses.replace(ae_recipe.preset("paper"), model=model.cfg, train_split=split)
    info: dict[str, Any] = {"recipe": "imnet-ae", "family": "imnet", "preset": "imported", "config": to_dict(cfg),
                            "seed": int(seed), "imported_from": source}
    if data:
        info["data"] = str(Path(data).absolute())
    arrays = to_host(named_leaves(nnx.state(model)))
    meta = {"position": Position().to_dict(), "config": to_dict(TrainConfig(seed=int(seed))), "stages": [],
            "extra": {"recipe": "imnet-ae", "model": to_dict(model.cfg), "imported_from": source}}
    out.mkdir(parents=True, exist_ok=True)
    store = CheckpointStore(out, keep=None, async_save=False)
    try:
        # orbax stores no empty item: a one-value placeholder stands for the optimiser state that an
        # imported run does not have (inference and --init-from read only the model item)
        store.save(0, arrays, {"no_optimizer_state": np.zeros((), np.float32)}, meta)
    finally:
        store.close()
    write_run_json(out, info, set())
    summary: dict[str, Any] = {"run": str(out), "recipe": "imnet-ae", "imported_from": source,
                               "model": to_dict(model.cfg),
                               "parameters": int(sum(int(v.size) for v in arrays.values()))}
    if loaded is not None:
        _, names, vox = loaded
        path = write_codes(out, encode_voxels(model, vox), names)
        summary.update(data=info["data"], split=split, latents=str(path), shapes=len(names))
    return summary


def run_imnet_pytorch(args: argparse.Namespace) -> int:
    from impax.models.imnet_import import import_autoencoder, load_state_dict

    _check_new_run(Path(args.out))
    path = Path(args.checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    state = load_state_dict(path)
    model = import_autoencoder(state, seed=args.seed)
    summary = write_imnet_run(model, args.out, {"format": "imnet-pytorch", "path": str(path.absolute())},
                              args.data, args.split, args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def run_imnet_tf1(args: argparse.Namespace) -> int:
    from impax.models.tf_bundle import resolve_prefix
    from impax.models.tf_import import imnet_tf1_stock_exact, imnet_tf1_variant, import_imnet_tf1, load_arrays

    _check_new_run(Path(args.out))
    prefix = resolve_prefix(args.prefix)
    arrays = load_arrays(prefix)
    variant = imnet_tf1_variant(arrays)
    if variant == "original":
        raise ValueError(f"{prefix}: cannot make an exact imnet-ae run from this {variant} IM-NET TF1 checkpoint: "
                         f"{imnet_tf1_stock_exact(arrays)[1]}")
    model = import_imnet_tf1(arrays, seed=args.seed)  # norm_affine=True when its norms learned a scale/offset
    source = {"format": "imnet-tf1", "variant": variant, "prefix": str(Path(prefix).absolute())}
    summary = write_imnet_run(model, args.out, source, args.data, args.split, args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def run_ldif_tf1(args: argparse.Namespace) -> int:
    from impax.models.sif_format import write_occnet
    from impax.models.tf_bundle import resolve_prefix
    from impax.models.tf_import import ldif_decoder_weights, ldif_sizes, load_arrays

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    target = out / "extracted.occnet"
    if target.exists():
        raise ValueError(f"{target} already exists; choose a new --out folder")
    prefix = resolve_prefix(args.prefix)
    arrays = load_arrays(prefix)
    weights = ldif_decoder_weights(arrays)
    sizes = ldif_sizes(arrays)
    if sizes["latent_size"] != sizes["decoder_width"]:
        raise ValueError(f"{prefix}: the decoder's latent size {sizes['latent_size']} differs from its width "
                         f"{sizes['decoder_width']}; extracted.occnet cannot hold it")
    out.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".occnet.tmp")
    write_occnet(tmp, weights)
    tmp.replace(target)
    summary = {"decoder": str(target), "prefix": str(Path(prefix).absolute()), "sizes": sizes,
               "usage": f"impax mesh SHAPE.txt --decoder {target}"}
    (out / "import.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from impax.models.tf_bundle import Bundle

    b = Bundle(args.prefix)
    total = 0
    for name, e in b.entries.items():
        total += int(np.prod(e.shape, dtype=np.int64)) if e.dtype != "string" else 0
        print(f"{name}\t{e.dtype}\t{list(e.shape)}")
    print(f"# {len(b.entries)} variables, {total} values, {b.header.num_shards} data shard(s), prefix {b.prefix}")
    return 0
