"""The report (JSON + markdown + plot) and the ``liverec compress`` command."""

from __future__ import annotations

import json

from liverec.cli import main
from liverec.compress.pipeline import DEFAULT_STUDENT, student_overrides
from liverec.compress.report import compare, write_report


def test_report_compares_variants_in_one_run(variants, known_answer_data, tmp_path):
    chosen = {n: variants[n] for n in ("fp32", "int8", "structured50", "onnx-fp32")}
    result = compare(chosen, known_answer_data, bench_histories=5, repeats=2,
                     throughput_batch=16, throughput_repeats=1)
    rows = result["variants"]
    assert list(rows) == list(chosen) and result["reference"] == "fp32"
    for r in rows.values():
        assert 0 <= r["ndcg@20"] <= 1 and r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
        assert r["weight_bytes"] > 0 and r["throughput_b16"] > 0 and r["warm_p50_ms"] > 0
    assert rows["fp32"]["ndcg@20_rel"] == 1.0 and rows["fp32"]["warm_speedup_x"] == 1.0
    paths = write_report(result, tmp_path, "cmp")
    assert {p.suffix for p in paths} == {".json", ".md", ".png"}
    assert json.loads(paths[0].read_text())["variants"]["int8"]["smaller_x"] > 1
    assert "| int8 |" in paths[1].read_text()


def test_student_overrides():
    assert student_overrides(None) == ()
    assert student_overrides([]) == DEFAULT_STUDENT
    assert student_overrides(["d_model=16,n_layers=1"]) == ("d_model=16", "n_layers=1")


def test_cli_compress_builds_loadable_variants(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    rc = main(["compress", str(run_dir), "--int8", "--onnx", "--no-report",
               "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    for name in ("int8", "onnx-fp32", "onnx-int8"):
        assert name in out and (tmp_path / name / "config.json").is_file()


def test_cli_compress_passes_the_student_and_copy_flag(tmp_path, monkeypatch):
    import liverec.compress.pipeline as pipeline

    seen = {}

    def fake(run_dir, out, cc):
        seen["cc"] = cc
        return {"variants": {}, "report": None, "files": []}

    monkeypatch.setattr(pipeline, "compress_run", fake)
    rc = main(["compress", str(tmp_path), "--distill", "item_repr=mixed", "head_items=10",
               "tail_dim=2", "n_layers=1", "--distill-copy", "--distill-epochs", "1",
               "--no-report", "--out", str(tmp_path / "out")])
    assert rc == 0
    cc = seen["cc"]
    assert cc.distill == ("item_repr=mixed", "head_items=10", "tail_dim=2", "n_layers=1")
    assert cc.distill_copy and cc.distill_epochs == 1
