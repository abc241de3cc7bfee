"""``impax demo``: the whole system on this machine, from nothing to an HTML report, in minutes.

One output folder ``OUT`` (default ``./impax-demo``) receives every artefact::

    OUT/shapes/<family>/<family>_<k>.ply   built-in shapes (or links to the user's --meshes)
    OUT/splits/{train,test}.lst            the train / held-out split (shape ids), given to prepare
    OUT/data/                              the prepared store (impax prepare; index.json)
    OUT/runs/{imnet-ae,ldif,imnet-gan}/    training runs (run.json, checkpoints, metrics.jsonl)
    OUT/meshes/{imnet-ae,ldif}/<id>.ply    reconstructions, original frame (+ LDIF's <id>.sif.txt, .gaps.json)
    OUT/meshes/gan/sample_<k>.ply          GAN samples; OUT/meshes/interp/step_<k>.ply interpolation (IM-NET frame)
    OUT/eval/{imnet-ae,ldif}/              per_shape.csv, summary.json, table.md;  OUT/eval/gan/summary.json
    OUT/report/index.html                  the report (:func:`impax.report.demo_report.build_report`)
    OUT/logs/<stage>.log                   the traceback of a stage that failed
    OUT/.stages/<stage>.json               finished-stage markers (:class:`impax.stages.StageRunner`), each
                                           with the command line that ran it ("invocation": argv, cwd)

Stages and their time budgets (seconds; the budgets are what the ETA lines print; the settings
behind them are in :func:`make_plan`; measured on 2 shared CPU cores)::

    #   stage              default  --quick   what
    1   shapes                  10        5   33 built-in shapes, 3 per family (quick: 22, 2 per family)
    2   prepare                 60       15   impax prepare --quick settings with IM-NET's 256^3 voxel
                                              sampling, without the 24 SVR views
    3   train-imnet-ae         120       25   imnet-ae "demo" preset from pretrained:imnet-ae-cpu
                                              (quick: "quick", a tiny model from scratch)
    4   train-ldif              60       15   ldif "demo" preset from pretrained:ldif-cpu (quick: "quick")
    5   train-imnet-gan         20       10   imnet-gan "demo"/"quick" preset on the IM-AE codes
    6   reconstruct-imnet-ae   100       10   held-out + 2 training shapes at 128^3, 200 refine steps
                                              each (quick: 32^3, 5 steps)
    7   reconstruct-ldif        40       10   same shapes from the stored depth images, 200 refine
                                              steps against the depth views (quick: 5)
    8   sample-gan              15        5   6 samples (quick: 3)
    9   interpolate             15        5   6 steps between two training shapes (quick: 4)
    10  evaluate                25       10   IoU, Chamfer-L1/L2, F-score, NC (30k surface samples,
                                              50k IoU points; quick 10k/20k); GAN COV/MMD/1-NNA
    11  report                  20       10   renders (192 px, 2 views; quick: 112 px, 1 view)
        total                  485      120

Training uses each recipe's own ``demo`` (default) or ``quick`` preset as it is; the IM-AE and LDIF
stages start from the weights shipped with impax (``pretrained:imnet-ae-cpu``, ``pretrained:ldif-cpu``,
see :mod:`impax.train.pretrained`; trained on a random stream of built-in shapes that no demo seed
draws from) and fine-tune them on the demo's training shapes; the quick demo trains tiny models from
scratch. Reconstruction refines each shape against its own input (``--refine``, see
:mod:`impax.inference.refine`).

Held-out split: per class, the shapes are ordered by a hash of their id and
``max(1, round(0.2 n))`` of them (none for a class of one) go to ``test``; the rest ``train``. For
the built-in shapes that is one held-out shape per family.

Evaluation frame: both the reconstruction and its ground truth are mapped by the ground truth's
original → IM-NET transform (bounding box centred, diagonal 1) before scoring, so the numbers do
not depend on the scale of the user's meshes (the built-in shapes are already about that size).
GAN samples (IM-NET frame) are compared with the training shapes in the same frame.

Resuming: a finished stage is reused when its key (the options that change its result: quick,
seed, meshes, the settings, and the keys of the stages it depends on) matches; an interrupted
training stage continues from its checkpoints. A stage that fails is reported with its reason and
retried, with the stages after it that use its output, on the next run; stages after it that need
its output are reported "not available".
Exit status: 0 complete, 3 finished with some stages not available or failed, 1 nothing usable,
130 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from impax.train.registry import RECIPES

#: Bump when the demo's own logic changes what a stage produces (invalidates every marker).
DEMO_VERSION = 1
EXIT_COMPLETE, EXIT_FAILURE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 3, 130
HELDOUT_FRACTION = 0.2
KEY_FILE = ".demo-key"

#: Reconstruction models of the demo and its report, from the recipe registry: (name under runs/,
#: meshes/, eval/; recipe; inference input kind).
MODELS: tuple[tuple[str, str, str], ...] = tuple((r.name, r.name, r.demo_input) for r in RECIPES.values()
                                                 if r.demo_input)
LABELS = {r.name: r.label for r in RECIPES.values()}


class DemoError(RuntimeError):
    """Nothing usable can come out of the demo (e.g. no mesh could be prepared)."""


class StageFailed(RuntimeError):
    """A stage could not produce its output; the demo goes on without it."""


# ----------------------------------------------------------------------------------------------
# the plan


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """How the demo trains one recipe: which of its presets (every recipe offers ``demo`` and
    ``quick``), and the weights it starts from (``impax train --init-from``; used when present)."""

    recipe: str
    preset: str
    init_from: str | None = None


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """Every setting of one demo run (see the module docstring's budget table)."""

    quick: bool
    seed: int
    shapes_per_family: int
    prepare: Mapping[str, Any]  # PrepareConfig.quick(**prepare)
    imnet_ae: TrainPlan
    ldif: TrainPlan
    gan: TrainPlan
    train_recon: int  # training shapes reconstructed besides the held-out ones
    resolution: int  # extraction grid of reconstructions, samples and interpolation
    refine: Mapping[str, int]  # reconstruction model -> ``--refine`` steps (test-time optimisation)
    gan_samples: int
    interp_steps: int
    metrics: Mapping[str, Any]  # MetricsConfig fields
    gen_points: int  # points per shape for the GAN metrics
    report: Mapping[str, Any]  # build_report keyword arguments
    budgets: Mapping[str, float]  # stage name -> seconds


def make_plan(quick: bool = False, seed: int = 0) -> DemoPlan:
    """The settings of ``impax demo`` (``quick``: the smoke run)."""
    if quick:
        return DemoPlan(
            quick=True, seed=seed, shapes_per_family=2,
            prepare={"views": False, "n_uniform": 2048, "n_near": 2048, "n_surface": 2048, "n_occupancy": 2048,
                     "voxels_256": False},
            imnet_ae=TrainPlan("imnet-ae", "quick"), ldif=TrainPlan("ldif", "quick"),
            gan=TrainPlan("imnet-gan", "quick"),
            train_recon=1, resolution=32, refine={"imnet-ae": 5, "ldif": 5}, gan_samples=3, interp_steps=4,
            metrics={"n_samples": 10_000, "iou_samples": 20_000, "voxel_resolution": 32},
            gen_points=512,
            report={"size": 112, "views": ((35.0, 22.0),), "max_shapes": 4, "supersample": 1, "strip_limit": 4},
            budgets={"shapes": 5, "prepare": 15, "train-imnet-ae": 25, "train-ldif": 15, "train-imnet-gan": 10,
                     "reconstruct-imnet-ae": 10, "reconstruct-ldif": 10, "sample-gan": 5, "interpolate": 5,
                     "evaluate": 10, "report": 10},
        )
    return DemoPlan(
        quick=False, seed=seed, shapes_per_family=3,
        prepare={"views": False, "voxels_256": True},
        imnet_ae=TrainPlan("imnet-ae", "demo", init_from="pretrained:imnet-ae-cpu"),
        ldif=TrainPlan("ldif", "demo", init_from="pretrained:ldif-cpu"),
        gan=TrainPlan("imnet-gan", "demo"),
        train_recon=2, resolution=128, refine={"imnet-ae": 200, "ldif": 200}, gan_samples=6, interp_steps=6,
        metrics={"n_samples": 30_000, "iou_samples": 50_000, "voxel_resolution": 32},
        gen_points=2048,
        report={"size": 192, "views": ((35.0, 22.0), (215.0, 22.0)), "max_shapes": 8, "supersample": 2,
                "strip_limit": 10},
        budgets={"shapes": 10, "prepare": 60, "train-imnet-ae": 120, "train-ldif": 60, "train-imnet-gan": 20,
                 "reconstruct-imnet-ae": 100, "reconstruct-ldif": 40, "sample-gan": 15, "interpolate": 15,
                 "evaluate": 25, "report": 20},
    )


# ----------------------------------------------------------------------------------------------
# helpers


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _available_start(source: str | None) -> str | None:
    """``source`` when it can be used (a shipped ``pretrained:<name>`` that is present), else None."""
    if not source:
        return None
    from impax.train.pretrained import PREFIX, available

    if source.startswith(PREFIX) and source[len(PREFIX):] not in available():
        return None
    return source


def _meshes_fingerprint(root: Path) -> list[tuple[str, int, int]]:
    from impax.geometry.mesh_io import MESH_SUFFIXES

    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in MESH_SUFFIXES and p.is_file():
            st = p.stat()
            out.append((p.relative_to(root).as_posix(), int(st.st_size), int(st.st_mtime)))
    return out


def _fresh(path: Path, key: str) -> None:
    """Make ``path`` an empty folder unless it already belongs to ``key`` (an interrupted run of the
    same settings, which resumes); a folder of other settings is removed."""
    marker = path / KEY_FILE
    if path.exists():
        try:
            same = marker.read_text() == key
        except OSError:
            same = False
        if same:
            return
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


@contextlib.contextmanager
def _ticker(label: str, budget: float, enabled: bool = True) -> Iterator[None]:
    """A time bar for stages without a bar of their own: elapsed seconds against the budget."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    stop = threading.Event()
    total = max(1, int(math.ceil(budget)))
    bar = tqdm(total=total, desc=label, unit="s", file=sys.stderr, dynamic_ncols=True,
               bar_format="{desc}: {bar} {n:.0f}/{total:.0f} s budget [{elapsed}]")
    t0 = time.perf_counter()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.n = min(total, time.perf_counter() - t0)
            bar.refresh()

    th = threading.Thread(target=tick, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        bar.n = min(total, time.perf_counter() - t0)
        bar.close()


# ----------------------------------------------------------------------------------------------
# the job


class Demo:
    """The demo's stages over one output folder; :meth:`run` runs them (see the module docstring)."""

    def __init__(self, out: str | Path, quick: bool = False, meshes: str | Path | None = None, seed: int = 0,
                 workers: int | None = None, progress: bool = True,
                 log: Callable[[str], None] | None = None, command: Sequence[str] | None = None) -> None:
        self.out = Path(out)
        self.plan = make_plan(quick, seed)
        self.meshes = Path(meshes).resolve() if meshes else None
        if self.meshes is not None and not self.meshes.is_dir():
            raise DemoError(f"--meshes {meshes}: not a folder")
        self.seed = int(seed)
        self.workers = workers
        self.progress = progress
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.keys: dict[str, str] = {}
        self.deps: dict[str, tuple[str, ...]] = {}
        self.problems: dict[str, str] = {}  # stage -> "not available: ..." / "failed: ..." / "partial: ..."
        self.blocked: dict[str, str] = {}  # stages whose output is absent ("failed", "not available")
        self.notes: dict[str, str] = {}  # stage -> remark (e.g. some reconstructions came out empty)
        # the command line as typed and where: recorded in every stage marker this run writes, shown
        # in the report's Reproduce block
        self.invocation = {"argv": [str(a) for a in command], "cwd": os.getcwd()} if command else None

    # paths
    @property
    def shapes_dir(self) -> Path:
        return self.out / "shapes"

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name

    def mesh_dir(self, name: str) -> Path:
        return self.out / "meshes" / name

    # keys ------------------------------------------------------------------------------------
    def _key(self, name: str, deps: Sequence[str], settings: Any) -> str:
        self.deps[name] = tuple(deps)
        k = _hash({"v": DEMO_VERSION, "stage": name, "settings": settings,
                   "deps": {d: self.keys[d] for d in deps}})
        self.keys[name] = k
        return k

    def stages(self) -> list[Any]:
        from impax.stages import Stage

        p = self.plan
        source = ({"meshes": str(self.meshes), "files": _meshes_fingerprint(self.meshes)} if self.meshes
                  else {"builtin": p.shapes_per_family})
        specs: list[tuple[str, str, Sequence[str], Any, Callable[[], dict[str, Any]]]] = [
            ("shapes", "shapes: " + ("link the user's meshes" if self.meshes else "generate built-in shapes"),
             [], {"source": source, "seed": self.seed, "heldout": HELDOUT_FRACTION}, self._stage_shapes),
            ("prepare", "prepare training data", ["shapes"], {"prepare": p.prepare, "seed": self.seed},
             self._stage_prepare),
        ]
        for tp, deps in ((p.imnet_ae, ["prepare"]), (p.ldif, ["prepare"]), (p.gan, ["train-imnet-ae"])):
            specs.append((f"train-{tp.recipe}", f"train {tp.recipe}", deps, self._train_settings(tp),
                          self._train_fn(tp)))
        for name, recipe, kind in MODELS:
            specs.append((f"reconstruct-{name}", f"reconstruct held-out shapes with {LABELS[name]}",
                          [f"train-{recipe}"], {"resolution": p.resolution, "train_recon": p.train_recon,
                                                "kind": kind, "refine": p.refine.get(name, 0)},
                          self._recon_fn(name, kind)))
        specs += [
            ("sample-gan", "sample new shapes from the GAN", ["train-imnet-gan"],
             {"count": p.gan_samples, "resolution": p.resolution, "seed": self.seed}, self._stage_sample),
            ("interpolate", "interpolate between two shapes (IM-NET latent space)", ["train-imnet-ae"],
             {"steps": p.interp_steps, "resolution": p.resolution}, self._stage_interpolate),
            ("evaluate", "evaluate reconstructions and samples",
             ["reconstruct-imnet-ae", "reconstruct-ldif", "sample-gan"],
             {"metrics": p.metrics, "gen_points": p.gen_points}, self._stage_evaluate),
            ("report", "write the HTML report",
             ["evaluate", "interpolate", "train-imnet-ae", "train-ldif", "train-imnet-gan"],
             {"report": p.report}, self._stage_report),
        ]
        stages = []
        for name, title, deps, settings, fn in specs:
            key = self._key(name, deps, settings)
            budget = p.budgets.get(name, 0)
            stages.append(Stage(name, self._wrap(name, budget, key, fn), key=key,
                                title=f"{title} (budget ~{budget:.0f} s)"))
        return stages

    def _train_settings(self, tp: TrainPlan) -> Any:
        from impax.configs import to_dict
        from impax.train.registry import recipe

        # the preset's content, not only its name: a changed preset must retrain
        content = _hash(to_dict(recipe(tp.recipe).preset(tp.preset)))
        return {"preset": tp.preset, "preset_config": content, "seed": self.seed,
                "init_from": _available_start(tp.init_from)}

    def _wrap(self, name: str, budget: float, key: str, fn: Callable[[], dict[str, Any]]
              ) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            eta = time.strftime("%H:%M:%S", time.localtime(time.time() + budget))
            self.log(f"      budget {_fmt_s(budget)}, expected done by {eta}")
            try:
                summary = dict(fn() or {})
            except (DemoError, KeyboardInterrupt):
                raise
            except StageFailed as e:
                self.log(f"      FAILED: {e}")
                summary = {"status": "failed", "reason": str(e)}
            except Exception as e:  # one broken stage must not end the demo: say why, go on
                log = self.out / "logs" / f"{name}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(traceback.format_exc())
                reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                self.log(f"      FAILED: {reason} (traceback in {log})")
                summary = {"status": "failed", "reason": reason}
            summary.setdefault("status", "ok")
            summary["budget_s"] = budget
            if self.invocation:
                summary["invocation"] = self.invocation
            self._note(name, summary)
            return summary
        return run

    def _note(self, name: str, summary: Mapping[str, Any]) -> None:
        status = summary.get("status", "ok")
        if status != "ok":
            self.problems[name] = f"{status}: {summary.get('reason', '')}"
        if status in ("failed", "not available"):
            self.blocked[name] = status
        if summary.get("note"):
            self.notes[name] = str(summary["note"])

    def _upstream_problem(self, deps: Sequence[str]) -> str | None:
        for d in deps:
            if d in self.blocked:
                return f"{d} is {self.blocked[d]}"
        return None

    # stages ----------------------------------------------------------------------------------
    def _stage_shapes(self) -> dict[str, Any]:
        from impax.data.sources import discover, hash_unit
        from impax.geometry.mesh_io import MESH_SUFFIXES

        _fresh(self.shapes_dir, self.keys["shapes"])
        if self.meshes is not None:
            n = 0
            for p in sorted(self.meshes.rglob("*")):
                if p.suffix.lower() not in MESH_SUFFIXES or not p.is_file():
                    continue
                rel = p.relative_to(self.meshes)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                dst = self.shapes_dir / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    os.symlink(p, dst)
                n += 1
            if n == 0:
                raise DemoError(f"--meshes {self.meshes}: no mesh files ({', '.join(MESH_SUFFIXES)})")
        else:
            from impax.geometry.shapes import FAMILIES, generate

            generate(self.shapes_dir, self.plan.shapes_per_family * len(FAMILIES), seed=self.seed)
        shapes = discover(self.shapes_dir)
        by_class: dict[str, list[str]] = {}
        for s in shapes:
            by_class.setdefault(s.cls, []).append(s.shape_id)
        split = {}
        for cls, ids in by_class.items():
            ids = sorted(ids, key=lambda i: (hash_unit(i, f"demo-split:{self.seed}:"), i))
            n_test = 0 if len(ids) < 2 else max(1, round(HELDOUT_FRACTION * len(ids)))
            for k, sid in enumerate(ids):
                split[sid] = "test" if k < n_test else "train"
        sdir = self.out / "splits"
        sdir.mkdir(parents=True, exist_ok=True)
        for name in ("train", "test"):
            (sdir / f"{name}.lst").write_text("".join(f"{i}\n" for i in sorted(split) if split[i] == name))
        n_test = sum(v == "test" for v in split.values())
        return {"shapes": len(shapes), "classes": len(by_class), "train": len(shapes) - n_test, "heldout": n_test}

    def _stage_prepare(self) -> dict[str, Any]:
        from impax.data.pipeline import PrepareConfig
        from impax.data.prepare import EXIT_FAILURE, prepare

        _fresh(self.data_dir, self.keys["prepare"])
        cfg = PrepareConfig.quick(**self.plan.prepare)
        sdir = self.out / "splits"
        res = prepare(self.shapes_dir, self.data_dir, cfg, workers=self.workers, seed=self.seed,
                      split_lists={"train": sdir / "train.lst", "test": sdir / "test.lst"},
                      progress=self.progress)
        for f in res.failures:
            self.log(f"      skipped {f['path']}: {f['reason']}")
        if res.status == EXIT_FAILURE:
            raise DemoError(f"no shape could be prepared ({len(res.failures)} failed; see {self.data_dir}/failed.txt)")
        from impax.data.store import ShapeStore

        store = ShapeStore(self.data_dir)
        n_train, n_test = len(store.ids("train")), len(store.ids("test"))
        if n_train == 0:
            raise DemoError("no training shape could be prepared")
        out = {"prepared": res.ok, "failed": len(res.failures), "train": n_train, "heldout": n_test}
        if res.failures:
            out.update(status="partial", reason=f"{len(res.failures)} meshes could not be prepared")
        return out

    def _train_fn(self, tp: TrainPlan) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            from impax.train.registry import recipe

            name = f"train-{tp.recipe}"
            run_dir = self.run_dir(tp.recipe)
            _fresh(run_dir, self.keys[name])
            up = self._upstream_problem(self.deps[name])
            if up:
                return {"status": "not available", "reason": up}
            data = self.run_dir("imnet-ae") if tp.recipe == "imnet-gan" else self.data_dir
            self.log(f"      {tp.recipe}: preset {tp.preset!r}")
            start = _available_start(tp.init_from)
            kw = {"init_from": start} if start else {}
            if start:
                self.log(f"      starting from {start}")
            elif tp.init_from:
                self.log(f"      {tp.init_from} is not shipped with this copy of impax: training from scratch")
            summary = recipe(tp.recipe).train(tp.recipe, data=str(data), out=str(run_dir), preset=tp.preset,
                                              seed=self.seed, progress=self.progress, **kw)
            stopped = summary.get("stopped", "done")
            if stopped == "signal":
                raise KeyboardInterrupt
            if stopped != "done":
                raise StageFailed(f"training stopped: {stopped}")
            keep = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None}
            return {**keep, "preset": tp.preset}
        return run

    def _recon_ids(self) -> tuple[list[str], list[str]]:
        """(held-out ids, a few training ids from different classes)."""
        from impax.data.store import ShapeStore

        store = ShapeStore(self.data_dir)
        held = store.ids("test")
        train, seen = [], set()
        for e in sorted(store.entries("train"), key=lambda e: (e.get("class", ""), e["id"])):
            if len(train) >= self.plan.train_recon:
                break
            if e.get("class", "") in seen:
                continue
            seen.add(e.get("class", ""))
            train.append(e["id"])
        return held, train

    def _recon_fn(self, name: str, kind: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            stage = f"reconstruct-{name}"
            out = self.mesh_dir(name)
            _fresh(out, self.keys[stage])
            up = self._upstream_problem(self.deps[stage])
            if up:
                return {"status": "not available", "reason": up}
            from impax.inference.families import family_module

            run_dir = self.run_dir(name)
            held, train = self._recon_ids()
            ids = held + train
            with _ticker(f"reconstruct {len(ids)} shapes", self.plan.budgets.get(stage, 30), self.progress):
                rows = family_module(run_dir).reconstruct(run_dir, kind, [str(self.data_dir), *ids], out,
                                                          resolution=self.plan.resolution, mesh_format="ply",
                                                          refine=self.plan.refine.get(name, 0))
            bad = [r for r in rows if not r.get("ok")]
            for r in bad:
                self.log(f"      {r.get('id')}: {r.get('reason', 'failed')}")
            (out / "rows.json").write_text(json.dumps(rows, indent=1, default=str))
            res = {"shapes": len(rows), "ok": len(rows) - len(bad), "heldout": len(held), "train": len(train)}
            if bad:
                res["note"] = f"{len(bad)} of {len(rows)} reconstructions empty or failed (scored as empty)"
            return res
        return run

    def _stage_sample(self) -> dict[str, Any]:
        out = self.mesh_dir("gan")
        _fresh(out, self.keys["sample-gan"])
        up = self._upstream_problem(self.deps["sample-gan"])
        if up:
            return {"status": "not available", "reason": up}
        from impax.inference.families import family_module

        run_dir = self.run_dir("imnet-gan")
        with _ticker(f"sample {self.plan.gan_samples} shapes", self.plan.budgets["sample-gan"], self.progress):
            rows = family_module(run_dir).sample(run_dir, self.plan.gan_samples, out, seed=self.seed,
                                                 resolution=self.plan.resolution)
        # the report reads sample_<k>.ply
        for k, r in enumerate(rows):
            p = Path(r["path"]) if r.get("path") else None
            if p is not None and p.is_file() and not p.stem.startswith("sample_"):
                p.rename(out / f"sample_{k:03d}{p.suffix}")
        ok = sum(1 for r in rows if r.get("ok"))
        res = {"samples": len(rows), "non_empty": ok}
        if ok < len(rows):
            res["note"] = f"{len(rows) - ok} of {len(rows)} samples empty or failed"
        return res

    def _stage_interpolate(self) -> dict[str, Any]:
        out = self.mesh_dir("interp")
        _fresh(out, self.keys["interpolate"])
        up = self._upstream_problem(self.deps["interpolate"])
        if up:
            return {"status": "not available", "reason": up}
        from impax.data.store import ShapeStore
        from impax.inference.families import family_module

        store = ShapeStore(self.data_dir)
        entries = sorted(store.entries("train"), key=lambda e: e["id"])
        by_class: dict[str, str] = {}
        for e in entries:
            by_class.setdefault(e.get("class", ""), e["id"])
        wanted = [by_class[c] for c in ("chair", "table", "airplane", "lamp") if c in by_class]
        pair = (wanted + [i for i in by_class.values() if i not in wanted] + [e["id"] for e in entries])[:2]
        if len(pair) < 2:
            return {"status": "not available", "reason": "needs two training shapes"}
        run_dir = self.run_dir("imnet-ae")
        with _ticker(f"interpolate {pair[0]} -> {pair[1]}", self.plan.budgets["interpolate"], self.progress):
            rows = family_module(run_dir).interpolate(run_dir, pair[0], pair[1], self.plan.interp_steps, out,
                                                      resolution=self.plan.resolution)
        ok = sum(1 for r in rows if r.get("ok"))
        res = {"a": pair[0], "b": pair[1], "steps": len(rows), "non_empty": ok}
        if ok < len(rows):
            res["note"] = f"{len(rows) - ok} of {len(rows)} steps empty or failed"
        return res

    def _stage_evaluate(self) -> dict[str, Any]:
        from impax.evaluation.metrics import MetricsConfig

        eval_dir = self.out / "eval"
        _fresh(eval_dir, self.keys["evaluate"])
        cfg = MetricsConfig(seed=self.seed, **self.plan.metrics)
        res: dict[str, Any] = {}
        problems = []
        for name, _, _ in MODELS:
            up = self._upstream_problem([f"reconstruct-{name}"])
            if up:
                problems.append(f"{name}: {up}")
                continue
            s = evaluate_model(self.out, name, cfg, progress=self.progress)
            res[name] = {"heldout": s["count"], "iou": s["class_mean"].get("iou"),
                         "chamfer_l1": s["class_mean"].get("chamfer_l1"), "fscore": s["class_mean"].get("fscore")}
        up = self._upstream_problem(["sample-gan"])
        if up:
            problems.append(f"gan: {up}")
        else:
            try:
                res["gan"] = evaluate_gan(self.out, self.plan.gen_points, self.seed)
            except StageFailed as e:
                problems.append(f"gan: {e}")
        flat = {f"{m}.{k}": v for m, d in res.items() for k, v in d.items()}
        if problems:
            flat["note"] = "; ".join(problems)
        return flat

    def _stage_report(self) -> dict[str, Any]:
        from impax.report.demo_report import build_report

        _fresh(self.out / "report", self.keys["report"])
        title = "impax demo report" + (" (--quick)" if self.plan.quick else "")
        with _ticker("render and write the report", self.plan.budgets["report"], self.progress):
            path = build_report(self.out, title=title, command=self.invocation, **dict(self.plan.report))
        return {"path": str(path)}

    # running ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) every stage; returns ``{"status", "summaries", "seconds", "reused", "problems"}``."""
        from impax.stages import StageRunner

        t0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        stages = self.stages()
        total_budget = sum(self.plan.budgets.get(s.name, 0) for s in stages)
        mode = "quick" if self.plan.quick else "default"
        src = f"meshes from {self.meshes}" if self.meshes else "built-in shapes"
        self.log(f"impax demo ({mode}, {src}, seed {self.seed}) -> {self.out}; "
                 f"{len(stages)} stages, budget ~{_fmt_s(total_budget)} on 2 CPU cores")
        runner = StageRunner(self.out, log=self.log)
        for st in stages:  # what reused stages left out, so the stages after them know
            cached = runner.done(st)
            if cached is not None:
                self._note(st.name, cached)
        summaries = runner.run(stages)
        self._forget_failures(summaries)
        seconds = time.perf_counter() - t0
        status = EXIT_COMPLETE if not self.problems else EXIT_PARTIAL
        return {"status": status, "summaries": summaries, "seconds": seconds, "reused": list(runner.reused),
                "problems": dict(self.problems), "notes": dict(self.notes)}

    def _forget_failures(self, summaries: Mapping[str, Mapping[str, Any]]) -> None:
        """Remove the markers of failed stages and of every stage that used their output, so the
        next run retries them ("not available" stages are keyed on the recipe being installed)."""
        failed = {n for n, s in summaries.items() if s.get("status") == "failed"}
        changed = True
        while changed:
            changed = False
            for n, deps in self.deps.items():
                if n not in failed and failed & set(deps):
                    failed.add(n)
                    changed = True
        for n in failed:
            (self.out / ".stages" / f"{n}.json").unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# evaluation (used by the evaluate stage)


def evaluate_model(out: str | Path, name: str, cfg: Any, progress: bool = False) -> dict[str, Any]:
    """Score ``OUT/meshes/<name>/<id>.ply`` against the ground truth of every reconstructed shape
    (held-out and training) in the ``gt-unit`` frame (:func:`impax.evaluation.runner.evaluate_pair`);
    write ``OUT/eval/<name>/`` ``per_shape.csv`` (every shape, ids = store ids), ``summary.json``
    (``{"summary": held-out per-class/mean summary, "train_summary": ..., "shapes": records}``) and
    ``table.md``; return the held-out summary. A missing or unreadable reconstruction is scored as an
    empty surface."""
    from tqdm import tqdm

    from impax.data.store import ShapeStore
    from impax.evaluation import tables
    from impax.evaluation.metrics import METRICS
    from impax.evaluation.runner import Pair, evaluate_pair

    out = Path(out)
    store = ShapeStore(out / "data")
    entries = {e["id"]: e for e in store.entries()}
    rows_file = out / "meshes" / name / "rows.json"
    try:
        ids = [r["id"] for r in json.loads(rows_file.read_text())]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        ids = sorted(p.stem for p in (out / "meshes" / name).glob("*.ply"))
    ids = [i for i in ids if i in entries]
    metrics = [m for m in METRICS if (cfg.compute_iou or m != "iou") and (cfg.compute_voxel_iou or m != "iou_voxels")]
    records = []
    for sid in tqdm(ids, desc=f"evaluate {name}", unit="shape", file=sys.stderr, disable=not progress,
                    dynamic_ncols=True):
        e, pred = entries[sid], out / "meshes" / name / f"{sid}.ply"
        pair = Pair(sid, e.get("class") or "all", pred if pred.is_file() else None, out / "shapes" / e.get("source", ""))
        records.append({"split": e.get("split", ""), **evaluate_pair(pair, cfg, frame="gt-unit")})
    held = [r for r in records if r["split"] != "train"]
    summary = tables.summarize(held, metrics)
    summary["config"] = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    train_summary = tables.summarize([r for r in records if r["split"] == "train"], metrics)
    edir = out / "eval" / name
    tables.write_csv(records, edir / "per_shape.csv", metrics)
    (edir / "table.md").write_text(f"# {LABELS.get(name, name)}: held-out shapes\n\n"
                                   + tables.markdown_table(summary, metrics))
    tables.write_json({"summary": summary, "train_summary": train_summary, "shapes": records},
                      edir / "summary.json")
    return summary


def evaluate_gan(out: str | Path, n_points: int, seed: int = 0) -> dict[str, Any]:
    """COV / MMD / 1-NNA (Chamfer-L2) of ``OUT/meshes/gan/sample_*.ply`` against the training shapes,
    each in its ``gt-unit`` frame; writes ``OUT/eval/gan/summary.json``."""
    from impax.data.store import ShapeStore
    from impax.evaluation import tables
    from impax.evaluation.generation import generation_metrics
    from impax.evaluation.runner import sample_set

    out = Path(out)
    gen, problems = sample_set(sorted((out / "meshes" / "gan").glob("sample_*.ply")), n_points, seed=seed,
                               frame="gt-unit")
    ref, p2 = sample_set([out / "shapes" / e.get("source", "") for e in ShapeStore(out / "data").entries("train")],
                         n_points, seed=seed + 1_000_003, frame="gt-unit")
    problems += p2
    if not ref:
        raise StageFailed("no training shape to compare the GAN samples with")
    if gen:
        res = generation_metrics(gen, ref)
    else:  # every sample came out empty (an under-trained model): say so in the table
        res = {"coverage": float("nan"), "mmd": float("nan"), "one_nna": float("nan"), "n_generated": 0.0,
               "n_reference": float(len(ref))}
    tables.write_json({"generation": res, "problems": problems, "points_per_shape": n_points,
                       "frame": "gt-unit"}, out / "eval" / "gan" / "summary.json")
    return res


# ----------------------------------------------------------------------------------------------
# the final printout


def metric_lines(out: str | Path) -> list[str]:
    """The end-of-demo table: IoU, Chamfer-L1, Chamfer-L2, F-score, NC (mean per class, held-out)
    of both model families, then the GAN's COV / MMD / 1-NNA."""
    out = Path(out)
    cols = (("iou", "IoU"), ("chamfer_l1", "Chamfer-L1"), ("chamfer_l2", "Chamfer-L2"), ("fscore", "F-score"),
            ("normal_consistency", "NC"))
    lines = ["held-out shapes, mean per class (IM-NET frame of each ground truth; F-score at tau 0.01, x100):",
             f"  {'model':<10} {'shapes':>6} " + " ".join(f"{lab:>10}" for _, lab in cols)]
    for name, _, _ in MODELS:
        try:
            s = json.loads((out / "eval" / name / "summary.json").read_text())["summary"]
        except (OSError, json.JSONDecodeError, KeyError):
            lines.append(f"  {LABELS[name]:<10} not available")
            continue
        cm = s.get("class_mean", {})
        lines.append(f"  {LABELS[name]:<10} {s.get('count', 0):>6} "
                     + " ".join(f"{_num(cm.get(k)):>10}" for k, _ in cols))
    try:
        g = json.loads((out / "eval" / "gan" / "summary.json").read_text())["generation"]
        lines.append(f"  IM-GAN: COV {_num(g.get('coverage'))}, MMD {_num(g.get('mmd'))}, "
                     f"1-NNA {_num(g.get('one_nna'))} ({int(g.get('n_generated', 0))} samples vs "
                     f"{int(g.get('n_reference', 0))} training shapes)")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        lines.append("  IM-GAN: not available")
    return lines


def _num(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(f) else f"{f:.4g}"


def run_demo(out: str | Path = "impax-demo", quick: bool = False, meshes: str | Path | None = None, seed: int = 0,
             workers: int | None = None, progress: bool = True,
             log: Callable[[str], None] | None = None, echo: Callable[[str], None] | None = None,
             command: Sequence[str] | None = None) -> int:
    """Run ``impax demo`` and print its results (``echo``: stdout lines); returns the exit status.
    ``command``: the command line as typed (recorded in the stage markers and the report)."""
    echo = echo or (lambda s: print(s, flush=True))
    try:
        demo = Demo(out, quick=quick, meshes=meshes, seed=seed, workers=workers, progress=progress, log=log,
                    command=command)
        res = demo.run()
    except DemoError as e:
        (log or (lambda s: print(s, file=sys.stderr, flush=True)))(f"impax demo: {e}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        (log or (lambda s: print(s, file=sys.stderr, flush=True)))(
            "impax demo: interrupted; run the same command again to continue (finished stages are reused)")
        return EXIT_INTERRUPTED
    echo("")
    for line in metric_lines(out):
        echo(line)
    if res["problems"]:
        echo("stages not complete:")
        for name, why in res["problems"].items():
            echo(f"  {name}: {why}")
    reused = f", {len(res['reused'])} stages reused" if res["reused"] else ""
    echo(f"total time {_fmt_s(res['seconds'])} ({res['seconds']:.0f} s){reused}")
    report = Path(out) / "report" / "index.html"
    echo(f"report: {report.resolve() if report.is_file() else 'not written'}")
    return res["status"]
