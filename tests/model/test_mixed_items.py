"""Mixed-dimension (frequency-aware) id table: contract, known answers, errors."""

import dataclasses

import pytest
import torch

from liverec.model import build_model
from liverec.model.items import MixedDimItemEmbedder


@pytest.fixture
def mixed_config(tiny_model_config):
    return dataclasses.replace(tiny_model_config, item_repr="mixed", head_items=5, tail_dim=2)


def test_parameter_count_and_shapes(mixed_config):
    model = build_model(mixed_config).eval()
    n, k, r, d = mixed_config.n_items, 5, 2, mixed_config.d_model
    assert sum(p.numel() for p in model.items.parameters()) == k * d + (n - k) * r + r * d
    seqs = torch.tensor([[0, 1, 2, 9], [3, 4, 5, 6]])
    assert model.score(seqs).shape == (2, n + 1)
    assert torch.all(model.item_table()[0] == 0)  # padding row


def test_set_head_routes_items_to_full_rows(mixed_config):
    items = MixedDimItemEmbedder(mixed_config)
    head = torch.tensor([9, 3, 7, 1, 12])
    items.set_head(head)
    with torch.no_grad():
        items.head.copy_(torch.arange(5 * mixed_config.d_model, dtype=torch.float)
                         .view(5, -1))
    table = items.table()
    for row, item in enumerate(head.tolist()):
        assert torch.equal(table[item], items.head[row])
    tail_items = [i for i in range(1, mixed_config.n_items + 1) if i not in head.tolist()]
    expect = items.proj(items.tail)
    assert torch.allclose(table[tail_items], expect)  # tail rows in index order
    assert torch.all(table[0] == 0)


def test_eval_cache_follows_weight_changes(mixed_config):
    items = MixedDimItemEmbedder(mixed_config).eval()
    with torch.no_grad():
        first = items.table().clone()
        assert items.table() is items.table()  # cached while nothing changes
        items.head.add_(1.0)
        assert not torch.equal(items.table(), first)  # an in-place update invalidates it
    items.train()
    assert items.table().requires_grad


def test_trains_like_any_model(mixed_config):
    model = build_model(mixed_config)
    batch = {"input": torch.tensor([[0, 1, 2], [3, 4, 5]]),
             "target": torch.tensor([[0, 2, 3], [4, 5, 6]])}
    model(batch).backward()
    assert model.items.head.grad is not None and model.items.tail.grad is not None


@pytest.mark.parametrize("head,tail,match", [(0, 2, "head_items"), (10_000, 2, "head_items"),
                                             (5, 0, "tail_dim")])
def test_bad_config_is_a_clear_error(tiny_model_config, head, tail, match):
    cfg = dataclasses.replace(tiny_model_config, item_repr="mixed", head_items=head,
                              tail_dim=tail)
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


def test_set_head_rejects_bad_indices(mixed_config):
    items = MixedDimItemEmbedder(mixed_config)
    for bad in ([1, 1, 2, 3, 4], [0, 1, 2, 3, 4], [1, 2, 3]):
        with pytest.raises(ValueError, match="distinct item indices"):
            items.set_head(torch.tensor(bad))


def test_head_assignment_survives_save_and_load(mixed_config, tmp_path):
    from safetensors.torch import load_file

    from liverec.model.artifact import save_weights

    model = build_model(mixed_config).eval()
    model.items.set_head(torch.tensor([9, 3, 7, 1, 12]))
    save_weights(model, tmp_path / "m.safetensors")
    again = build_model(mixed_config).eval()
    again.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    assert torch.equal(again.item_table(), model.item_table())


def test_factored_scores_equal_table_reference(mixed_config):
    torch.manual_seed(0)
    items = MixedDimItemEmbedder(mixed_config)
    items.set_head(torch.tensor([9, 3, 7, 1, 12]))
    u = torch.randn(4, mixed_config.d_model)
    with torch.no_grad():
        assert torch.allclose(items.score_users(u), u @ items.table().T, atol=1e-5)
    model = build_model(mixed_config).eval()
    seqs = torch.tensor([[0, 1, 2, 9], [3, 4, 5, 6]])
    with torch.no_grad():
        ref = model.encode_users(seqs) @ model.item_table().T
        assert torch.allclose(model.score(seqs), ref, atol=1e-5)
