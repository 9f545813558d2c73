"""Evaluate a run directory (model + baselines, same protocol) and write the report."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from liverec.config import DataConfig, RunConfig
from liverec.data.prepare import Prepared
from liverec.evaluate.baselines import make_baseline
from liverec.evaluate.beyond import BEYOND_DEFINITIONS, ListFacts, list_metrics
from liverec.evaluate.protocol import (
    PROTOCOLS,
    check_protocol,
    evaluate_model,
    evaluate_scores,
    model_score_fn,
    rank_targets,
    summarize,
)
from liverec.logs import progress_enabled

log = logging.getLogger(__name__)


def evaluate_baselines(prepared: Prepared, names: tuple[str, ...], stage: str = "test",
                       ks: tuple[int, ...] = (5, 10, 20), protocol: str = "masked",
                       facts: ListFacts | None = None,
                       beyond: dict | None = None) -> dict[str, dict]:
    """Fit each baseline on the stage's histories and score it under the same protocol.

    With ``facts``, each baseline's beyond-accuracy metrics of its top-max(K) lists go into
    ``beyond[name]``."""
    _, histories, targets = prepared.eval_cases(stage)
    masked = check_protocol(protocol)
    out = {}
    for name in tqdm(names, desc="baselines", leave=False, disable=not progress_enabled()):
        t0 = time.perf_counter()
        try:
            model = make_baseline(name).fit(histories, prepared.vocab.n_items)
        except ImportError as exc:
            log.warning("baseline %s skipped: %s (pip install 'liverec[baselines]')", name, exc)
            continue
        ranked = rank_targets(model.score, histories, targets, top_k=max(ks),
                              mask_history=masked)
        out[name] = summarize(ranked, prepared.vocab.n_items, ks, by_kind=not masked)
        out[name]["seconds"] = time.perf_counter() - t0
        if facts is not None and beyond is not None:
            beyond[name] = list_metrics(ranked.tops, histories, facts)
    return out


def _model_ranked(score_fn, prepared: Prepared, stage: str, ks: tuple[int, ...],
                  batch_size: int, protocol: str = "masked"):
    """(metrics, Ranked) of a scorer on a stage under ``protocol`` (``evaluate_scores``'s
    path, keeping the ranked lists for the beyond-accuracy metrics)."""
    _, histories, targets = prepared.eval_cases(stage)
    masked = check_protocol(protocol)
    ranked = rank_targets(score_fn, histories, targets, batch_size, max(ks), masked)
    return summarize(ranked, prepared.vocab.n_items, ks, by_kind=not masked), ranked


def evaluate_run(run_dir: Path, data: DataConfig | None = None,
                 baselines: tuple[str, ...] | None = None) -> dict:
    """Test and validation metrics of the run's model and of the baselines.

    Writes metrics.json and report.md into ``run_dir`` and returns the metrics dict.
    """
    from liverec.data.pipeline import load_and_prepare
    from liverec.model.artifact import load_model, read_run_config

    cfg: RunConfig = read_run_config(run_dir)
    model, vocab, vocab_items, meta = load_model(run_dir)
    data_cfg = data or cfg.data
    prepared = load_and_prepare(data_cfg, vocab=vocab)
    ks, bs = cfg.eval.ks, cfg.eval.batch_size
    protocol, choice = run_protocol(cfg, meta, prepared)
    scorer, mode = repeat_scorer(run_dir, model) if protocol == "repeat" else (None, "")
    t0 = time.perf_counter()
    model.eval()
    test_fn = scorer if scorer is not None else model_score_fn(model, model.cfg.max_len)
    test, ranked = _model_ranked(test_fn, prepared, "test", ks, bs, protocol)
    result = {
        "protocol": PROTOCOLS[protocol],
        "protocol_choice": choice,
        "data": {"source": data_cfg.source, "split": data_cfg.split, **prepared.stats},
        "model": {
            "name": cfg.model.name,
            "parameters": sum(p.numel() for p in model.parameters()),
            "test": test,
            "valid": evaluate_model(model, prepared, "valid", ks, bs) if scorer is None else
            evaluate_scores(scorer, prepared, "valid", ks, bs, protocol),
        },
    }
    if scorer is not None:  # the sequence model alone under the masked protocol, for reference
        result["model"]["mode"] = mode
        result["model"]["test_masked"] = evaluate_model(model, prepared, "test", ks, bs)
    result["model"]["eval_seconds"] = time.perf_counter() - t0
    facts = ListFacts.build(prepared, _item_vectors(model), vocab_items)
    _, test_histories, _ = prepared.eval_cases("test")
    rows = {model_label(cfg): list_metrics(ranked.tops, test_histories, facts)}
    names = cfg.eval.baselines if baselines is None else baselines
    if protocol == "repeat" and baselines is None and "repeat" not in names:
        names = (*names, "repeat")  # the repeat baseline is in every repeat-aware report
    result["baselines"] = evaluate_baselines(prepared, names, "test", ks, protocol, facts, rows)
    result["beyond"] = {"k": max(ks), "stage": "test", "rows": rows,
                        "definitions": {**BEYOND_DEFINITIONS, **facts.describe()}}
    train_log = Path(run_dir) / "train_log.json"
    if train_log.is_file():
        tl = json.loads(train_log.read_text())
        result["training"] = {k: tl[k] for k in
                              ("best_epoch", "wall_s", "time_to_best_s", "stopped", "n_parameters")}
        if (tl.get("refit") or {}).get("kept"):
            # the refit trained on the validation events: the validation scores above are not
            # held out; the held-out ones are the kept epoch's, from before the refit
            result["training"]["refit"] = tl["refit"]
            result["model"]["valid_held_out"] = tl["best_valid"]
    (Path(run_dir) / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (Path(run_dir) / "report.md").write_text(render_report(result, cfg))
    return result


def run_protocol(cfg: RunConfig, meta: dict, prepared: Prepared) -> tuple[str, dict]:
    """The run's evaluation protocol ("masked" or "repeat") and the record of its choice.

    ``eval.protocol`` as trained (resolved_config.json); "auto" (runs from before the choice
    was recorded) is resolved from ``prepared``'s training split now. The record is
    data/repeats.py's, with ``chosen_by`` as recorded at training time (config.json)."""
    from liverec.data.repeats import resolve_protocol

    resolved, choice = resolve_protocol(cfg, prepared)
    recorded = meta.get("protocol_choice") or {}
    if recorded.get("protocol") == resolved.eval.protocol and "chosen_by" in recorded:
        choice["chosen_by"] = recorded["chosen_by"]
    return resolved.eval.protocol, choice


def repeat_scorer(run_dir: Path, model) -> tuple:
    """(ScoreFn, mode) of a run under the repeat-aware protocol: its repeat-explore mixture
    (repeat.json), or the sequence model's own unmasked scores when it has none."""
    from liverec.model.repeat import load_repeat

    head = load_repeat(run_dir, model)
    if head is not None:
        return head, "repeat-explore mixture (model/repeat.py)"
    return model_score_fn(model, model.cfg.max_len), "sequence model, unmasked"


def kind_section(result: dict, rows: dict[str, dict], ks: tuple[int, ...]) -> str:
    """The repeat-aware report's lines: the protocol choice, repeat and explore targets apart."""
    k, m = max(ks), result["model"]["test"]
    lines = [f"Repeat-aware protocol (history NOT masked): {int(m.get('repeat_targets', 0))} of "
             f"{int(m.get('cases', 0))} test targets are repeats ({m.get('repeat_share', 0):.1%})."
             f" Model mode: {result['model'].get('mode', 'sequence model')}.\n",
             f"| model | repeat HR@{k} | repeat NDCG@{k} | explore HR@{k} | explore NDCG@{k} |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        cells = [r.get(f"{kind}/{x}@{k}", float("nan")) for kind in ("repeat", "explore")
                 for x in ("hr", "ndcg")]
        lines.append(f"| {name} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    masked = result["model"].get("test_masked")
    if masked:
        lines.append(f"\nThe sequence model alone under the masked protocol: HR@{k} "
                     f"{masked[f'hr@{k}']:.4f}, NDCG@{k} {masked[f'ndcg@{k}']:.4f}.")
    return "\n".join(lines) + "\n"


def choice_line(choice: dict) -> str:
    """How the protocol was chosen (data-adaptive default or the config)."""
    how = ("the data-adaptive default" if choice.get("chosen_by") == "auto" else
           "eval.protocol in the config")
    return (f"Protocol {choice['protocol']!r} chosen by {how}: the training split's repeat rate "
            f"is {choice['rate']:.1%} ({choice['repeats']} of {choice['next_events']} next "
            f"events), threshold {choice['threshold']:.0%}.\n")


def model_label(cfg: RunConfig) -> str:
    return f"{cfg.model.name} (liverec)"


def _item_vectors(model):
    """The model's output item table (N + 1, D) as numpy, or None when it has none."""
    import torch

    if not hasattr(model, "item_table"):
        return None
    with torch.no_grad():
        return model.item_table().float().cpu().numpy()


def beyond_table(beyond: dict) -> str:
    """A markdown table of the beyond-accuracy metrics, one row per model (``result["beyond"]``)."""
    k = beyond["k"]
    cols = [("diversity", "ILD", "{:.3f}"), ("coverage", "coverage", "{:.3f}"),
            ("novelty", "novelty (bits)", "{:.2f}"), ("arp", "ARP", "{:.1f}"),
            ("exposure_gini", "exposure Gini", "{:.3f}"),
            ("calibration_error", "calibration error", "{:.3f}")]
    lines = [f"| model (top-{k}) | " + " | ".join(c[1] for c in cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for name, m in beyond["rows"].items():
        cells = [fmt.format(m[key]) if m.get(key) is not None else "—" for key, _, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def metrics_table(rows: dict[str, dict], ks: tuple[int, ...]) -> str:
    """A markdown table, one row per model, HR/NDCG/MRR at each K."""
    cols = [f"{m}@{k}" for k in ks for m in ("hr", "ndcg")] + [f"mrr@{max(ks)}"]
    cov = f"coverage@{max(ks)}"
    head = "| model | " + " | ".join(c.upper() for c in cols) + f" | {cov} |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for name, m in rows.items():
        cells = " | ".join(f"{m.get(c, float('nan')):.4f}" for c in cols)
        lines.append(f"| {name} | {cells} | {m.get(cov, float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


def repeat_line(m: dict) -> str:
    """The report's sentence on masked repeat targets (and non-finite target scores)."""
    n, cases = int(m.get("repeat_targets", 0)), int(m.get("cases", 0))
    line = (f"Repeat targets masked (already in the history, a miss at every K): {n} of {cases} "
            f"({m.get('repeat_share', 0.0):.1%}).")
    bad = int(m.get("non_finite_targets", 0))
    if bad:
        line += f" Targets with a non-finite score (misses): {bad} of {cases}."
    return line + "\n"


def render_report(result: dict, cfg: RunConfig) -> str:
    rows = {model_label(cfg): result["model"]["test"]}
    rows.update(result["baselines"])
    d = result["data"]
    lines = [
        f"# Evaluation report: {cfg.name}\n",
        f"Data: `{d['source']}` — {d['users']} users, {d['items']} items, "
        f"{d['interactions']} interactions; {d['test_cases']} test cases.\n",
        "Protocol:\n",
        "\n".join(f"- {k.replace('_', ' ')}: {v}" for k, v in result["protocol"].items()) + "\n",
        "## Test (full ranking)\n",
        metrics_table(rows, cfg.eval.ks),
        kind_section(result, rows, cfg.eval.ks)
        if result.get("protocol_choice", {}).get("protocol") == "repeat"
        else repeat_line(result["model"]["test"]),
        choice_line(result["protocol_choice"]) if "protocol_choice" in result else "",
        *(_beyond_section(result["beyond"]) if "beyond" in result else []),
        "## Validation (model)\n",
        metrics_table({cfg.model.name: result["model"]["valid"]}, cfg.eval.ks),
    ]
    if "valid_held_out" in result["model"]:
        r = result["training"]["refit"]
        lines += [f"The model was refit on the validation events after model selection "
                  f"({r['epochs']} epochs at lr {r['lr']:g}, train.refit_epochs), so the "
                  "scores above are not held out. Held-out validation of the kept epoch, "
                  "before the refit:\n",
                  metrics_table({cfg.model.name: result["model"]["valid_held_out"]},
                                cfg.eval.ks)]
    if "training" in result:
        t = result["training"]
        lines.append(
            f"Training: best validation epoch {t['best_epoch']}, {t['wall_s']:.0f} s in all, "
            f"best reached after {t['time_to_best_s']:.0f} s; {t['n_parameters']:,} parameters; "
            f"{t['stopped']}.\n"
        )
    lines.append("\nConfig:\n\n```json\n" + json.dumps(
        dataclasses.asdict(cfg), indent=1, default=list) + "\n```\n")
    return "\n".join(lines)


def _beyond_section(beyond: dict) -> list[str]:
    d = beyond["definitions"]
    return [f"## Beyond accuracy (test top-{beyond['k']} lists)\n", beyond_table(beyond),
            "\n".join(f"- {k.replace('_', ' ')}: {v}" for k, v in d.items()) + "\n"]
