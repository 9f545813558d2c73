"""``liverec export-web``: the bundle's files and manifest, the compact tables against their
reference, the bundle's recommendations (Python reference of the browser) against the model's,
and the refusals (bad settings and runs, a folder that is not a bundle, a changed file)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil

import numpy as np
import pytest
import torch
from tests.edge.conftest import make_run

import liverec
from liverec.cli import main
from liverec.edge.bundle import WebExportConfig, export_web, read_manifest, verify_bundle
from liverec.edge.catalogue import catalogue_fingerprint, model_version
from liverec.edge.reference import BundleReference, overlap_at_k, top_k
from liverec.edge.table import CompactTable, compact_table
from liverec.errors import ArtifactError, ConfigError
from liverec.model.artifact import load_model

pytest.importorskip("onnxruntime")
FP32 = WebExportConfig(weights="fp32", runtime="none")


def _histories(n_items: int, n: int = 60, seed: int = 3) -> list[np.ndarray]:
    gen = np.random.default_rng(seed)
    return [gen.integers(1, n_items + 1, size=int(gen.integers(1, 20))) for _ in range(n)]


@pytest.mark.parametrize("kind", ["pq", "int8", "fp32"])
def test_table_scores_equal_the_decoded_table(pq_run, kind):
    model = load_model(pq_run)[0]
    with torch.no_grad():
        table = compact_table(model.items, model.item_table(), kind)
        full = model.item_table().float().numpy()
    u = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    np.testing.assert_allclose(table.scores(u), u @ table.rows().T, rtol=1e-5, atol=1e-5)
    assert table.rows().shape == full.shape and not table.rows()[0].any()
    tol = 0 if kind in ("pq", "fp32") else np.abs(full).max() / 127  # int8: half a step
    assert np.abs(table.rows() - full).max() <= tol + 1e-7


def test_pq_table_needs_a_pq_model(id_run):
    model = load_model(id_run)[0]
    with pytest.raises(ArtifactError, match="product-quantized"):
        compact_table(model.items, model.item_table(), "pq")


def test_fp32_bundle_recommends_what_the_model_does(pq_run, tmp_path):
    manifest = export_web(pq_run, tmp_path / "b", FP32)
    ref, rec = BundleReference(tmp_path / "b"), liverec.load(pq_run)
    hist_ids = [[ref.ids[i - 1] for i in h] for h in _histories(40)]
    got = [[i for i, _ in ref.recommend(h, 10)] for h in hist_ids]
    want = [[i for i, _ in rec.recommend(h, 10)] for h in hist_ids]
    assert got == want  # fp32 encoder, the model's own pq table: the same lists
    assert manifest["encoder"]["weights"] == "fp32" and manifest["table"]["kind"] == "pq"
    assert manifest["catalogue_fingerprint"] == catalogue_fingerprint(rec.items)


def test_manifest_lists_every_file_with_hashes_and_gzip_copies(pq_run, tmp_path):
    m = export_web(pq_run, tmp_path / "b", WebExportConfig(runtime="none"))
    assert read_manifest(tmp_path / "b") == m == verify_bundle(tmp_path / "b")
    assert set(m["files"]) == {"encoder.onnx", "items.codes.u8", "items.codebooks.f32",
                               "catalogue.json"}
    for name, f in m["files"].items():
        data = (tmp_path / "b" / name).read_bytes()
        assert len(data) == f["bytes"]
        packed = (tmp_path / "b" / f"{name}.gz").read_bytes()
        assert gzip.decompress(packed) == data and len(packed) == f["gzip_bytes"]
    assert m["total"]["bytes"] == sum(f["bytes"] for f in m["files"].values())
    assert m["source"]["model_version"] == model_version(pq_run)
    assert (tmp_path / "b" / "items.codes.u8").stat().st_size == 40 * 8  # one byte per code
    cat = json.loads((tmp_path / "b" / "catalogue.json").read_text())
    assert cat["ids"][0] == "sku/000 é" and cat["titles"][3] == "product 3 family0"
    assert len(cat["popular"]) == 40 and m["runtime"] is None


def test_int8_encoder_where_it_pays_and_close_to_fp32(pq_run, tmp_path):
    hist = _histories(40, 100)
    m = export_web(pq_run, tmp_path / "auto", dataclasses.replace(FP32, weights="auto"), hist)
    enc = m["encoder"]
    assert enc["histories"] == 100 and enc["int8_top10_overlap_with_fp32"] >= 0.9
    pays = enc["int8_gzip_saving"] >= 0.2 and enc["int8_top10_overlap_with_fp32"] >= 0.95
    assert enc["weights"] == ("int8" if pays else "fp32")
    never = export_web(pq_run, tmp_path / "strict",
                       dataclasses.replace(FP32, weights="auto", min_saving=0.99), hist)
    assert never["encoder"]["weights"] == "fp32"  # a saving of 99% is never met
    forced = export_web(pq_run, tmp_path / "int8", dataclasses.replace(FP32, weights="int8"),
                        hist)
    assert forced["encoder"]["weights"] == "int8"
    export_web(pq_run, tmp_path / "fp32", FP32)
    ref8, ref32 = BundleReference(tmp_path / "int8"), BundleReference(tmp_path / "fp32")
    ids = [[ref8.ids[i - 1] for i in h] for h in hist]
    a = [[i for i, _ in ref32.recommend(h)] for h in ids]
    b = [[i for i, _ in ref8.recommend(h)] for h in ids]
    # the decision's measurement is the reference path's, history for history
    assert overlap_at_k(a, b) == pytest.approx(enc["int8_top10_overlap_with_fp32"], abs=1e-4)


def test_id_model_gets_an_int8_table(id_run, tmp_path):
    m = export_web(id_run, tmp_path / "b", FP32)
    assert m["table"]["kind"] == "int8" and set(m["files"]) == {
        "encoder.onnx", "items.rows.i8", "items.scales.f32", "catalogue.json"}
    ref, rec = BundleReference(tmp_path / "b"), liverec.load(id_run)
    ids = [[ref.ids[i - 1] for i in h] for h in _histories(40)]
    got = [[i for i, _ in ref.recommend(h, 10)] for h in ids]
    want = [[i for i, _ in rec.recommend(h, 10)] for h in ids]
    assert overlap_at_k(want, got) >= 0.95  # int8 rows: a few swaps near ties at most


def test_empty_window_falls_back_to_popular_unseen(pq_run, tmp_path):
    export_web(pq_run, tmp_path / "b", FP32)
    ref = BundleReference(tmp_path / "b")
    top = [i for i, _ in ref.recommend(["not an item"], 5)]
    assert top == [ref.ids[i - 1] for i in ref.popular[:5]]


def test_top_k_masks_padding_seen_and_non_finite():
    s = np.array([9, 1, 5, 5, np.nan, 7, 5, np.inf, -np.inf, 2], dtype=np.float32)
    assert top_k(s, np.array([7]), 3).tolist() == [5, 2, 3]
    assert top_k(s, np.array([5, 7]), 20).tolist() == [2, 3, 6, 9, 1]


def test_runtime_is_copied_and_listed(pq_run, fake_runtime, tmp_path):
    m = export_web(pq_run, tmp_path / "b", dataclasses.replace(FP32, runtime=str(fake_runtime)))
    rt = m["runtime"]
    assert rt["entry"] == "liverec-edge.js" and "ort-wasm-simd-threaded.wasm" in rt["files"]
    assert (tmp_path / "b" / "runtime" / "ort-wasm-simd-threaded.wasm.gz").is_file()
    assert "runtime.json" not in m["files"]  # the model's files and the runtime apart


def test_runtime_gzip_copies_are_reused_only_when_they_match(pq_run, fake_runtime, tmp_path):
    dist = tmp_path / "dist"
    shutil.copytree(fake_runtime, dist)
    good = gzip.compress(b"export {};\n", compresslevel=1)  # not what level 9 would write
    (dist / "core.js.gz").write_bytes(good)
    (dist / "liverec-edge.js.gz").write_bytes(gzip.compress(b"stale"))
    export_web(pq_run, tmp_path / "b", dataclasses.replace(FP32, runtime=str(dist)))
    out = tmp_path / "b" / "runtime"
    assert (out / "core.js.gz").read_bytes() == good  # reused
    assert gzip.decompress((out / "liverec-edge.js.gz").read_bytes()) == b"export {};\n"


def test_a_new_export_replaces_the_old_bundle_whole(pq_run, id_run, tmp_path):
    export_web(pq_run, tmp_path / "b", FP32)
    export_web(id_run, tmp_path / "b", FP32)
    assert not (tmp_path / "b" / "items.codes.u8").exists()  # nothing stale left
    assert verify_bundle(tmp_path / "b")["table"]["kind"] == "int8"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary folder left


def test_refusals_lose_nothing(pq_run, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not a web bundle"):
        export_web(pq_run, other, FP32)
    assert (other / "notes.txt").read_text() == "keep me" and len(list(other.iterdir())) == 1
    with pytest.raises(ArtifactError, match="run directory itself"):
        export_web(pq_run, pq_run, FP32)
    for bad, msg in [({"weights": "int4"}, "weights"), ({"table": "bf16"}, "table"),
                     ({"runtime": str(tmp_path)}, "not a built liverec web client"),
                     ({"k": 0}, ">= 1"), ({"min_overlap": 2.0}, "min_overlap")]:
        with pytest.raises(ConfigError, match=msg):
            export_web(pq_run, tmp_path / "x", dataclasses.replace(FP32, **bad))
    assert not (tmp_path / "x").exists()
    with pytest.raises(ArtifactError, match="run directory not found"):
        export_web(tmp_path / "nope", tmp_path / "x", FP32)


def test_quantized_variants_are_refused(tmp_path):
    run = make_run(tmp_path / "int8", "id", extra={"compression": {"method": "int8",
                                                                   "source": "/runs/x"}})
    with pytest.raises(ArtifactError, match="int8 variant; export-web needs an fp32"):
        export_web(run, tmp_path / "b", FP32)


def test_a_changed_or_missing_file_is_named(pq_run, tmp_path):
    export_web(pq_run, tmp_path / "b", FP32)
    codes = tmp_path / "b" / "items.codes.u8"
    good = codes.read_bytes()
    codes.write_bytes(bytes([good[0] ^ 1]) + good[1:])
    with pytest.raises(ArtifactError, match="items.codes.u8 does not match the manifest"):
        BundleReference(tmp_path / "b")
    codes.write_bytes(good)
    (tmp_path / "b" / "catalogue.json").unlink()
    with pytest.raises(ArtifactError, match="catalogue.json is missing"):
        verify_bundle(tmp_path / "b")
    with pytest.raises(ArtifactError, match="not a web bundle"):
        read_manifest(tmp_path)


def test_table_files_of_the_wrong_size_are_refused(pq_run, tmp_path):
    export_web(pq_run, tmp_path / "b", FP32)
    spec = read_manifest(tmp_path / "b")["table"]
    with pytest.raises(ArtifactError, match="expected"):
        CompactTable.read(tmp_path / "b", {**spec, "n_items": 41})


def test_cli_export_web(pq_run, tmp_path, capsys):
    assert main(["export-web", str(pq_run), "--out", str(tmp_path / "b"), "--check-on",
                 "probe", "--runtime", "none"]) == 0
    out = capsys.readouterr().out
    assert "encoder weights:" in out and "catalogue.json" in out and "runtime: none" in out
    assert main(["export-web", str(pq_run), "--out", str(tmp_path / "c"), "--table",
                 "pq", "--weights", "fp32", "--runtime", str(tmp_path)]) == 2
    assert "not a built liverec web client" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    # the run's data ("titled") cannot be loaded here: one line saying what else to do
    assert main(["export-web", str(pq_run), "--out", str(tmp_path / "d")]) == 2
    assert "--check-on probe" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_fingerprint_and_version_agree_with_the_service(pq_run):
    pytest.importorskip("fastapi")
    from liverec.serve.model_handle import ModelHandle

    handle = ModelHandle(pq_run)
    manifest_items = load_model(pq_run)[2]
    assert catalogue_fingerprint(manifest_items) == handle.fingerprint()
    assert model_version(pq_run) == handle.version
