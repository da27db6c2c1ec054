"""Tolerance comparison: floats within rtol/atol pass, anything else must match exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from repro.verify.tolerance import Tolerance, compare_files

TOL = Tolerance(rtol=1e-4, atol=1e-6)


def _pair(tmp_path, name, a, b):
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    pa, pb = tmp_path / "a" / name, tmp_path / "b" / name
    for p, data in ((pa, a), (pb, b)):
        p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
    return pa, pb


def test_identical_files_pass_without_parsing(tmp_path):
    a, b = _pair(tmp_path, "x.bin", b"\x00\x01", b"\x00\x01")
    assert compare_files(a, b, TOL).detail == "identical"


@pytest.mark.parametrize("new,within", [(2.50001, True), (2.51, False)])
def test_json_floats_use_the_tolerance(tmp_path, new, within):
    a, b = _pair(tmp_path, "m.json", json.dumps({"loss": new, "steps": 3}), json.dumps({"loss": 2.5, "steps": 3}))
    result = compare_files(a, b, TOL)
    assert result.within is within
    assert ("loss" in result.detail) is (not within)


def test_json_integers_strings_and_keys_must_match(tmp_path):
    for a_obj, b_obj in (({"steps": 4}, {"steps": 3}), ({"x": "a"}, {"x": "b"}), ({"x": 1.0}, {"y": 1.0})):
        a, b = _pair(tmp_path, "m.json", json.dumps(a_obj), json.dumps(b_obj))
        assert not compare_files(a, b, TOL).within


def test_csv_and_jsonl_rows(tmp_path):
    a, b = _pair(tmp_path, "loss.csv", "step,loss\n1,2.0000001\n", "step,loss\n1,2.0\n")
    assert compare_files(a, b, TOL).within
    a, b = _pair(tmp_path, "loss.csv", "step,loss\n1,2.0\n2,1.0\n", "step,loss\n1,2.0\n")
    assert not compare_files(a, b, TOL).within
    a, b = _pair(tmp_path, "s.jsonl", '{"p": 0.5000001}\n', '{"p": 0.5}\n')
    assert compare_files(a, b, TOL).within


def test_safetensors_weights(tmp_path):
    w = torch.randn(4, 4)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_file({"w": w + 1e-7, "ids": torch.arange(3)}, str(tmp_path / "a/model.safetensors"))
    save_file({"w": w, "ids": torch.arange(3)}, str(tmp_path / "b/model.safetensors"))
    result = compare_files(tmp_path / "a/model.safetensors", tmp_path / "b/model.safetensors", TOL)
    assert result.within and "max deviation" in result.detail
    save_file({"w": w + 1e-2, "ids": torch.arange(3)}, str(tmp_path / "a/model.safetensors"))
    result = compare_files(tmp_path / "a/model.safetensors", tmp_path / "b/model.safetensors", TOL)
    assert not result.within and "w: max |diff|" in result.detail


def test_optimizer_state_compares_tensors_and_exact_scalars(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    state = {"state": {0: {"exp_avg": torch.ones(3), "step": torch.tensor(5.0)}}, "param_groups": [{"lr": 0.1}]}
    torch.save(state, tmp_path / "b/optimizer.pt")
    state["state"][0]["exp_avg"] = torch.ones(3) + 1e-8
    torch.save(state, tmp_path / "a/optimizer.pt")
    assert compare_files(tmp_path / "a/optimizer.pt", tmp_path / "b/optimizer.pt", TOL).within
    state["param_groups"][0]["lr"] = 0.2
    torch.save(state, tmp_path / "a/optimizer.pt")
    assert not compare_files(tmp_path / "a/optimizer.pt", tmp_path / "b/optimizer.pt", TOL).within


def test_formats_without_numeric_comparison_never_pass_silently(tmp_path):
    a, b = _pair(tmp_path, "plot.png", b"\x89PNG1", b"\x89PNG2")
    result = compare_files(a, b, TOL)
    assert not result.within and "no numeric comparison" in result.detail


def test_nan_matches_only_nan(tmp_path):
    a, b = _pair(tmp_path, "m.json", '{"x": NaN, "y": 1.0000001}', '{"x": NaN, "y": 1.0}')
    assert compare_files(a, b, TOL).within
    a, b = _pair(tmp_path, "m.json", '{"x": NaN}', '{"x": 1.0}')
    assert not compare_files(a, b, TOL).within
