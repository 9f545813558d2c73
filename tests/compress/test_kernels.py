"""Fast paths against their reference paths: int8 kernels, int8 size on a realistic shape,
ONNX Runtime against PyTorch, the export mask against the model's mask."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from liverec.compress.export import OnnxSASRec, TransformerBody, export_mask, export_onnx
from liverec.compress.modules import Int8Linear, Int8TableEmbedder, TableEmbedder, quantize_rows
from liverec.compress.quantize import quantize_int8
from liverec.config import ModelConfig
from liverec.model.artifact import save_weights
from liverec.model.sasrec import SASRec, attention_mask

ONNX_ATOL = 1e-4  # fp32 ONNX Runtime vs PyTorch, user vectors and scores


def test_quantize_rows_roundtrip():
    x = torch.randn(7, 33)
    q, s = quantize_rows(x)
    assert q.dtype == torch.int8 and s.shape == (7,)
    assert torch.allclose(q.float() * s[:, None], x, atol=float(s.max()) / 2 + 1e-6)


def test_int8_linear_matches_reference_and_fp32():
    torch.manual_seed(0)
    lin = nn.Linear(32, 48)
    q = Int8Linear.from_linear(lin)
    x = torch.randn(3, 5, 32)
    with torch.no_grad():
        fast, ref, fp = q(x), q.forward_reference(x), lin(x)
    assert fast.shape == (3, 5, 48)
    assert torch.allclose(fast, ref, atol=0.05)
    assert torch.allclose(fast, fp, atol=0.05)


def test_int8_table_scores_match_dequantized_reference():
    torch.manual_seed(0)
    table = torch.randn(101, 16)
    emb = Int8TableEmbedder.from_table(table)
    u = torch.randn(4, 16)
    fast, ref = emb.score_users(u), u @ emb.table().T
    assert torch.allclose(fast, ref, atol=0.05 * ref.abs().max())
    assert torch.allclose(emb(torch.tensor([[3, 0]])), emb.table()[[3, 0]][None])


def test_int8_weights_at_least_3_5x_smaller_on_a_realistic_shape(tmp_path):
    cfg = ModelConfig(n_items=3000, d_model=64, n_heads=2, n_layers=2, d_ff=256, max_len=50)
    model = SASRec(cfg).eval()
    save_weights(model, tmp_path / "fp32.safetensors")
    save_weights(quantize_int8(model), tmp_path / "int8.safetensors")
    ratio = (tmp_path / "fp32.safetensors").stat().st_size / (
        tmp_path / "int8.safetensors").stat().st_size
    assert ratio >= 3.5


def test_export_mask_equals_model_mask():
    seqs = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4], [0, 0, 0, 5]])
    assert torch.equal(export_mask(seqs), attention_mask(seqs))


@pytest.mark.parametrize(("positions", "mixer", "norm"), [
    ("end", "attention", "pre"), ("start", "attention", "pre"), ("none", "attention", "pre"),
    ("end", "fourier", "pre"), ("end", "fourier", "post")])
def test_onnx_matches_pytorch_with_dynamic_axes(tmp_path, tiny_model_config, positions, mixer,
                                                norm):
    torch.manual_seed(0)
    model = SASRec(dataclasses.replace(tiny_model_config, positions=positions,
                                       mixer=mixer, norm=norm)).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    wrapped = OnnxSASRec(model.cfg, TableEmbedder.from_table(model.item_table().detach()), path)
    for B, T in ((1, 3), (5, 16), (2, 20)):  # T > max_len is trimmed like the model does
        seqs = torch.randint(1, tiny_model_config.n_items + 1, (B, T))
        seqs[0, : T // 2] = 0  # left padding
        with torch.no_grad():
            ref_u, ref_s = model.encode_users(seqs), model.score(seqs)
            body = TransformerBody(model)(model.items(seqs[:, -16:]), seqs[:, -16:])
        assert torch.allclose(body, ref_u, atol=1e-6)
        assert torch.allclose(wrapped.encode_users(seqs), ref_u, atol=ONNX_ATOL)
        assert torch.allclose(wrapped.score(seqs), ref_s, atol=ONNX_ATOL)
