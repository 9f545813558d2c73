"""``liverec explain``: readable text, JSON, and one-line errors (exit 2)."""

from __future__ import annotations

import json

from liverec.cli import main


def test_explain_prints_reason_and_history(explain_run, capsys):
    assert main(["explain", str(explain_run), "--history", "3", "5", "6", "--item", "7"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("7 (product 7 family1): score ")
    assert "Because you viewed product 6 family1" in out and "shares family f1" in out


def test_explain_json_with_all_views(explain_run, capsys):
    assert main(["explain", str(explain_run), "--history", "3", "4", "--item", "5", "--json",
                 "--ig", "--attention"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["item_id"] == "5" and e["drivers"][0]["item_id"] == "4"
    assert e["methods"] == ["deletion", "integrated_gradients", "attention"]
    assert [h["position"] for h in e["history"]] == [0, 1]


def test_explain_unknown_item_is_one_line(explain_run, capsys):
    assert main(["explain", str(explain_run), "--history", "3", "--item", "x9"]) == 2
    err = capsys.readouterr().err
    assert err == "liverec: error: unknown item id(s): 'x9'\n"
