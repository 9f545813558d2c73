"""Broken compressed variants are marked, never measured as a share of fp32, never loaded.

Case ``fp16-variant-nan-reported-better``: a model trained with lr=10 has scores of about
+-1000 in fp32; its ``compress --half fp16`` variant scores NaN everywhere and was reported
at 216.5% of the fp32 NDCG@20, with ``recommend()`` returning [].
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.train.test_nonfinite import uniform_pop_csv

import liverec
from liverec.cli import main
from liverec.compress.pipeline import compress_run
from liverec.compress.report import compare, render_markdown
from liverec.compress.variants import CompressConfig, build_variants
from liverec.errors import ArtifactError, ConfigError
from liverec.model.artifact import load_model, read_run_config, save_artifact

FAST = dict(bench_histories=5, repeats=1, throughput_batch=8, throughput_repeats=1)


def _row(markdown: str, name: str) -> str:
    return next(ln for ln in markdown.splitlines() if ln.startswith(f"| {name} |"))


def test_case_fp16_variant_with_nan_scores_is_marked_broken(tmp_path):
    data = uniform_pop_csv(tmp_path / "u.csv")
    run, cmp = tmp_path / "run", tmp_path / "cmp"
    assert main(["train", "--data", str(data), "--out", str(run), "--set", "train.epochs=6",
                 "--set", "train.progress=false", "--set", "train.lr=10", "--set",
                 "train.batch_size=4", "--set", "data.cache=false", "--no-baselines"]) == 0
    m = liverec.load(run)
    fp32 = m.score_indices([m.encode(["i1", "i2", "i3"])])[0, 1:]
    assert torch.isfinite(fp32).all() and fp32.abs().max() > 100  # large, as in the case
    # = `liverec compress RUN --out CMP --half fp16`, with fewer latency repeats
    result = compress_run(run, cmp, CompressConfig(int8=False, half="fp16", **FAST))
    row = _row(render_markdown(result["report"]), "fp16")
    assert "broken: non-finite scores" in row and "%" not in row  # never a share of fp32
    report = json.loads((cmp / "compression.json").read_text())["variants"]["fp16"]
    assert report["broken"].startswith("broken: non-finite scores")
    assert "ndcg@20" not in report and "ndcg@20_rel" not in report
    assert json.loads((cmp / "fp16" / "config.json").read_text())["compression"]["broken"]
    with pytest.raises(ArtifactError, match="broken: non-finite scores"):
        liverec.load(cmp / "fp16")


@pytest.fixture(scope="module")
def overflowing_run(trained_run, tmp_path_factory):
    """The tiny trained model with its item table scaled by 1e5: fine in fp32 (LayerNorm
    rescales the inputs), but past fp16's range (65504) once converted."""
    model, _, items, _ = load_model(trained_run[0])
    with torch.no_grad():
        model.items.emb.weight.mul_(1e5)
    out = tmp_path_factory.mktemp("overflow") / "run"
    save_artifact(out, read_run_config(trained_run[0]), model, items)
    return out


def test_broken_variant_is_reported_as_broken_and_refused(overflowing_run, known_answer_data,
                                                          tmp_path):
    made = build_variants(overflowing_run, tmp_path, CompressConfig(int8=True, half="fp16"),
                          known_answer_data)
    comp = json.loads((made["fp16"] / "config.json").read_text())["compression"]
    assert comp["broken"].startswith("non-finite scores") and not comp["score_check"]["ok"]
    assert comp["score_check"]["histories"] > 0  # real histories of the run's data
    with pytest.raises(ArtifactError, match="broken"):
        liverec.load(made["fp16"])
    int8 = json.loads((made["int8"] / "config.json").read_text())["compression"]
    assert "broken" not in int8 and int8["score_check"]["ok"]
    result = compare({"fp32": overflowing_run, **made}, known_answer_data, **FAST)
    rows = result["variants"]
    assert list(rows) == ["fp32", "int8", "fp16"]
    assert "broken" in rows["fp16"] and "ndcg@20_rel" not in rows["fp16"]
    assert 0 <= rows["int8"]["ndcg@20_rel"] and "broken" not in rows["int8"]
    md = render_markdown(result)
    assert "broken: non-finite scores" in _row(md, "fp16") and "%" not in _row(md, "fp16")
    assert len(_row(md, "fp16").split("|")) == len(_row(md, "int8").split("|"))


def test_variant_whose_weights_went_nan_after_building_is_refused_at_load(variants, tmp_path):
    import shutil

    bad = tmp_path / "int8"
    shutil.copytree(variants["int8"], bad)
    state = load_file(str(bad / "model.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point() and "scale" in k)
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(ArtifactError, match="broken: non-finite scores"):
        liverec.load(bad)


def test_compressing_a_compressed_run_is_one_line(variants, tmp_path, capsys):
    rc = main(["compress", str(variants["int8"]), "--int8", "--out", str(tmp_path / "again")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("liverec: error: ")
    assert "already a compressed variant (int8" in err and "compress the fp32 run" in err


def test_compress_with_no_variant_is_one_line(trained_run, tmp_path, capsys):
    rc = main(["compress", str(trained_run[0]), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() == ("liverec: error: nothing to build: choose at least one variant "
                           "(--int8, --half bf16|fp16, --prune RATIO, --distill, --onnx)")
    assert not (tmp_path / "x").exists()  # checked before any work
    with pytest.raises(ConfigError, match="nothing to build"):
        build_variants(trained_run[0], tmp_path / "y", CompressConfig(int8=False))


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_finetune_never_keeps_a_nonfinite_state(policy, trained_run, known_answer_data):
    """The short fine-tune (pruning, distillation, retrain): a NaN loss at step 3 ends it
    ("stop") or is skipped and counted ("skip"); the weights it returns stay finite."""
    from liverec.config import TrainConfig
    from liverec.model.health import nonfinite_parameters
    from liverec.train.loop import default_loss
    from liverec.train.loop import fit as finetune

    model = load_model(trained_run[0])[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps: list[int] = []

    def nan_at_step_3(m, batch):
        steps.append(1)
        loss = default_loss(m, batch)
        return loss * float("nan") if len(steps) == 3 else loss

    tc = TrainConfig(lr=1e-3, batch_size=64, warmup_steps=0, nonfinite=policy)
    log_ = finetune(model, known_answer_data, tc, 2, loss_fn=nan_at_step_3)
    assert not nonfinite_parameters(model)
    if policy == "stop":
        assert log_["stopped"].startswith("non-finite loss or gradient at epoch 1 step 3")
        assert log_["best_epoch"] == 0 and log_["epochs"] == []
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    else:
        assert log_["stopped"] == "" and log_["skipped_steps"] == 1
        assert len(log_["epochs"]) == 2
