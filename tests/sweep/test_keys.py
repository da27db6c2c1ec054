"""Key patterns resolve to params.yaml leaves, or fail with the closest keys that exist."""

from __future__ import annotations

import pytest

from repro.sweep.keys import KeyResolutionError, get_path, leaf_paths, resolve_pattern

PARAMS = {
    "train-exp-stable": {"optimizer": {"lr": 0.003, "weight_decay": 0.1,
                                       "betas": [0.9, 0.95]},
                         "schedule": {"warmup_steps": 10}},
    "train-exp-decay": {"optimizer": {"lr": 0.003, "weight_decay": 0.1,
                                      "betas": [0.9, 0.95]},
                        "schedule": {"warmup_steps": 10}},
    "train-exp-seed1-stable": {"optimizer": {"lr": 0.003}},
    "evaluate-exp-decay": {"seed": 0},
}


def test_leaves_are_non_mappings_in_file_order():
    assert leaf_paths(PARAMS["train-exp-stable"]) == [
        "optimizer.lr", "optimizer.weight_decay", "optimizer.betas", "schedule.warmup_steps"]
    assert get_path(PARAMS, "train-exp-decay.optimizer.betas") == [0.9, 0.95]
    with pytest.raises(KeyError):
        get_path(PARAMS, "train-exp-decay.optimizer.nope")


def test_wildcard_in_the_stage_name_matches_every_stage_in_file_order():
    assert resolve_pattern("train-exp-*.optimizer.lr", PARAMS) == (
        "train-exp-stable.optimizer.lr", "train-exp-decay.optimizer.lr",
        "train-exp-seed1-stable.optimizer.lr")
    assert resolve_pattern("train-exp-stable.schedule.warmup_steps", PARAMS) == (
        "train-exp-stable.schedule.warmup_steps",)


def test_stages_the_objective_does_not_read_are_dropped():
    usable = {"train-exp-stable", "train-exp-decay"}
    assert resolve_pattern("train-exp-*.optimizer.lr", PARAMS, usable) == (
        "train-exp-stable.optimizer.lr", "train-exp-decay.optimizer.lr")
    with pytest.raises(KeyResolutionError, match="objective does not depend on") as e:
        resolve_pattern("train-exp-seed1-*.optimizer.lr", PARAMS, usable)
    assert "train-exp-stable.optimizer.lr" in e.value.fix


def test_a_misspelt_field_suggests_the_closest_keys():
    with pytest.raises(KeyResolutionError, match="none has the field `optimizer.lrr`") as e:
        resolve_pattern("train-exp-*.optimizer.lrr", PARAMS)
    assert e.value.fix.startswith("closest existing: `train-exp-*.optimizer.lr`")


def test_a_stage_pattern_matching_nothing_suggests_existing_sections():
    with pytest.raises(KeyResolutionError, match="no params.yaml section matches `trian-exp-\\*`") as e:
        resolve_pattern("trian-exp-*.optimizer.lr", PARAMS)
    assert "train-exp-" in e.value.fix and "`*` matches any part" in e.value.fix


def test_a_section_is_not_a_value():
    with pytest.raises(KeyResolutionError, match="is a section, not a value") as e:
        resolve_pattern("train-exp-*.optimizer", PARAMS)
    assert "`train-exp-*.optimizer.lr`" in e.value.fix


def test_a_pattern_without_a_field_is_refused():
    with pytest.raises(KeyResolutionError, match="names no field"):
        resolve_pattern("train-exp-*", PARAMS)
