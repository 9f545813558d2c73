import dataclasses

import pytest
import torch

from liverec.errors import ConfigError
from liverec.model import build_model
from liverec.model.sasrec import attention_mask


@pytest.fixture(params=[("attention", "end"), ("filter", "end"), ("attention", "start"),
                        ("filter", "start"), ("filter", "none")], ids=lambda p: "-".join(p))
def model(request, tiny_model_config):
    torch.manual_seed(0)
    mixer, positions = request.param
    cfg = dataclasses.replace(tiny_model_config, mixer=mixer, filter_kernel=3,
                              positions=positions)
    model = build_model(cfg).eval()
    if mixer == "filter":  # away from the initial mean so the kernel order matters
        with torch.no_grad():
            for block in model.blocks:
                block.filter.weight.normal_()
                block.filter.sqrt_beta.normal_()
    return model


def test_shapes(model, tiny_model_config):
    seqs = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]])
    n = tiny_model_config.n_items + 1
    assert model.encode(seqs).shape == (2, 4, 8)
    assert model.encode_users(seqs).shape == (2, 8)
    assert model.score(seqs).shape == (2, n)
    some = model.score(seqs, torch.tensor([[5, 6, 7], [1, 2, 3]]))
    assert torch.allclose(some, model.score(seqs).gather(1, torch.tensor([[5, 6, 7], [1, 2, 3]])),
                          atol=1e-5)


def test_causal_future_does_not_leak(model):
    a = torch.tensor([[0, 1, 2, 3, 4]])
    b = torch.tensor([[0, 1, 2, 3, 9]])
    assert torch.allclose(model.encode(a)[:, :4], model.encode(b)[:, :4], atol=1e-6)


def test_padding_trim_equals_full_padding(model, tiny_model_config):
    short = torch.tensor([[0, 5, 6, 7]])
    full = torch.zeros(1, tiny_model_config.max_len, dtype=torch.long)
    full[0, -3:] = torch.tensor([5, 6, 7])
    assert torch.allclose(model.encode_users(short), model.encode_users(full), atol=1e-5)


def test_mask_never_empty():
    m = attention_mask(torch.tensor([[0, 0, 1]]))
    assert m.any(-1).all()


@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_losses_finite_and_backprop(tiny_model_config, loss):
    cfg = dataclasses.replace(tiny_model_config, loss=loss, n_negatives=10)
    model = build_model(cfg)
    batch = {"input": torch.tensor([[0, 1, 2], [3, 4, 5]]),
             "target": torch.tensor([[0, 2, 3], [4, 5, 6]])}
    value = model(batch)
    value.backward()
    assert torch.isfinite(value) and model.items.emb.weight.grad is not None


def test_unknown_model_name(tiny_model_config):
    with pytest.raises(ValueError, match="model.name: 'nope' is not supported"):
        build_model(dataclasses.replace(tiny_model_config, name="nope"))


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("positions", ["end", "start"])
@pytest.mark.parametrize("mixer", ["attention", "filter", "fourier"])
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_last_position_fast_path_equals_reference(tiny_model_config, n_layers, mixer, positions,
                                                  norm):
    torch.manual_seed(n_layers)
    model = build_model(dataclasses.replace(tiny_model_config, n_layers=n_layers, mixer=mixer,
                                            filter_kernel=4, positions=positions,
                                            norm=norm)).eval()
    seqs = torch.tensor([[0, 0, 0, 3, 4], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0], [0, 0, 0, 0, 7]])
    long = torch.randint(1, tiny_model_config.n_items + 1, (3, tiny_model_config.max_len + 4))
    with torch.no_grad():
        for s in (seqs, long):
            fast, ref = model.encode_users(s), model.encode_users_reference(s)
            assert fast.shape == ref.shape
            assert torch.allclose(fast, ref, atol=1e-5), (fast - ref).abs().max()


def test_fast_path_is_differentiable_and_training_uses_reference(tiny_model_config):
    model = build_model(tiny_model_config).eval()
    seqs = torch.tensor([[0, 1, 2, 3]])
    model.encode_users(seqs).sum().backward()  # gradient-based explanations run through it
    assert model.items.emb.weight.grad is not None
    model.train()
    torch.manual_seed(0)
    a = model.encode_users(seqs)
    torch.manual_seed(0)
    b = model.encode_users_reference(seqs)
    assert torch.equal(a, b)


def test_filter_mixer_ignores_padding_and_checks_its_settings(tiny_model_config):
    """The causal filter reads real positions only: more left padding changes nothing."""
    from liverec.errors import ConfigError

    torch.manual_seed(0)
    model = build_model(dataclasses.replace(tiny_model_config, mixer="filter",
                                            filter_kernel=6)).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.filter.weight.normal_()
    a = model.encode(torch.tensor([[0, 0, 0, 5, 6, 7]]))[:, -3:]
    b = model.encode(torch.tensor([[5, 6, 7]]))
    assert torch.allclose(a, b, atol=1e-5)
    for bad in ({"mixer": "wavelet"}, {"filter_alpha": 1.5}, {"filter_kernel": 0},
                {"filter_bins": 0}):
        with pytest.raises(ConfigError):
            dataclasses.replace(tiny_model_config, **bad)


@pytest.mark.parametrize("bins", [1, 3, 5])
def test_fourier_filter_matrix_equals_bsarec_fft(tiny_model_config, bins):
    """The fast path (one fixed (max_len, max_len) matrix, last T rows/columns for a trimmed
    batch) equals BSARec's rfft / irfft on the zero-padded window; it is a low-pass (a constant
    window passes unchanged, the alternating one is removed) and sees later positions."""
    from liverec.model.sasrec import FourierLowPass, fourier_low_pass_reference

    torch.manual_seed(bins)
    cfg = dataclasses.replace(tiny_model_config, mixer="fourier", filter_bins=bins)
    f = FourierLowPass(cfg)
    with torch.no_grad():
        f.sqrt_beta.normal_()
    L = cfg.max_len
    for T in (1, 3, L):
        x = torch.randn(4, T, cfg.d_model)
        keep = (torch.rand(4, T, 1) > 0.3).float()
        ref = fourier_low_pass_reference(x, keep, L, bins, f.sqrt_beta)
        assert torch.allclose(f(x, keep), ref, atol=1e-5)
    low = f.low.double()
    assert torch.allclose(low @ torch.ones(L, dtype=torch.float64),
                          torch.ones(L, dtype=torch.float64), atol=1e-5)
    alt = torch.tensor([(-1.0) ** t for t in range(L)], dtype=torch.float64)
    assert (low @ alt).abs().max() < 1e-5 or L % 2
    assert low[0, -1].abs() > 1e-6  # position 0 reads the newest one: non-causal


def test_post_norm_blocks_follow_bsarec(tiny_model_config):
    """model.norm="post": LayerNorm over item + position vectors (no sqrt(d) scaling), a
    LayerNorm after each residual sum, none at the end; padding rows stay zero and more left
    padding changes nothing; an unknown value is refused."""
    from liverec.errors import ConfigError
    from liverec.model.sasrec import PostNormBlock

    torch.manual_seed(0)
    model = build_model(dataclasses.replace(tiny_model_config, norm="post",
                                            mixer="fourier")).eval()
    assert all(isinstance(b, PostNormBlock) for b in model.blocks)
    assert isinstance(model.ln_f, torch.nn.Identity)
    with torch.no_grad():
        h = model.encode(torch.tensor([[0, 0, 5, 6, 7]]))
        assert torch.allclose(h[0, -1].mean(), torch.tensor(0.0), atol=1e-5)  # LN output
        a = model.encode_users(torch.tensor([[0, 0, 0, 5, 6, 7]]))
        b = model.encode_users(torch.tensor([[5, 6, 7]]))
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="norm"):
        dataclasses.replace(tiny_model_config, norm="sandwich")


def test_fourier_mixer_needs_prefix_windows(tiny_run_config):
    """model.mixer="fourier" mixes later positions into earlier ones, so a config that would
    train every position with it is refused before any work."""
    from liverec.config import RunConfig
    from liverec.errors import ConfigError

    model = dataclasses.replace(tiny_run_config.model, mixer="fourier")
    for windows in ("last", "all"):
        with pytest.raises(ConfigError, match="prefixes"):
            RunConfig(model=model, train=dataclasses.replace(tiny_run_config.train,
                                                             windows=windows))
    RunConfig(model=model, train=dataclasses.replace(tiny_run_config.train, windows="prefixes"))


def test_start_positions_make_every_training_position_a_served_query(tiny_model_config):
    """With positions="start", the hidden state at training position t is exactly the user
    vector served for the prefix ending there (the model trains on the queries it serves);
    with SASRec's "end" positions it is not (position t is told how many items follow)."""
    torch.manual_seed(0)
    seq = torch.tensor([[0, 0, 4, 9, 2, 7, 5]])
    for positions, same in (("start", True), ("end", False)):
        model = build_model(dataclasses.replace(tiny_model_config, mixer="filter",
                                                positions=positions)).eval()
        with torch.no_grad():
            h = model.encode(seq)  # (1, T, D)
            for t in range(3, seq.shape[1] - 1):  # the last position is the whole query
                served = model.encode_users(seq[:, : t + 1])  # the prefix as a query
                assert torch.allclose(h[:, t], served, atol=1e-5) is same, (positions, t)
    with pytest.raises(ConfigError, match="positions"):
        dataclasses.replace(tiny_model_config, positions="middle")


@pytest.mark.parametrize(("mixer", "norm"), [("attention", "pre"), ("filter", "pre"),
                                             ("fourier", "pre"), ("attention", "post"),
                                             ("filter", "post"), ("fourier", "post")])
def test_every_block_variant_saves_loads_and_compresses(tiny_model_config, mixer, norm, tmp_path):
    """Contract shared by every architecture variant: weights round-trip through safetensors
    exactly, and the int8 copy (compress.quantize_int8) keeps the user vectors close."""
    from safetensors.torch import load_file

    from liverec.compress.quantize import quantize_int8
    from liverec.model.artifact import save_weights

    torch.manual_seed(0)
    model = build_model(dataclasses.replace(tiny_model_config, mixer=mixer, norm=norm)).eval()
    seqs = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    save_weights(model, tmp_path / "m.safetensors")
    again = build_model(model.cfg).eval()
    again.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    with torch.no_grad():
        u = model.encode_users(seqs)
        assert torch.equal(again.encode_users(seqs), u)
        q = quantize_int8(model).encode_users(seqs)
    assert q.shape == u.shape
    assert (q - u).abs().max() < 0.05 * u.abs().max()
