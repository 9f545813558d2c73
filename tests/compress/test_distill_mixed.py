"""Distillation into a mixed-dimension student: initialisation from the teacher (known
answers) and an end-to-end run on the tiny model."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from liverec.compress.distill import copy_matching, distill, init_mixed_from_teacher
from liverec.config import ModelConfig, TrainConfig
from liverec.model import build_model
from liverec.model.artifact import load_model
from liverec.model.items import MixedDimItemEmbedder


def test_init_keeps_frequent_rows_and_reconstructs_a_low_rank_tail():
    n, d, k, r = 12, 6, 4, 2
    cfg = ModelConfig(n_items=n, d_model=d, item_repr="mixed", head_items=k, tail_dim=r)
    items = MixedDimItemEmbedder(cfg)
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(n + 1, d, generator=g)
    teacher[0] = 0
    counts = np.array([0, 5, 1, 9, 2, 7, 3, 8, 1, 1, 4, 2, 6])  # items 3, 7, 5, 12 most frequent
    head = [3, 7, 5, 12]
    tail = [i for i in range(1, n + 1) if i not in head]
    # a rank-2 tail is reconstructed exactly by a rank-2 tail table
    teacher[tail] = torch.randn(len(tail), 2, generator=g) @ torch.randn(2, d, generator=g)
    init_mixed_from_teacher(items, teacher, counts)
    with torch.no_grad():
        table = items.eval().table()
    assert torch.allclose(table[head], teacher[head])
    assert torch.allclose(table[tail], teacher[tail], atol=1e-5)
    assert torch.all(table[0] == 0)


def test_item_counts_match_training_sequences(known_answer_data):
    counts = known_answer_data.train_item_counts()
    flat = np.concatenate(known_answer_data.train_sequences())
    assert counts.shape == (known_answer_data.vocab.n_items + 1,)
    assert counts.sum() == flat.size and counts[0] == 0
    assert counts[int(flat[0])] == int((flat == flat[0]).sum())


def test_copy_matching_takes_same_shaped_tensors_only(tiny_model_config):
    teacher = build_model(tiny_model_config)
    student = build_model(dataclasses.replace(tiny_model_config, n_layers=1, d_ff=4))
    copied = copy_matching(student, teacher)
    assert "blocks.0.attn.qkv.weight" in copied and "pos.weight" in copied
    assert not any(c.startswith("items.") or ".ffn.0." in c or c.endswith("ffn.2.weight")
                   or "blocks.1" in c for c in copied)  # ffn.2.bias is (D,) in both: copied
    assert torch.equal(student.blocks[0].attn.qkv.weight, teacher.blocks[0].attn.qkv.weight)


def test_mixed_student_end_to_end(trained_run, known_answer_data):
    teacher = load_model(trained_run[0])[0]
    cfg = dataclasses.replace(teacher.cfg, item_repr="mixed", head_items=10, tail_dim=2,
                              n_layers=1)
    tc = TrainConfig(lr=1e-2, batch_size=64, warmup_steps=2, progress=False)
    student, log_ = distill(teacher, known_answer_data, cfg, tc, epochs=1, copy_weights=True)
    assert log_["svd_init"] and "blocks.0.attn.qkv.weight" in log_["copied_from_teacher"]
    counts = known_answer_data.train_item_counts()
    top = set(np.argsort(-counts[1:], kind="stable")[:10] + 1)
    head_rows = {int(i) for i in torch.nonzero(student.items.slot < 10).squeeze(1)}
    assert head_rows == top  # the most frequent items got the full-dimension rows
    seqs = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(student.encode_users(seqs), student.encode_users_reference(seqs),
                              atol=1e-5)


def test_mixed_student_variant_and_its_onnx_export(trained_run, known_answer_data, tmp_path):
    import json

    import liverec
    from liverec.compress.variants import CompressConfig, build_variants

    cc = CompressConfig(int8=False, distill=("item_repr=mixed", "head_items=10", "tail_dim=2",
                                             "n_layers=1"),
                        distill_copy=True, distill_epochs=1, onnx_of=("distilled",))
    made = build_variants(trained_run[0], tmp_path, cc, known_answer_data)
    student = liverec.load(made["distilled"]).model
    onnx = liverec.load(made["distilled-onnx"])
    meta = json.loads((made["distilled-onnx"] / "config.json").read_text())["compression"]
    assert meta["table"] == "mixed"  # the ONNX variant keeps the small factored table
    assert isinstance(onnx.model.items, MixedDimItemEmbedder)
    seqs = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(onnx.model.score(seqs), student.score(seqs), atol=1e-4)
    assert len(onnx.recommend(["1", "2"], k=3)) == 3
