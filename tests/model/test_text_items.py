"""Contract tests shared by every item representation, plus LoRA and fine-tuning modes."""

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from liverec.model import build_model
from liverec.model.artifact import save_weights
from liverec.model.finetune import load_pretrained, set_trainable
from liverec.model.items import ITEM_EMBEDDERS
from liverec.model.lora import LoRALinear
from liverec.text import HashEncoder

VARIANTS = {
    "id": {"item_repr": "id"},
    "mixed": {"item_repr": "mixed", "head_items": 6, "tail_dim": 3},
    "pq": {"item_repr": "pq", "pq_subspaces": 4, "pq_bits": 3},
    "text-linear": {"item_repr": "text"},
    "text-moe": {"item_repr": "text", "adaptor": "moe", "n_experts": 3},
    "text-raw": {"item_repr": "text", "whiten": False},
    "fusion-sum": {"item_repr": "fusion"},
    "fusion-gate": {"item_repr": "fusion", "fusion": "gate", "adaptor": "moe", "n_experts": 2},
}


def make(tiny_model_config, variant, **extra):
    cfg = dataclasses.replace(tiny_model_config, text_dim=16, **VARIANTS[variant], **extra)
    torch.manual_seed(0)
    model = build_model(cfg)
    if cfg.item_repr not in ("id", "mixed", "pq"):
        texts = [f"product {i} family{i // 5}" for i in range(cfg.n_items)]
        model.items.set_text(torch.from_numpy(HashEncoder(16).encode(texts)))
    return model.eval()


def test_registry_covers_variants():
    assert {v["item_repr"] for v in VARIANTS.values()} == set(ITEM_EMBEDDERS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_embedder_contract(tiny_model_config, variant, tmp_path):
    model = make(tiny_model_config, variant)
    n, d = tiny_model_config.n_items + 1, tiny_model_config.d_model
    table = model.items.table()
    assert table.shape == (n, d)
    assert torch.count_nonzero(table[0]) == 0  # padding row
    idx = torch.tensor([[0, 0, 3, 7], [1, 2, 3, 50]])
    emb = model.items(idx)
    assert emb.shape == (2, 4, d) and torch.count_nonzero(emb[0, :2]) == 0
    assert torch.allclose(emb, table[idx], atol=1e-6)
    save_weights(model, tmp_path / "m.safetensors")
    again = build_model(model.cfg)
    again.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    seqs = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    assert torch.allclose(again.eval().score(seqs), model.score(seqs), atol=1e-6)


@pytest.mark.parametrize("variant", ["text-linear", "fusion-gate"])
def test_text_gradients_reach_adaptor_not_buffer(tiny_model_config, variant):
    model = make(tiny_model_config, variant).train()
    loss = model({"input": torch.tensor([[0, 1, 2]]), "target": torch.tensor([[0, 2, 3]])})
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "adaptor" in n)
    assert not any("text.vectors" in n for n, _ in model.named_parameters())


def test_whitening_decorrelates(tiny_model_config):
    model = make(tiny_model_config, "text-linear")
    v = model.items.text.vectors[1:]
    cov = torch.cov((v - v.mean(0)).T)
    off = cov - torch.diag(torch.diag(cov))
    assert off.abs().max() < 0.2 * torch.diag(cov).max()


def test_lora_zero_init_equals_base_and_fraction(tiny_model_config):
    big = dataclasses.replace(tiny_model_config, d_model=32, d_ff=64, n_items=2000)
    base = make(big, "text-linear")
    lora = make(big, "text-linear", finetune="lora", lora_rank=2)
    lora.load_state_dict(base.state_dict(), strict=False)
    assert sum(isinstance(m, LoRALinear) for m in lora.modules()) == 2 * 4 + 1
    seqs = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    assert torch.allclose(lora.score(seqs), base.score(seqs), atol=1e-6)
    stats = set_trainable(lora, "lora")
    assert 0 < stats["trainable_fraction"] <= 0.10
    assert all(("lora_" in n or "ln" in n) for n, p in lora.named_parameters() if p.requires_grad)


def test_lora_scopes_choose_where_the_updates_go(tiny_model_config):
    items_only = make(tiny_model_config, "text-moe", finetune="lora", lora_rank=2,
                      lora_scopes=("items",))
    wrapped = [n for n, m in items_only.named_modules() if isinstance(m, LoRALinear)]
    assert wrapped and all(n.startswith("items.") for n in wrapped)
    with pytest.raises(ValueError, match="lora_scopes"):
        make(tiny_model_config, "text-moe", finetune="lora", lora_scopes=("heads",))


def test_lora_matches_merged_reference():
    layer = LoRALinear(torch.nn.Linear(6, 5), rank=2, alpha=4.0)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(3, 6)
    assert torch.allclose(layer(x), layer.reference(x), atol=1e-5)


@pytest.mark.parametrize("mode", ["full", "adaptor"])
def test_finetune_modes(tiny_model_config, mode):
    model = make(tiny_model_config, "text-moe")
    stats = set_trainable(model, mode)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if mode == "adaptor":
        assert names and all(n.startswith("items.adaptor") for n in names)
        assert stats["n_trainable"] < stats["n_parameters"]
    else:
        assert stats["n_trainable"] == stats["n_parameters"]


def test_load_pretrained_across_catalogues(tiny_model_config):
    src = make(tiny_model_config, "fusion-sum")
    other = dataclasses.replace(tiny_model_config, n_items=30)
    dst = make(other, "fusion-sum")
    report = load_pretrained(dst, src.state_dict())
    assert report["skipped"] == ["items.id.emb.weight"]
    assert torch.equal(dst.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert torch.equal(dst.items.txt.adaptor.proj.weight, src.items.txt.adaptor.proj.weight)
    assert dst.items.txt.text.vectors.shape[0] == 31  # text buffer of the new catalogue kept
