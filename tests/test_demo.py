"""``impax demo --quick`` end to end (what CI runs): it completes, leaves the documented layout,
prints metrics that equal the per-shape CSV's class means, its report opens in headless Chromium
with every image loaded and every table present, and running it again reuses every stage.
Also, without running any stage but the first: the split of the user's meshes and the stage keys."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from browser_util import inspect_page

REPO = Path(__file__).resolve().parents[1]


def _impax(*args: str, cwd: Path) -> tuple[int, str, str, float]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "impax", *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=900)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def _class_means_from_csv(path: Path, split_of: dict[str, str], metric: str) -> float:
    """Mean over classes of the held-out shapes' ``metric``, straight from per_shape.csv."""
    by_class: dict[str, list[float]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if split_of.get(row["id"]) == "test":
                by_class.setdefault(row["class"], []).append(float(row[metric]))
    return float(np.mean([np.mean(v) for v in by_class.values()]))


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    rc, out, err, secs = _impax("demo", "--quick", "--out", "tmp", "--no-progress", cwd=root)
    return {"root": root, "out": root / "tmp", "rc": rc, "stdout": out, "stderr": err, "seconds": secs}


def test_quick_demo_completes_with_the_documented_layout(quick_demo):
    out = quick_demo["out"]
    assert quick_demo["rc"] == 0, quick_demo["stderr"][-3000:]
    # Wall time is a measurement, not a test assertion (shared machines are noisy): it is printed here
    # and recorded in the issue notes; see `impax demo --quick` timing in README.
    print(f"impax demo --quick took {quick_demo['seconds']:.0f} s")
    for line in quick_demo["stderr"].splitlines():  # stage headers with their budgets
        assert "FAILED" not in line, line
    headers = re.findall(r"^\[(\d+)/(\d+)\] (.+) \.\.\.$", quick_demo["stderr"], re.M)
    assert [int(i) for i, _, _ in headers] == list(range(1, 12)) and all(n == "11" for _, n, _ in headers)
    index = json.loads((out / "data" / "index.json").read_text())
    split_of = {e["id"]: e["split"] for e in index["shapes"]}
    held = sorted(i for i, s in split_of.items() if s == "test")
    classes = {e["class"] for e in index["shapes"]}
    assert len(classes) >= 8 and len(held) == len(classes)  # one held-out shape per family
    for e in index["shapes"]:  # ground truth where the report looks for it
        assert (out / "shapes" / e["source"]).is_file()
    for m in ("imnet-ae", "ldif"):
        assert json.loads((out / "runs" / m / "run.json").read_text())["data"]
        for sid in held:
            assert (out / "meshes" / m / f"{sid}.ply").is_file(), (m, sid)
        summary = json.loads((out / "eval" / m / "summary.json").read_text())["summary"]
        assert summary["count"] == len(held)
        assert (out / "eval" / m / "table.md").read_text().count("\n") >= len(classes) + 3
        # the printed mean IoU / F-score are the class means of the per-shape CSV (held-out rows)
        for metric, col in (("iou", 1), ("fscore", 4)):
            want = _class_means_from_csv(out / "eval" / m / "per_shape.csv", split_of, metric)
            label = {"imnet-ae": "IM-NET AE", "ldif": "LDIF"}[m]
            line = next(ln for ln in quick_demo["stdout"].splitlines() if ln.strip().startswith(label))
            printed = float(line.split()[-6 + col])  # the last five columns are the metrics
            assert math.isclose(printed, want, rel_tol=1e-3, abs_tol=1e-4), (m, metric, printed, want)
            assert math.isclose(summary["class_mean"][metric], want, rel_tol=1e-4, abs_tol=1e-6)
    assert len(list((out / "meshes" / "interp").glob("step_*.ply"))) >= 2
    assert list((out / "meshes" / "gan").glob("sample_*.ply"))
    assert "coverage" in json.loads((out / "eval" / "gan" / "summary.json").read_text())["generation"]
    assert re.search(r"^report: .*report/index\.html$", quick_demo["stdout"], re.M)
    assert re.search(r"^total time \d+:\d\d", quick_demo["stdout"], re.M)


def test_quick_demo_report_opens_in_chromium(quick_demo):
    out = quick_demo["out"]
    page = out / "report" / "index.html"
    shot = quick_demo["root"] / "demo_quick_shot.png"
    info = inspect_page(page, screenshot=shot, ids=("reproduce",))
    assert info["images"], "the report has no images"
    # the command line exactly as the fixture typed it (run as a module)
    typed = f"{Path(sys.executable).name} -m impax demo --quick --out tmp --no-progress"
    assert typed in info["elements"]["reproduce"], info["elements"]["reproduce"]
    assert f"(in {quick_demo['root']})" in info["elements"]["reproduce"]
    broken = [i["alt"] for i in info["images"] if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not broken, broken
    ids = {t["id"] for t in info["tables"]}
    want = {"stages", "data", "metrics-imnet-ae", "shapes-grid", "interp-strip", "runs", "metrics-ldif",
            "metrics-compare", "metrics-gan", "gan-samples"}
    assert want <= ids, want - ids
    rows = {t["id"]: t["rows"] for t in info["tables"]}
    assert rows["shapes-grid"] >= 2 and rows["metrics-imnet-ae"] >= 3
    assert info["svgs"] >= 1  # loss curves
    assert shot.stat().st_size > 10_000
    shutil.copy(shot, "/tmp/demo_quick_shot.png")


def test_rerun_reuses_every_stage_and_a_lost_stage_reruns_alone(quick_demo):
    root, out = quick_demo["root"], quick_demo["out"]
    before = (out / "report" / "index.html").stat().st_mtime_ns
    rc, stdout, stderr, secs = _impax("demo", "--quick", "--out", "tmp", "--no-progress", cwd=root)
    assert rc == quick_demo["rc"], stderr[-2000:]
    assert len(re.findall(r"^\[\d+/11\] .*: done earlier, reusing$", stderr, re.M)) == 11, stderr
    assert (out / "report" / "index.html").stat().st_mtime_ns == before
    # as if interrupted during the evaluation: its marker and the report's are gone
    for name in ("evaluate", "report"):
        (out / ".stages" / f"{name}.json").unlink()
    rc, stdout, stderr, _ = _impax("demo", "--quick", "--out", "tmp", "--no-progress", cwd=root)
    assert rc == quick_demo["rc"], stderr[-2000:]
    reused = re.findall(r"^\[\d+/11\] (.*): done earlier, reusing$", stderr, re.M)
    ran = re.findall(r"^\[\d+/11\] (.*): finished in", stderr, re.M)
    assert len(reused) == 9 and len(ran) == 2 and ran[0].startswith("evaluate") and ran[1].startswith("write")
    assert (out / "report" / "index.html").stat().st_mtime_ns > before


# ---------------------------------------------------------------------------- without JAX


def test_user_meshes_are_linked_and_split_per_class(tmp_path):
    """--meshes: files linked under OUT/shapes with their relative paths; per class
    max(1, round(0.2 n)) held out (none for a class of one); the split lists name store ids."""
    from impax.demo import Demo
    from impax.geometry.shapes import make_shape

    src = tmp_path / "mine"
    counts = {"cup": 6, "vase": 2, "odd": 1}
    for cls, n in counts.items():
        for k in range(n):
            path = src / cls / f"m{k}.ply"
            path.parent.mkdir(parents=True, exist_ok=True)
            make_shape("sphere", k).mesh.export(path)
    (src / "cup" / "notes.txt").write_text("not a mesh")
    demo = Demo(tmp_path / "out", quick=True, meshes=src)
    stages = {s.name: s for s in demo.stages()}
    summary = stages["shapes"].run()
    assert summary["shapes"] == 9 and summary["classes"] == 3
    linked = sorted(p.relative_to(tmp_path / "out" / "shapes").as_posix()
                    for p in (tmp_path / "out" / "shapes").rglob("*.ply"))
    assert linked == sorted(f"{c}/m{k}.ply" for c, n in counts.items() for k in range(n))
    test = (tmp_path / "out" / "splits" / "test.lst").read_text().split()
    train = (tmp_path / "out" / "splits" / "train.lst").read_text().split()
    held = {c: sum(i.startswith(f"{c}_") for i in test) for c in counts}
    assert held == {"cup": 1, "vase": 1, "odd": 0}  # round(1.2) = 1, max(1, round(0.4)) = 1, a class of one: 0
    assert sorted(test + train) == sorted(f"{c}_m{k}" for c, n in counts.items() for k in range(n))


def test_the_demo_records_its_command_line_as_typed(tmp_path, monkeypatch):
    """`impax demo ...` hands its command line to the demo, which writes it (and the folder it ran
    in) into each stage marker it writes; as a console script it reads `impax`, as a module
    `python -m impax`."""
    import impax.demo
    from impax.cli import command_line, main
    from impax.demo import Demo
    from impax.geometry.shapes import make_shape
    from impax.stages import StageRunner

    seen = {}
    monkeypatch.setattr(impax.demo, "run_demo", lambda out, **kw: seen.update(kw, out=out) or 0)
    assert main(["demo", "--seed", "3", "--out", "my out", "--no-progress"]) == 0
    assert seen["command"] == ["impax", "demo", "--seed", "3", "--out", "my out", "--no-progress"]
    monkeypatch.setattr(sys, "argv", ["/venv/bin/impax", "demo", "--quick"])
    assert command_line() == ["impax", "demo", "--quick"]
    monkeypatch.setattr(sys, "argv", ["/src/impax/__main__.py", "demo"])
    assert command_line() == [Path(sys.executable).name, "-m", "impax", "demo"]

    src = tmp_path / "mine" / "cup"
    src.mkdir(parents=True)
    for k in range(2):
        make_shape("sphere", k).mesh.export(src / f"m{k}.ply")
    typed = ["impax", "demo", "--quick", "--meshes", str(tmp_path / "mine")]
    demo = Demo(tmp_path / "out", quick=True, meshes=tmp_path / "mine", command=typed)
    StageRunner(demo.out, log=lambda s: None).run(demo.stages()[:1])
    marker = json.loads((tmp_path / "out" / ".stages" / "shapes.json").read_text())
    assert marker["summary"]["invocation"] == {"argv": typed, "cwd": os.getcwd()}


def test_stage_keys_follow_the_options_that_change_results(tmp_path):
    from impax.demo import Demo

    def keys(**kw):
        return {s.name: s.key for s in Demo(tmp_path / "o", **kw).stages()}

    base = keys(quick=True)
    assert keys(quick=True) == base
    assert keys(quick=True, workers=1) == base  # workers do not change results
    for other in (keys(quick=False), keys(quick=True, seed=1)):
        assert all(other[n] != base[n] for n in base)  # quick and seed reach every stage
    (tmp_path / "m" / "a").mkdir(parents=True)
    from impax.geometry.shapes import make_shape

    make_shape("box", 0).mesh.export(tmp_path / "m" / "a" / "x.ply")
    mine = keys(quick=True, meshes=tmp_path / "m")
    assert all(mine[n] != base[n] for n in base)
    make_shape("box", 1).mesh.export(tmp_path / "m" / "a" / "y.ply")  # the folder changed
    assert keys(quick=True, meshes=tmp_path / "m")["shapes"] != mine["shapes"]


def test_demo_uses_each_recipes_own_demo_and_quick_presets():
    from impax.demo import make_plan
    from impax.train.registry import recipe

    for quick in (False, True):
        p = make_plan(quick=quick, seed=0)
        for tp in (p.imnet_ae, p.ldif, p.gan):
            assert tp.preset == ("quick" if quick else "demo")
            assert tp.preset in recipe(tp.recipe).presets  # every recipe offers both
        assert (p.imnet_ae.init_from is None) == quick and p.gan.init_from is None


def test_a_changed_preset_retrains_its_stage_and_what_depends_on_it(tmp_path, monkeypatch):
    import dataclasses

    from impax.demo import Demo
    from impax.train.recipes import ldif as L

    def keys():
        return {s.name: s.key for s in Demo(tmp_path / "o", quick=True).stages()}

    base = keys()
    quick = L.PRESETS["ldif"]["quick"]
    monkeypatch.setitem(L.PRESETS["ldif"], "quick", dataclasses.replace(quick, epochs=quick.epochs + 1))
    changed = keys()
    assert changed["train-ldif"] != base["train-ldif"]
    assert changed["reconstruct-ldif"] != base["reconstruct-ldif"] and changed["report"] != base["report"]
    assert changed["train-imnet-ae"] == base["train-imnet-ae"] and changed["prepare"] == base["prepare"]
