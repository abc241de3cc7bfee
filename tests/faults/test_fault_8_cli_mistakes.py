"""Issue 15, item 8: user mistakes are one line on stderr and exit status 1, never a traceback;
``--debug`` / ``IMPAX_DEBUG=1`` show the traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faults.faultlib import GAN, QUICK, ReadOnlyDir, impax, one_line_error


@pytest.fixture(scope="module")
def runs(tmp_path_factory, store, codes) -> dict[str, Path]:
    """run.json files of each kind (no checkpoints needed: the mistakes are caught before)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, recipe in (("ae", "imnet-ae"), ("gan", "imnet-gan"), ("ldif", "ldif")):
        d = root / name
        d.mkdir()
        (d / "run.json").write_text(json.dumps({"recipe": recipe, "config": {}, "data": str(store)}))
        out[name] = d
    return out


CASES = {
    # name: (args with placeholders, words the line must contain)
    "out is a file": (["prepare", "{src}", "{file}", *QUICK], "not a folder"),
    "split fractions a,b,c": (["prepare", "{src}", "{tmp}/o", "--split-fractions", "a,b,c"], "--split-fractions"),
    "train preset bogus": (["train", "imnet-gan", "--data", "{codes}", "--out", "{tmp}/r", "--preset", "bogus"],
                           "unknown imnet-gan preset 'bogus'"),
    "set unknown key": (["train", "imnet-gan", "--data", "{codes}", "--out", "{tmp}/r", "--set", "bogus.key=1"],
                        "unknown config key 'bogus.key'"),
    "set wrong type": (["train", "imnet-ae", "--data", "{store}", "--out", "{tmp}/r", "--set",
                        "train.learning_rate=abc"], "expected a number"),
    "max steps -1": (["train", "imnet-gan", "--data", "{codes}", "--out", "{tmp}/r", "--max-steps", "-1"],
                     "--max-steps must be >= 0"),
    "missing data": (["train", "imnet-ae", "--data", "{tmp}/nothing", "--out", "{tmp}/r"], "nothing"),
    "data is a ply": (["train", "imnet-ae", "--data", "{ply}", "--out", "{tmp}/r"], "neither a prepared store"),
    "sample wrong run": (["sample", "{ae}", "--out", "{tmp}/s"], "imnet-gan run is needed"),
    "reconstruct wrong run": (["reconstruct", "{gan}", "--input", "voxels", "{store}", "--out", "{tmp}/s"],
                              "imnet-ae run is needed"),
    "imnet-gan wrong run": (["train", "imnet-gan", "--data", "{ldif}", "--out", "{tmp}/r"], "imnet-ae run is needed"),
    "interpolate unknown names": (["interpolate", "{ae}", "nope_a", "nope_b", "--out", "{tmp}/i"], "nope_a"),
    "interpolate steps 0": (["interpolate", "{ae}", "a", "b", "--steps", "0", "--out", "{tmp}/i"],
                            "--steps must be >= 1"),
    "mesh out xyz": (["mesh", "{sif}", "--out", "{tmp}/x.xyz"], "'.xyz'"),
    "mesh out folder": (["mesh", "{sif}", "--out", "{tmp}"], "is a folder"),
    "mesh resolution 4096": (["mesh", "{sif}", "--resolution", "4096"], "out of range"),
    "reconstruct resolution 100000": (["reconstruct", "{ae}", "--input", "voxels", "{store}", "--out", "{tmp}/s",
                                       "--resolution", "100000"], "out of range (16-512)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mistake_is_one_line(case, tmp_path, mesh_src, store, codes, runs, ldif_fixtures):
    args, words = CASES[case]
    (tmp_path / "afile").write_text("x")
    ply = next(mesh_src.rglob("*.ply"))
    values = {"src": mesh_src, "file": tmp_path / "afile", "tmp": tmp_path, "codes": codes, "store": store,
              "ply": ply, "sif": ldif_fixtures / "test-sif.txt", **runs}
    res = impax(*[a.format(**{k: str(v) for k, v in values.items()}) for a in args])
    line = one_line_error(res)
    assert words in line, line
    # nothing was written where the mistake pointed
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists() and not (tmp_path / "i").exists()


def test_read_only_out_is_one_line(tmp_path, mesh_src):
    with ReadOnlyDir(tmp_path / "ro") as ro:
        res = impax("prepare", mesh_src, ro / "out", *QUICK)
    line = one_line_error(res)
    assert str(ro / "out") in line and ("read-only" in line or "ermission" in line), line


def test_debug_shows_the_traceback(tmp_path, codes):
    args = ("train", "imnet-gan", "--data", codes, "--out", tmp_path / "r", *GAN, "--set", "bogus.key=1")
    for res in (impax("--debug", *args), impax(*args, IMPAX_DEBUG="1")):
        assert res.returncode == 1
        assert "Traceback" in res.stderr and res.stderr.strip().splitlines()[-1].startswith("impax train: ")
