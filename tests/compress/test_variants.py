"""Every variant loads through liverec.load, ranks close to fp32 and is smaller where it claims."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import liverec
from liverec.compress.report import weight_bytes, weight_elements
from liverec.evaluate.protocol import pad_left
from liverec.model.artifact import load_model

# (min mean top-10 overlap with fp32, min Pearson correlation of the full score vectors)
FLOORS = {
    "int8": (0.9, 0.99),
    "bf16": (0.9, 0.99),
    "onnx-fp32": (0.99, 0.9999),
    "onnx-int8": (0.9, 0.99),
    "structured50": (0.6, 0.8),  # fine-tuned after pruning: close, not identical
    "magnitude50": (0.6, 0.8),
    "distilled": (0.5, 0.7),  # a different, much smaller model trained to imitate
    "distilled-onnx": (0.5, 0.7),
}


def _scores(model, histories) -> torch.Tensor:
    with torch.no_grad():
        s = model.score(torch.from_numpy(pad_left(histories, model.cfg.max_len))).float()
    return s[:, 1:]  # (B, N) padding column left out


@pytest.fixture(scope="module")
def histories(known_answer_data):
    _, hist, _ = known_answer_data.eval_cases("test")
    return list(hist[:64])


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_variant_loads_and_ranks_close_to_fp32(name, variants, histories):
    ref = _scores(load_model(variants["fp32"])[0], histories)
    rec = liverec.load(variants[name])
    got = _scores(rec.model, histories)
    min_overlap, min_corr = FLOORS[name]
    top_ref, top_got = ref.topk(10).indices, got.topk(10).indices
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10
                       for a, b in zip(top_ref, top_got)])
    corr = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(ref.numpy(), got.numpy())])
    assert overlap >= min_overlap, f"{name}: top-10 overlap {overlap:.3f}"
    assert corr >= min_corr, f"{name}: score correlation {corr:.4f}"
    recs = rec.recommend(["1", "2", "3"], k=5)  # same answer format as fp32
    assert len(recs) == 5 and all(isinstance(i, str) and isinstance(s, float) for i, s in recs)


def test_compression_recorded_in_config(variants):
    for name, path in variants.items():
        meta = json.loads((path / "config.json").read_text())
        assert ("compression" in meta) == (name != "fp32")


def test_smaller_where_claimed(variants):
    fp32 = weight_bytes(variants["fp32"])
    assert weight_bytes(variants["int8"]) < 0.5 * fp32  # tiny model: headers weigh in
    assert weight_bytes(variants["bf16"]) < 0.6 * fp32
    assert weight_elements(variants["structured50"]) < 0.8 * weight_elements(variants["fp32"])
    assert weight_elements(variants["distilled"]) <= 0.25 * weight_elements(variants["fp32"])


def test_distilled_student_params_at_most_quarter(variants):
    teacher = load_model(variants["fp32"])[0]
    student = load_model(variants["distilled"])[0]
    n_t = sum(p.numel() for p in teacher.parameters())
    n_s = sum(p.numel() for p in student.parameters())
    assert n_s <= 0.25 * n_t
    meta = json.loads((variants["distilled"] / "config.json").read_text())
    assert meta["compression"]["student_parameters"] == n_s


def test_structured_pruning_shrinks_tensors(variants):
    fp32 = load_model(variants["fp32"])[0]
    pruned = load_model(variants["structured50"])[0]
    for b_ref, b in zip(fp32.blocks, pruned.blocks):
        assert b.attn.n_heads == b_ref.attn.n_heads // 2
        assert b.attn.qkv.weight.shape[0] == b_ref.attn.qkv.weight.shape[0] // 2
        assert b.attn.proj.weight.shape[1] == b_ref.attn.proj.weight.shape[1] // 2
        assert b.ffn[0].weight.shape[0] == b_ref.ffn[0].weight.shape[0] // 2
        assert b.ffn[2].weight.shape[1] == b_ref.ffn[2].weight.shape[1] // 2


def test_magnitude_pruning_is_sparse(variants):
    from liverec.compress.prune import sparsity_of

    assert sparsity_of(load_model(variants["magnitude50"])[0]) >= 0.49


def test_unknown_method_is_a_clear_error(variants, tmp_path):
    import shutil

    from liverec.errors import ArtifactError

    bad = tmp_path / "bad"
    shutil.copytree(variants["int8"], bad)
    meta = json.loads((bad / "config.json").read_text())
    meta["compression"]["method"] = "zip"
    (bad / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="unknown compression method"):
        liverec.load(bad)


@pytest.mark.parametrize("name", ["int8", "bf16", "structured50", "magnitude50", "distilled"])
def test_last_position_fast_path_equals_reference(name, variants, histories):
    model = load_model(variants[name])[0]
    seqs = torch.from_numpy(pad_left(histories, model.cfg.max_len))
    with torch.no_grad():
        fast = model.encode_users(seqs).float()
        ref = model.encode_users_reference(seqs).float()
    assert torch.allclose(fast, ref, atol=1e-4 if name != "bf16" else 5e-2), \
        (fast - ref).abs().max()
