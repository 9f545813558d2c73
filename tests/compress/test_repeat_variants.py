"""Variants of a repeat-aware run keep its repeat-explore mixture (``repeat.json``).

Every method keeps the source's item indexing and a model whose scores approximate the
source's, so the mixture's 9 weights (the model's log-probabilities are one of its features)
stay valid and are carried as they are; a masked run has nothing to carry; a bad file in the
source is refused before any variant is written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tests.compress.conftest import STUDENT

import liverec
from liverec.compress.variants import CompressConfig, build_variants
from liverec.errors import ArtifactError
from liverec.model.repeat import FILE

CC = CompressConfig(int8=True, half="bf16", prune=0.5, prune_kinds=("structured", "magnitude"),
                    distill=STUDENT, onnx=True, onnx_of=("distilled",), finetune_epochs=1,
                    distill_epochs=2)
# min mean top-10 overlap of the variant's repeat-aware lists with the source's
FLOORS = {"int8": 0.9, "bf16": 0.9, "onnx-fp32": 0.99, "onnx-int8": 0.9, "structured50": 0.6,
          "magnitude50": 0.6, "distilled": 0.5, "distilled-onnx": 0.5}


@pytest.fixture(scope="module")
def repeat_variants(repeat_run, tmp_path_factory) -> dict:
    run_dir, prepared = repeat_run
    return build_variants(run_dir, tmp_path_factory.mktemp("repeat-variants"), CC, prepared)


def _lists(rec, histories) -> np.ndarray:
    return rec.topk_indices(histories, 10)[0]  # (B, 10), exclude_seen as the run's protocol


def test_every_variant_carries_the_repeat_mixture(repeat_run, repeat_variants):
    run_dir, prepared = repeat_run
    assert set(repeat_variants) == set(FLOORS)
    source = liverec.load(run_dir)
    _, histories, _ = prepared.eval_cases("test")
    histories = list(histories[:64])
    want = _lists(source, histories)
    for name, path in repeat_variants.items():
        assert (path / FILE).read_bytes() == (run_dir / FILE).read_bytes(), name
        assert json.loads((path / "config.json").read_text())["compression"]["carried"] == [FILE]
        rec = liverec.load(path)
        assert rec.repeat is not None, name
        assert rec.repeat.item_weights_.tolist() == source.repeat.item_weights_.tolist()
        got = _lists(rec, histories)
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got)])
        assert overlap >= FLOORS[name], f"{name}: top-10 overlap {overlap:.3f}"
        seen = np.mean([len(set(g) & set(h.tolist())) > 0 for g, h in zip(got, histories)])
        assert seen > 0.9, f"{name}: history items in {seen:.0%} of the lists only"


def test_a_masked_run_carries_nothing_and_a_stale_file_goes(trained_run, known_answer_data,
                                                            tmp_path):
    run_dir, _ = trained_run
    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / FILE).write_text("{}")  # left by an earlier build into the folder
    made = build_variants(run_dir, tmp_path, CompressConfig(int8=True), known_answer_data)
    assert not (made["int8"] / FILE).exists()
    assert "carried" not in json.loads((made["int8"] / "config.json").read_text())["compression"]
    assert liverec.load(made["int8"]).repeat is None


@pytest.mark.parametrize("text, message", [("{not json", "repeat.json"),
                                            ("{}", "not a repeat-explore record")])
def test_a_bad_repeat_file_is_refused_before_any_variant(repeat_run, tmp_path, text, message):
    run_dir, prepared = repeat_run
    src = tmp_path / "src"
    shutil.copytree(run_dir, src)
    (src / FILE).write_text(text)
    with pytest.raises(ArtifactError, match=message):
        build_variants(src, tmp_path / "out", CompressConfig(int8=True), prepared)
    assert not (tmp_path / "out" / "int8").exists()
