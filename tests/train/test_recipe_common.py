"""Shared recipe plumbing: dotted overrides, run.json consistency, the IoU record."""

from __future__ import annotations

import json

import pytest

from impax.train.recipes.common import apply_dotted, flat, record_iou, write_run_json


def test_apply_dotted_sets_nested_values_and_rejects_unknown_keys():
    d = {"train": {"learning_rate": 1e-3}, "stages": [{"epochs": 1}, {"epochs": 2}], "name": "x"}
    apply_dotted(d, {"train.learning_rate": 5e-4, "stages.1.epochs": 7, "name": "y"})
    assert d == {"train": {"learning_rate": 5e-4}, "stages": [{"epochs": 1}, {"epochs": 7}], "name": "y"}
    for bad in ("train.nope", "nope.x", "stages.5.epochs", "stages.x.epochs", "name.sub", "stages.1.nope"):
        with pytest.raises(ValueError, match="unknown config key"):
            apply_dotted(d, {bad: 1})
    assert flat(d) == {"train.learning_rate": 5e-4, "stages": d["stages"], "name": "y"}


def test_run_json_refuses_other_settings_but_allows_resumable_ones(tmp_path):
    info = {"recipe": "imnet-gan", "config": {"lr": 1.0, "log_every": 10}, "seed": 0}
    write_run_json(tmp_path, info, resumable={"log_every"})
    assert json.loads((tmp_path / "run.json").read_text()) == info
    write_run_json(tmp_path, {**info, "config": {"lr": 1.0, "log_every": 99}}, resumable={"log_every"})
    with pytest.raises(ValueError, match=r"lr: 1.0 -> 2.0"):
        write_run_json(tmp_path, {**info, "config": {"lr": 2.0, "log_every": 99}}, resumable={"log_every"})
    with pytest.raises(ValueError, match="seed: 0 -> 3"):
        write_run_json(tmp_path, {**info, "seed": 3}, resumable={"log_every"})
    with pytest.raises(ValueError, match="recipe: 'imnet-gan' -> 'ldif'"):
        write_run_json(tmp_path, {**info, "recipe": "ldif"}, resumable={"log_every"})
    # a field added since the run started reads as its default through `normalize`
    write_run_json(tmp_path, {**info, "config": {"lr": 1.0, "log_every": 99, "new": 0}}, resumable={"log_every"},
                   normalize=lambda c: {**c, "new": 0})


def test_record_iou_writes_the_report_and_the_headline_numbers(tmp_path):
    report = {"train": {"mean_iou": 0.9, "count": 4}, "heldout": {"mean_iou": 0.8, "count": 2}}
    summary = record_iou(tmp_path, "eval.json", report, {"recipe": "x"})
    assert summary == {"recipe": "x", "iou_train": 0.9, "n_train": 4, "iou_heldout": 0.8, "n_heldout": 2}
    assert json.loads((tmp_path / "eval.json").read_text()) == report


def test_budget_epochs_fill_a_step_budget_whatever_the_data_size():
    from impax.train.recipes.common import budget_epochs

    assert budget_epochs(None, 7, 100) == 7                      # no budget: the configured epochs
    assert budget_epochs(4156, 130, 31, steps_before=126) == 130  # the imnet-ae cpu preset on 255 shapes
    assert budget_epochs(3060, 180, 17) == 180                    # the ldif cpu preset on ~70 shapes
    assert budget_epochs(3060, 180, 9) == 340                     # fewer shapes: more epochs, same steps
    assert budget_epochs(10, 5, 100) == 1                         # at least one epoch
    assert budget_epochs(100, 5, 10, steps_before=200) == 1


def test_cpu_presets_are_sized_in_steps_and_paper_presets_in_epochs():
    from impax.train.recipes import imnet, ldif

    assert imnet.PRESETS["cpu"].budget_steps == 4156 and imnet.PRESETS["paper"].budget_steps is None
    assert ldif.PRESETS["ldif"]["cpu"].budget_steps == ldif.LDIF_CPU_STEPS
    assert ldif.PRESETS["ldif"]["paper"].budget_steps is None
    # the paper preset keeps every published value the short-budget options change
    p = ldif.PRESETS["ldif"]["paper"]
    assert (p.element_init, p.decoder_topk, p.model.hardness, p.lr_schedule) == ("zero", 0, 100.0, "constant")
