"""Fixtures and helpers of the fault tests (issue 15): each test drives the real ``impax`` command
in a subprocess where the fault is about the command line, with real signals and processes.

``faultlib`` (this folder) holds the helpers; the fixtures here build small inputs once per
session: meshes (``mesh_src``), a prepared store (``store``) and IM-GAN latent codes (``codes``,
the cheapest real training run: a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults import faultlib


@pytest.fixture(scope="session")
def mesh_src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("meshes")
    faultlib.write_meshes(root, 4)
    return root


@pytest.fixture(scope="session")
def store(tmp_path_factory, mesh_src) -> Path:
    out = tmp_path_factory.mktemp("store") / "D"
    res = faultlib.impax("prepare", str(mesh_src), str(out), *faultlib.QUICK, "--workers", "2")
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="session")
def codes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("codes") / "zs.hdf5"
    faultlib.write_codes(path)
    return path
