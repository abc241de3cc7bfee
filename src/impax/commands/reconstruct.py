"""``impax reconstruct RUN --input KIND PATH... --out DIR``: meshes from a trained model.

IM-NET runs take ``voxels`` (an IM-NET HDF5 file or a prepared store), ``mesh`` (mesh files, voxelised
the way training data are) or ``image`` (PNG renders, with an imnet-svr run); LDIF/SIF runs take
``depth``, ``points`` or ``mesh``. Meshes are written in the original frame of each input.

One bad input does not stop the others. Each input that gives no mesh (unreadable, missing from the
store, or an empty reconstruction) is named on stderr with its reason, one line each, and listed in
``DIR/failed.txt`` ("INPUT: REASON" per line) and ``DIR/report.json`` (status, counts, every
failure and every output), both rewritten by each run. The rows of every input also go to stdout
as JSON.

Exit status: 0 every input reconstructed, 3 partial success (some inputs failed, the others were
written), 1 failure (no input gave a mesh, or an error stopped the run: one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_COMPLETE, EXIT_FAILURE, EXIT_PARTIAL = 0, 1, 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct shapes with a trained run", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="training run directory")
    p.add_argument("--input", required=True, dest="kind", choices=["voxels", "mesh", "image", "depth", "points"],
                   help="what the inputs are (IM-NET runs: voxels, mesh, image; LDIF/SIF runs: depth, points, mesh)")
    p.add_argument("inputs", nargs="+", help="input files (or a prepared data folder)")
    p.add_argument("--out", required=True,
                   help="output folder for the meshes, failed.txt and report.json (created if missing)")
    p.add_argument("--resolution", type=int, default=128, help="extraction resolution (16-512, default 128)")
    p.add_argument("--format", default="ply", choices=["ply", "obj", "glb"], help="mesh file format (default ply)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="test-time optimisation: after encoding, take STEPS Adam steps on each shape's own "
                        "parameters (IM-AE: its latent code; SIF/LDIF: its elements and latents) against its "
                        "input, network weights fixed (default 0: the encoder's result as it is)")
    p.set_defaults(func=run)


def _failure(row: dict[str, Any]) -> dict[str, str]:
    reason = " ".join(str(row.get("reason") or "no mesh (the reconstruction is empty)").split())
    return {"id": str(row.get("id")), "input": str(row.get("input") or row.get("id")), "reason": reason}


def report(rows: list[dict[str, Any]], out: str | Path) -> tuple[int, list[dict[str, str]]]:
    """Exit status and failures of a batch of reconstruction rows; writes ``out/report.json`` and
    ``out/failed.txt`` (emptied when nothing failed)."""
    from impax.data.safety import atomic_write_json, atomic_write_text

    failures = [_failure(r) for r in rows if not r.get("ok", False)]
    done = len(rows) - len(failures)
    status = EXIT_FAILURE if done == 0 else EXIT_PARTIAL if failures else EXIT_COMPLETE
    word = {EXIT_COMPLETE: "complete", EXIT_PARTIAL: "partial", EXIT_FAILURE: "failed"}[status]
    out = Path(out)
    atomic_write_json(out / "report.json", {"status": word, "exit_code": status, "total": len(rows),
                                            "reconstructed": done, "failed": failures,
                                            "outputs": json.loads(json.dumps(rows, default=str))})
    atomic_write_text(out / "failed.txt", "".join(f"{f['input']}: {f['reason']}\n" for f in failures))
    return status, failures


def run(args: argparse.Namespace) -> int:
    from impax.commands._checks import at_least, out_folder, resolution, run_module
    from impax.data.safety import ensure_folder

    resolution(args.resolution)
    at_least(args.refine, 0, "--refine")
    out = out_folder(args.out)
    module = run_module(args.run, "reconstruct")
    ensure_folder(out)
    rows = module.reconstruct(args.run, args.kind, args.inputs, out, resolution=args.resolution,
                              mesh_format=args.format, refine=args.refine)
    print(json.dumps(rows, indent=2, default=str))
    status, failures = report(rows, out)
    for f in failures:
        print(f"impax reconstruct: failed {f['input']}: {f['reason']}", file=sys.stderr)
    done = len(rows) - len(failures)
    if not rows:
        print(f"impax reconstruct: nothing to reconstruct in {' '.join(args.inputs)}", file=sys.stderr)
    elif failures:
        print(f"impax reconstruct: {done} of {len(rows)} inputs reconstructed, {len(failures)} failed "
              f"(listed in {out / 'failed.txt'})", file=sys.stderr)
    return status
