"""Explanations of compressed variants: int8, structurally pruned and ONNX Runtime runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import titled_cyclic_dataset

import liverec
from liverec.config import DataConfig
from liverec.data.prepare import prepare
from liverec.explain import Explainer, ExplainError
from liverec.explain.attribution import deletion_batched, deletion_reference

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def variant_explainers(explain_run, tmp_path_factory) -> dict[str, Explainer]:
    from liverec.compress.variants import CompressConfig, build_variants

    cc = CompressConfig(int8=True, prune=0.5, prune_kinds=("structured",), onnx=True,
                        finetune_epochs=1, report=False)
    data = prepare(titled_cyclic_dataset(), DataConfig(source="titled"))
    made = build_variants(explain_run, tmp_path_factory.mktemp("variants"), cc, data)
    return {n: Explainer.from_recommender(liverec.load(p)) for n, p in made.items()}


def test_every_variant_explains_the_known_answer(variant_explainers):
    assert {"int8", "structured50", "onnx-fp32"} <= set(variant_explainers)
    for name, ex in variant_explainers.items():
        e = ex.explain(["3", "4", "5", "6"], "7")
        assert e.drivers[0].item_id == "6", name
        hist, rows = np.array([3, 4, 5, 6, 7]), torch.from_numpy(ex.items.table[[8, 20]])
        fast = deletion_batched(ex.model, hist, rows, ex.max_len)[1]
        ref = deletion_reference(ex.model, hist, rows, ex.max_len)[1]
        # ONNX int8 quantizes activations with per-batch scales, so the batch a sequence is in
        # moves its score a little (measured: up to ~0.007 here); everything else is exact
        tol = 0.02 if name == "onnx-int8" else 1e-4
        np.testing.assert_allclose(fast, ref, atol=tol, err_msg=name)
        assert (fast.argmax(0) == ref.argmax(0)).all(), name


def test_views_that_a_variant_cannot_give_are_clear(variant_explainers):
    pruned = variant_explainers["structured50"].explain(["3", "4"], "5", attention=True)
    assert "attention" in pruned.methods  # pruned heads: the view adapts to the head count
    onnx = variant_explainers["onnx-fp32"]
    assert "attention" not in onnx.explain(["3", "4"], "5", attention=True).methods
    with pytest.raises(ExplainError, match="integrated gradients are not available"):
        onnx.explain(["3", "4"], "5", ig=True)
