"""A study's results: JSON summary, markdown table, plots and the best config file.

Files written into the study folder:
results.json      every trial (state, value, params, epochs, time, error) + best vs baseline
results.md        the same as a table, best first
history.png       validation NDCG@10 per trial (best so far, baseline) and per epoch
importance.png    parameter importance (Optuna's default evaluator) when it can be computed
best_config.json  the winning settings as a RunConfig file (``liverec train --config``)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

from liverec.config import RunConfig, to_dict
from liverec.tune.search import redact_url
from liverec.tune.space import SearchSpace

log = logging.getLogger(__name__)

SHORT = {"model.d_model": "d", "model.n_layers": "layers", "model.n_heads": "heads",
         "model.dropout": "dropout", "model.max_len": "max_len", "train.lr": "lr",
         "train.weight_decay": "wd", "train.batch_size": "batch", "train.optimizer": "opt",
         "train.schedule": "sched"}


def trial_rows(study) -> list[dict]:
    """One JSON-ready dict per trial, in trial order."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        error = t.user_attrs.get("error") or study.user_attrs.get(f"error:trial {t.number}")
        rows.append({
            "number": t.number, "state": t.state.name, "value": t.value,
            "baseline": bool(t.user_attrs.get("baseline")), "params": dict(t.params),
            "epochs": t.user_attrs.get("epochs"), "wall_s": t.user_attrs.get("wall_s"),
            "best_epoch": t.user_attrs.get("best_epoch"), "stopped": t.user_attrs.get("stopped"),
            "valid": t.user_attrs.get("valid"), "error": error,
            "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        })
    return rows


def best_trial_config(base: RunConfig, space: SearchSpace, row: dict) -> RunConfig:
    """The RunConfig of a trial row (the base itself for the baseline)."""
    cfg = base if row["baseline"] else space.apply(base, row["params"])
    return dataclasses.replace(cfg, name=f"{base.name}-tuned")


def write_results(study, out_dir: Path, base: RunConfig, space: SearchSpace, tc) -> dict:
    """Write results.json/.md, the plots and best_config.json; return the summary."""
    rows = trial_rows(study)
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None
                and math.isfinite(r["value"])]  # a NaN value is never the best
    best = max(complete, key=lambda r: r["value"], default=None)
    baseline = next((r for r in rows if r["baseline"] and r["state"] == "COMPLETE"), None)
    summary = {
        "study": study.study_name,
        "storage": redact_url(tc.storage) if tc.storage else "study.db",
        "objective": "best validation NDCG@10 (full ranking, seen items masked) in the budget",
        "sampler": tc.sampler, "pruning": tc.prune, "seed": tc.seed,
        "budget": {"trial_time_s": tc.trial_time_s or base.train.max_time_s,
                   "timeout_s": tc.timeout_s, "trials": tc.trials,
                   "rule": "train.max_time_s: a trial stops at the end of the first epoch past it"},
        "states": {s: sum(r["state"] == s for r in rows)
                   for s in sorted({r["state"] for r in rows})},
        "best": best, "baseline": baseline,
        "improvement": (best["value"] - baseline["value"]) if best and baseline else None,
        "space": {k: dataclasses.asdict(p) for k, p in space.params.items()},
        "base_config": to_dict(base), "trials": rows, "files": {},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    files = summary["files"]
    if best is not None:
        files["best_config"] = str(out_dir / "best_config.json")
        write_config(best_trial_config(base, space, best), out_dir / "best_config.json",
                     f"best of study {study.study_name!r}: trial {best['number']}, validation "
                     f"NDCG@10 {best['value']:.4f} within a {summary['budget']['trial_time_s']}s "
                     f"trial budget")
    summary["importance"] = param_importance(study)
    files.update(_plots(summary, out_dir))
    files["json"], files["md"] = str(out_dir / "results.json"), str(out_dir / "results.md")
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "results.md").write_text(render_markdown(summary))
    return summary


def write_config(cfg: RunConfig, path: Path, comment: str) -> None:
    """A RunConfig file that ``load_config`` / ``liverec train --config`` reads back."""
    path.write_text(json.dumps({"_comment": comment, **to_dict(cfg)}, indent=2) + "\n")


def param_importance(study) -> dict[str, float]:
    """Optuna's parameter importance (empty when too few trials completed)."""
    import optuna

    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        log.info("no parameter importance yet: %s", exc)
        return {}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 0.01 or abs(value) >= 1000 else f"{value:.4g}"
    return "" if value is None else str(value)


def render_markdown(summary: dict) -> str:
    """The trials as a markdown table, best first, then failed trials with their errors."""
    keys = list(summary["space"])
    head = (["trial", "state", "val NDCG@10", "epochs", "time (s)"]
            + [SHORT.get(k, k) for k in keys] + ["note"])
    lines = [f"# Study `{summary['study']}`", "",
             f"Objective: {summary['objective']}. Sampler {summary['sampler']}, pruning "
             f"{'on' if summary['pruning'] else 'off'}; per-trial budget "
             f"{summary['budget']['trial_time_s'] or 'none'} s ({summary['budget']['rule']}). "
             f"Trials: {summary['states']}.", ""]
    if summary["best"] and summary["baseline"]:
        lines += [f"Best: trial {summary['best']['number']}, validation NDCG@10 "
                  f"{summary['best']['value']:.4f}; baseline (trial "
                  f"{summary['baseline']['number']}, the base config) "
                  f"{summary['baseline']['value']:.4f}; difference "
                  f"{summary['improvement']:+.4f}.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(summary["trials"], key=lambda r: (r["value"] is None, -(r["value"] or 0)))
    for r in order:
        note = "baseline (base config)" if r["baseline"] else ""
        if r["state"] == "PRUNED":
            note = (note + "; " if note else "") + f"pruned after epoch {len(r['intermediate'])}"
        if r["error"]:
            note = (note + "; " if note else "") + r["error"].replace("|", "/")
        value = r["value"] if r["value"] is not None else (
            max(r["intermediate"].values()) if r["intermediate"] else None)
        cells = [r["number"], r["state"], f"{value:.4f}" if value is not None else "",
                 r["epochs"], r["wall_s"]] + [r["params"].get(k) for k in keys] + [note]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    if summary.get("importance"):
        lines += ["", "Parameter importance: " + ", ".join(
            f"{SHORT.get(k, k)} {v:.2f}" for k, v in summary["importance"].items())]
    return "\n".join(lines) + "\n"


def _plots(summary: dict, out_dir: Path) -> dict[str, str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        files = {"history": str(out_dir / "history.png")}
        plot_history(summary, out_dir / "history.png")
        if summary["importance"]:
            plot_importance(summary["importance"], out_dir / "importance.png")
            files["importance"] = str(out_dir / "importance.png")
        return files
    except (ImportError, ValueError, OSError) as exc:
        log.warning("could not draw the study plots: %s", exc)
        return {}


def plot_history(summary: dict, path: Path) -> None:
    """Per trial: final value, best so far, baseline; per epoch: each trial's curve."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = summary["trials"]
    fig, (ax, ax_ep) = plt.subplots(1, 2, figsize=(12, 4))
    done = [r for r in rows if r["state"] == "COMPLETE"]
    ax.scatter([r["number"] for r in done], [r["value"] for r in done], label="complete")
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["intermediate"]]
    last = [list(r["intermediate"].values())[-1] for r in pruned]
    ax.scatter([r["number"] for r in pruned], last, marker="x", color="grey",
               label="pruned (last epoch)")
    best, xs, ys = float("-inf"), [], []
    for r in sorted(done, key=lambda r: r["number"]):
        best = max(best, r["value"])
        xs.append(r["number"])
        ys.append(best)
    ax.step(xs, ys, where="post", color="tab:orange", label="best so far")
    if summary["baseline"]:
        ax.axhline(summary["baseline"]["value"], color="tab:red", ls="--", label="baseline")
    ax.set(xlabel="trial", ylabel="validation NDCG@10", title="optimisation history")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    for r in rows:
        if r["intermediate"]:
            steps = [int(k) for k in r["intermediate"]]
            style = {"color": "tab:red", "lw": 2} if r["baseline"] else {"alpha": 0.5, "lw": 1}
            ax_ep.plot(steps, list(r["intermediate"].values()), marker=".", **style)
    ax_ep.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_ep.set(xlabel="epoch", ylabel="validation NDCG@10", title="per epoch (red: baseline)")
    for a in (ax, ax_ep):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_importance(importance: dict[str, float], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = list(importance)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    ax.barh([SHORT.get(n, n) for n in names], [importance[n] for n in names])
    ax.set(xlabel="importance", title="parameter importance (validation NDCG@10)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
