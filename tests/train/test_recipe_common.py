"""Shared recipe plumbing: typed overrides and config files, resumable fields, the recipe registry,
run.json consistency, the IoU record, step budgets."""

from __future__ import annotations

import json

import pytest

from impax.configs import describe, flatten, load_overrides, override, resumable_paths
from impax.train.recipes.common import record_iou
from impax.train.runs import write_run_json


def test_override_sets_nested_fields_with_their_types_and_rejects_the_rest():
    from impax.train.recipes.imnet import CPU

    cfg = override(CPU, {"train.learning_rate": 5e-4, "stages.1.epochs": 7, "model.gf_dim": 32})
    assert (cfg.train.learning_rate, cfg.stages[1].epochs, cfg.model.gf_dim) == (5e-4, 7, 32)
    assert cfg.stages[0] == CPU.stages[0] and CPU.stages[1].epochs == 1       # a new config, CPU untouched
    for bad in ("train.nope", "nope.x", "stages.5.epochs", "stages.x.epochs", "point_mode.sub", "stages.1.nope"):
        with pytest.raises(ValueError, match="unknown config key"):
            override(CPU, {bad: 1})
    for key, value, want in (("train.learning_rate", "abc", "a number"), ("stages.1.epochs", 1.5, "an integer"),
                             ("fast_encoder", 1, "true or false"), ("budget_steps", "x", "an integer or null")):
        with pytest.raises(ValueError, match=want):
            override(CPU, {key: value})
    with pytest.raises(ValueError, match="point_mode"):  # the dataclass's own validation still runs
        override(CPU, {"point_mode": "sideways"})
    assert flatten({"a": {"b": 1}, "c": [1]}) == {"a.b": 1, "c": [1]}


def test_config_files_json_and_toml_give_dotted_overrides(tmp_path):
    (tmp_path / "c.toml").write_text('budget_steps = 10\n[train]\nlearning_rate = 1e-4\n')
    (tmp_path / "c.json").write_text('{"train": {"learning_rate": 1e-4}, "budget_steps": 10}')
    want = {"budget_steps": 10, "train.learning_rate": 1e-4}
    assert load_overrides(tmp_path / "c.toml") == want == load_overrides(tmp_path / "c.json")
    (tmp_path / "c.yaml").write_text("x: 1")
    with pytest.raises(ValueError, match="json or .toml"):
        load_overrides(tmp_path / "c.yaml")


def test_resumable_fields_are_marked_on_the_configs_and_every_field_has_help():
    from impax.train.config import RESUMABLE_FIELDS, TrainConfig
    from impax.train.recipes.ldif import LdifRecipeConfig

    assert "max_steps" in RESUMABLE_FIELDS and "learning_rate" not in RESUMABLE_FIELDS
    paths = resumable_paths(LdifRecipeConfig)
    assert {"eval_batch", "heldout_splits", "train.max_steps"} <= paths
    assert not {"epochs", "model.hardness", "train.learning_rate"} & paths
    rows = describe(TrainConfig())
    assert [k for k, _, h in rows if not h] == []     # every TrainConfig field documented


def test_every_registered_recipe_resolves_its_presets_and_names_the_choices():
    from impax.train.registry import RECIPES, recipe

    for name in RECIPES:
        r = recipe(name)
        assert {"paper", "cpu", "demo"} <= set(r.presets), name
        assert r.resolve("paper") == r.presets["paper"]
        with pytest.raises(ValueError, match="choose from"):
            r.resolve("bogus")
    # LDIF's own coupling: the model's learning rate drives the optimiser's unless both are set
    ldif = recipe("ldif")
    assert ldif.resolve("cpu", {"model.learning_rate": 1e-3}).train.learning_rate == 1e-3
    both = ldif.resolve("cpu", {"model.learning_rate": 1e-3, "train.learning_rate": 2e-3})
    assert both.train.learning_rate == 2e-3


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
    # asking for a length of training drops the preset's budget; asking for both keeps both
    from impax.train.registry import recipe

    assert recipe("ldif").resolve("cpu", {"epochs": 2}).budget_steps is None
    assert recipe("imnet-ae").resolve("cpu", {"stages.1.epochs": 2}).budget_steps is None
    assert recipe("ldif").resolve("cpu", {"epochs": 2, "budget_steps": 50}).budget_steps == 50
    assert recipe("ldif").resolve("cpu", {"train.learning_rate": 1e-4}).budget_steps == ldif.LDIF_CPU_STEPS
    # the paper preset keeps every published value the short-budget options change
    p = ldif.PRESETS["ldif"]["paper"]
    assert (p.element_init, p.decoder_topk, p.model.hardness, p.lr_schedule) == ("zero", 0, 100.0, "constant")
    # ... and the cpu presets decay their rate over their step budget (a constant 5e-4 plateaus:
    # docs/tuning.md, "real meshes, third run")
    assert ldif.PRESETS["ldif"]["cpu"].lr_schedule == imnet.PRESETS["cpu"].lr_schedule == "cosine"
