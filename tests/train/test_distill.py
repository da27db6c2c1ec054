"""Distillation: the KD loss against hand computations, sparse targets (top-k and unbiased
sampling), teacher loading checks, document positions and the teacher logits cache."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro.model.build import TokenIds, build_model
from repro.spec.schema import ModelSpec
from repro.train.data import TokenShards
from repro.train.distill import (
    TeacherCache,
    TeacherTargets,
    document_position_ids,
    kd_loss,
    load_teacher,
    sparse_targets,
    teacher_logits,
    window_generator_seed,
    teacher_fingerprint,
    write_teacher_cache,
)

VOCAB = 64
SPEC = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                 max_position_embeddings=64)
IDS = TokenIds(vocab_size=VOCAB, bos=0, eos=0, pad=1)


def _logits(*shape, seed=0, scale=2.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# ----------------------------------------------------------------------------------- loss


def test_dense_kl_matches_hand_computation():
    zs, zt = _logits(2, 3, 5, seed=1), _logits(2, 3, 5, seed=2)
    y = torch.tensor([[1, 2, -100], [0, 4, 3]])
    alpha, T = 0.3, 2.0
    loss, parts = kd_loss(zs, y, TeacherTargets.dense(zt), alpha, T)

    kls, ces = [], []
    for b in range(2):
        for t in range(3):
            if y[b, t] == -100:
                continue
            pt = [math.exp(v / T) for v in zt[b, t].tolist()]
            ps = [math.exp(v / T) for v in zs[b, t].tolist()]
            pt = [v / sum(pt) for v in pt]
            ps = [v / sum(ps) for v in ps]
            kls.append(sum(a * math.log(a / c) for a, c in zip(pt, ps)))
            e = [math.exp(v) for v in zs[b, t].tolist()]
            ces.append(-math.log(e[y[b, t]] / sum(e)))
    kl, ce = sum(kls) / len(kls), sum(ces) / len(ces)
    assert parts["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert loss.item() == pytest.approx(alpha * T * T * kl + (1 - alpha) * ce, rel=1e-5)


def test_alpha_zero_is_plain_cross_entropy_exactly():
    zs, zt = _logits(2, 4, 7, seed=3), _logits(2, 4, 7, seed=4)
    y = torch.tensor([[1, 2, 3, -100], [0, 6, 5, 4]])
    loss, _ = kd_loss(zs, y, TeacherTargets.dense(zt), 0.0, 3.0)
    assert torch.equal(loss, F.cross_entropy(zs.reshape(-1, 7), y.reshape(-1), ignore_index=-100))


def test_top_k_with_full_vocabulary_equals_dense():
    zs, zt = _logits(2, 3, 11, seed=5), _logits(2, 3, 11, seed=6)
    y = torch.tensor([[1, 2, 3], [4, -100, 6]])
    idx, pr = sparse_targets(zt, "top_k", 11, 1.7)
    dense, dp = kd_loss(zs, y, TeacherTargets.dense(zt), 0.6, 1.7)
    sparse, sp = kd_loss(zs, y, TeacherTargets.sparse(idx, pr), 0.6, 1.7)
    assert sparse.item() == pytest.approx(dense.item(), rel=1e-5, abs=1e-6)
    assert sp["kl"].item() == pytest.approx(dp["kl"].item(), rel=1e-4, abs=1e-6)


def test_top_k_is_renormalised_head():
    zt = _logits(4, 20, seed=7)
    idx, pr = sparse_targets(zt, "top_k", 5, 1.0)
    p = torch.softmax(zt, -1)
    top, top_idx = torch.topk(p, 5, -1)
    assert torch.equal(idx, top_idx)
    torch.testing.assert_close(pr, top / top.sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="vocabulary has only 20"):
        sparse_targets(zt, "top_k", 21, 1.0)


def test_sampled_targets_are_unbiased_estimates_of_teacher_probs():
    vocab, k, draws, T = 8, 16, 4000, 1.5
    zt = _logits(vocab, seed=8)
    p = torch.softmax(zt / T, -1)
    gen = torch.Generator().manual_seed(0)
    idx, pr = sparse_targets(zt.expand(draws, vocab), "sampled", k, T, gen)
    assert idx.shape == pr.shape == (draws, k)
    torch.testing.assert_close(pr.sum(-1), torch.ones(draws))
    # A token appears once with its frequency; other slots repeat a token with weight 0.
    dense = torch.zeros(draws, vocab).scatter_add_(1, idx, pr)
    assert ((dense * k).round() == dense * k).all()
    mean = dense.mean(0)
    sd = (p * (1 - p) / (draws * k)).sqrt()
    assert ((mean - p).abs() <= 5 * sd + 1e-6).all(), (mean, p)
    # top-k of the same distribution is biased: the head gains the tail's mass.
    _, top = sparse_targets(zt, "top_k", 2, T)
    assert top.sum() > 0.99 and torch.softmax(zt / T, -1).topk(2).values.sum() < 0.99


def test_sampled_needs_generator_and_is_reproducible():
    zt = _logits(3, 10, seed=9)
    with pytest.raises(ValueError, match="Generator"):
        sparse_targets(zt, "sampled", 4, 1.0)
    a = sparse_targets(zt, "sampled", 4, 1.0, torch.Generator().manual_seed(5))
    b = sparse_targets(zt, "sampled", 4, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_sparse_kl_is_kl_on_the_support():
    zs = _logits(1, 1, 6, seed=10)
    idx = torch.tensor([[[1, 3, 3]]])
    q = torch.tensor([[[0.25, 0.75, 0.0]]])
    _, parts = kd_loss(zs, torch.tensor([[2]]), TeacherTargets.sparse(idx, q), 1.0, 1.0)
    logp = torch.log_softmax(zs[0, 0], -1)
    want = 0.25 * (math.log(0.25) - logp[1]) + 0.75 * (math.log(0.75) - logp[3])
    assert parts["kl"].item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_gradients_flow_to_the_student_only(sparse):
    zs = _logits(2, 3, 9, seed=11).requires_grad_(True)
    zt = _logits(2, 3, 9, seed=12).requires_grad_(True)
    y = torch.tensor([[1, 2, 3], [4, 5, -100]])
    if sparse:
        idx, pr = sparse_targets(zt, "top_k", 4, 2.0)
        pr.requires_grad_(True)
        target = TeacherTargets.sparse(idx, pr)
    else:
        target = TeacherTargets.dense(zt)
    loss, _ = kd_loss(zs, y, target, 0.5, 2.0)
    loss.backward()
    assert zs.grad is not None and zs.grad.abs().sum() > 0
    assert zt.grad is None
    if sparse:
        assert pr.grad is None


def test_all_positions_ignored_gives_zero_not_nan():
    zs = _logits(1, 2, 5, seed=13).requires_grad_(True)
    loss, parts = kd_loss(zs, torch.full((1, 2), -100), TeacherTargets.dense(_logits(1, 2, 5)), 0.5, 1.0)
    assert loss.item() == 0.0 and parts["ce"].item() == 0.0
    loss.backward()


# -------------------------------------------------------------------------------- teacher


def _save_teacher(path, vocab=VOCAB):
    ids = TokenIds(vocab_size=vocab, bos=0, eos=0, pad=1)
    build_model(SPEC, ids, seed=0).save_pretrained(path)
    return path


def test_load_teacher_frozen_fp32(tmp_path):
    model = load_teacher(str(_save_teacher(tmp_path / "t")), VOCAB, trust_remote_code=False)
    assert not model.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in model.parameters())


def test_load_teacher_vocab_mismatch(tmp_path):
    path = _save_teacher(tmp_path / "t", vocab=80)
    with pytest.raises(ValueError, match=r"(?s)80 tokens.*64.*same tokenizer"):
        load_teacher(str(path), VOCAB, trust_remote_code=False)


def test_load_teacher_missing_folder(tmp_path):
    missing = tmp_path / "experiments" / "teacher" / "final"
    with pytest.raises(FileNotFoundError, match=r"(?s)experiments/teacher/final.*train the teacher"):
        load_teacher(str(missing), VOCAB, trust_remote_code=False)


def test_load_teacher_warns_about_remote_code(tmp_path):
    path = _save_teacher(tmp_path / "t")
    with pytest.warns(UserWarning, match="run Python code"):
        load_teacher(str(path), VOCAB, trust_remote_code=True)


# ----------------------------------------------------------------------- document positions


def test_document_position_ids_restart_after_eos():
    x = torch.tensor([[5, 6, 0, 7, 8, 9, 0, 0, 3], [0, 4, 4, 4, 4, 4, 4, 4, 4]])
    assert document_position_ids(x, eos_id=0).tolist() == [
        [0, 1, 2, 0, 1, 2, 3, 0, 0],
        [0, 0, 1, 2, 3, 4, 5, 6, 7],
    ]
    assert document_position_ids(np.array([[1, 2, 3]]), eos_id=0).tolist() == [[0, 1, 2]]


def test_teacher_with_document_positions_sees_each_document_alone():
    """Position ids that restart make transformers mask attention per document too."""
    teacher = build_model(SPEC, IDS, seed=1).eval()
    x = torch.tensor([[5, 6, 7, 0, 8, 9, 10, 11]])
    joint = teacher_logits(teacher, x, document_position_ids(x, 0))
    alone = teacher_logits(teacher, x[:, 4:])
    torch.testing.assert_close(joint[:, 4:], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(teacher_logits(teacher, x)[:, 4:], alone, atol=1e-3)


# ---------------------------------------------------------------------------------- cache


def _shards(tmp_path, seq_len=8, n_tokens=9 * 7 + 3) -> TokenShards:
    folder = tmp_path / "tokens"
    folder.mkdir()
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, VOCAB, n_tokens)
    tokens[rng.random(n_tokens) < 0.15] = 0  # EOS: documents end inside windows
    tokens.astype("<u2").tofile(folder / "t.ds")
    meta = {"files": ["t.ds"], "dtype": "uint16", "vocab_size": VOCAB, "eos_id": 0, "num_tokens": n_tokens}
    (folder / "meta.json").write_text(json.dumps(meta))
    return TokenShards(folder, seq_len=seq_len)


@pytest.mark.parametrize("mode,doc_masking", [("sampled", True), ("top_k", False)])
def test_cache_is_independent_of_batch_size_and_reads_back(tmp_path, mode, doc_masking):
    teacher_dir = _save_teacher(tmp_path / "teacher")
    teacher = load_teacher(str(teacher_dir), VOCAB, trust_remote_code=False)
    shards = _shards(tmp_path)
    assert shards.num_windows == 7
    kw = dict(mode=mode, k=16, temperature=2.0, seed=3, doc_masking=doc_masking)
    meta = write_teacher_cache(teacher, shards, tmp_path / "b1", batch_size=1, **kw)
    write_teacher_cache(teacher, shards, tmp_path / "b3", batch_size=3, **kw)
    for name in ("indices.npy", "probs.npy", "meta.json"):
        assert (tmp_path / "b1" / name).read_bytes() == (tmp_path / "b3" / name).read_bytes(), name

    sha = hashlib.sha256(b"model.safetensors\0" + (teacher_dir / "model.safetensors").read_bytes())
    assert meta["teacher_fingerprint"] == "safetensors:" + sha.hexdigest()
    assert {k: meta[k] for k in ("mode", "k", "temperature", "seed", "seq_len", "num_windows")} == {
        "mode": mode, "k": 16, "temperature": 2.0, "seed": 3, "seq_len": 8, "num_windows": 7}
    assert np.load(tmp_path / "b1" / "indices.npy").dtype == np.int32
    assert np.load(tmp_path / "b1" / "probs.npy").dtype == np.float16

    cache = TeacherCache(tmp_path / "b1")
    cache.check(mode=mode, k=16, temperature=2.0, seq_len=8, num_windows=7, doc_masking=doc_masking)
    with pytest.raises(ValueError, match="temperature"):
        cache.check(mode=mode, k=16, temperature=1.0, seq_len=8)
    idx, pr = cache.targets([5, 2])
    assert idx.shape == pr.shape == (2, 8, 16) and idx.dtype == torch.int64 and pr.dtype == torch.float32
    torch.testing.assert_close(pr.sum(-1), torch.ones(2, 8))

    # Window 2 recomputed on its own, with its own generator, gives the stored targets.
    x = torch.from_numpy(shards.window(2)[:-1])[None]
    logits = teacher_logits(teacher, x, document_position_ids(x, 0) if doc_masking else None)
    gen = torch.Generator().manual_seed(window_generator_seed(3, 2)) if mode == "sampled" else None
    want_idx, want_pr = sparse_targets(logits[0], mode, 16, 2.0, gen)
    assert torch.equal(idx[1], want_idx)
    torch.testing.assert_close(pr[1], want_pr, rtol=2e-3, atol=1e-4)

    # The cache plugs straight into the loss.
    student = build_model(SPEC, IDS, seed=2)
    windows = torch.from_numpy(np.stack([shards.window(i) for i in (5, 2)]))
    z = student(input_ids=windows[:, :-1], use_cache=False).logits
    loss, parts = kd_loss(z, windows[:, 1:], TeacherTargets.sparse(idx, pr), 0.5, 2.0)
    assert torch.isfinite(loss) and parts["kl"] >= 0


def test_fingerprint_of_an_in_memory_teacher_hashes_its_weights():
    a, b, c = (build_model(SPEC, IDS, seed=s) for s in (0, 0, 1))
    assert teacher_fingerprint(a).startswith("weights:")
    assert teacher_fingerprint(a) == teacher_fingerprint(b) != teacher_fingerprint(c)


def test_cache_without_meta_is_rejected(tmp_path):
    (tmp_path / "c").mkdir()
    with pytest.raises(FileNotFoundError, match="teacher-logits stage"):
        TeacherCache(tmp_path / "c")
