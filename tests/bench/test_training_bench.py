"""bench/training.py (run by hand, shared PERF.md): its functions wire up and report sane,
self-consistent numbers on a tiny model in --quick mode. No timing thresholds here."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import training  # noqa: E402


def test_quick_run_reports_consistent_numbers(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_NUM_THREADS", "1")  # wiring check: no contention with other tests
    out = tmp_path / "bench.json"
    result = training.main(["--quick", "--tiny", "--tokens", "synthetic", "--json", str(out)])

    tp = result["throughput"]
    v = tp["variants"]
    assert set(v) == {"ours", "minimal", "minimal_no_doc_mask"}
    peak = tp["peak_flops"]
    assert math.isfinite(peak) and peak > 0
    assert peak == max(tp["peak_flops_before"], tp["peak_flops_after"])
    per_token = tp["flops_per_token"]["total"]
    assert per_token == tp["flops_per_token"]["dense"] + tp["flops_per_token"]["attention"] > 0
    for name, row in v.items():
        assert len(row["runs_tokens_per_s"]) == tp["rounds"] == 2
        assert all(math.isfinite(r) and r > 0 for r in row["runs_tokens_per_s"])
        assert row["tokens_per_s"] == np.median(row["runs_tokens_per_s"])
        assert 0 < row["mfu"] <= 1
        assert math.isclose(row["mfu"], row["tokens_per_s"] * per_token / peak)
    assert tp["ratio_ours_over_minimal"] == v["ours"]["tokens_per_s"] / v["minimal"]["tokens_per_s"]
    assert tp["doc_masking_cost"] == 1 - v["minimal"]["tokens_per_s"] / v["minimal_no_doc_mask"]["tokens_per_s"]
    # both loops did the same work: the same windows, and the same loss before any update
    assert tp["same_windows"] is True
    first = tp["first_step_loss"]
    assert math.isclose(first["ours"], first["minimal"], rel_tol=1e-5)

    mv = result["muon_vs_adamw"]
    n = mv["steps"]
    assert n == 20 and mv["adamw_curve"][-1][0] == n
    assert [s for s, _ in mv["adamw_curve"]] == list(range(0, n + 1, mv["eval_every"]))
    assert mv["adamw_final_val_loss"] == mv["adamw_curve"][-1][1]
    assert math.isfinite(mv["adamw_final_val_loss"])
    assert mv["adamw_curve"][-1][1] < mv["adamw_curve"][0][1]  # AdamW learned something
    reached = mv["muon_steps_to_adamw_final"]
    if reached == training.NOT_REACHED:
        assert mv["steps_ratio"] is None
        assert all(loss > mv["adamw_final_val_loss"] for _, loss in mv["muon_curve"])
    else:
        assert isinstance(reached, int) and 0 < reached <= n
        assert mv["steps_ratio"] == reached / n
        assert dict(mv["muon_curve"])[reached] <= mv["adamw_final_val_loss"]
        assert mv["muon_curve"][-1][0] == reached  # Muon stops once it gets there

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith(f"ratio ours/minimal training tokens/s: {tp['ratio_ours_over_minimal']:.3f}")
    assert printed[-2].startswith("ratio Muon/AdamW steps")


def test_synthetic_tokens_look_like_documents():
    tokens = training.synthetic_tokens(20_000, vocab=512, eos=0, doc_len=(100, 300), seed=1)
    assert tokens.min() >= 0 and tokens.max() < 512
    ends = np.flatnonzero(tokens == 0)
    gaps = np.diff(np.concatenate([[-1], ends])) - 1  # document lengths
    assert len(ends) > 50 and gaps.min() >= 100 and gaps.max() <= 300
    # learnable: far fewer distinct bigrams than a uniform stream would show
    bigrams = set(zip(tokens[:-1].tolist(), tokens[1:].tolist()))
    assert len(bigrams) < 0.5 * len(tokens)


def test_validation_windows_are_held_out(tmp_path):
    setup = training.tiny_setup()
    data = training.prepare_data(setup, ["synthetic"], tmp_path, val_windows=6, min_train_tokens=3000)
    window = setup.seq_len + 1
    assert data.val.shape == (6, window)
    (shards,) = data.sources.values()
    total = int(shards.meta["num_tokens"]) + 6 * window
    assert total == 3000 + 7 * window  # training tokens + held-out tail = everything drawn
    raw = training.synthetic_tokens(total, setup.vocab_size, setup.eos_id, setup.doc_len, setup.seed)
    assert np.array_equal(data.val.numpy().ravel(), raw[-6 * window:])


def test_quickstart_token_folders_come_from_the_train_stage(tmp_path):
    for name in ("web", "code"):
        (tmp_path / "data" / "tokens" / f"tokenize-{name}-1").mkdir(parents=True)
        (tmp_path / "data" / "tokens" / f"tokenize-{name}-1" / "meta.json").write_text("{}")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  train-qs-nope-stable-abc:\n"
        "    cmd: repro stage train train-qs-nope-stable-abc --in tokenizer=t\n"
        "      --in tokens:code=data/tokens/tokenize-code-1\n"
        "      --in tokens:web=data/tokens/tokenize-web-1 --out checkpoint=c\n"
        "    deps:\n"
        "    - x\n")
    found = training.quickstart_tokens(tmp_path)
    assert found == {"code": tmp_path / "data/tokens/tokenize-code-1",
                     "web": tmp_path / "data/tokens/tokenize-web-1"}
    (tmp_path / "data" / "tokens" / "tokenize-web-1" / "meta.json").unlink()
    assert training.quickstart_tokens(tmp_path) == {}  # missing shards: synthetic instead
