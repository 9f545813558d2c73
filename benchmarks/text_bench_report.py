"""Markdown tables and a plot for benchmarks/text_bench.py results."""

from __future__ import annotations

import json
from pathlib import Path

# issue 4 "must show" thresholds
TARGETS = {"ndcg@20": 0.060, "hr@20": 0.125, "cold_warm": 0.3, "peft_fraction": 0.10,
           "peft_ratio": 0.97, "encode_s": 60.0}


def _m(row: dict, key: str) -> str:
    value = row.get(key)
    return f"{value:.4f}" if isinstance(value, float) else "—"


def encode_md(r: dict) -> list[str]:
    lines = [f"## Encoding {r['texts']:,} texts ({r['threads']} threads)\n",
             "| encoder | first run (s) | texts/s | second run (s) | all from cache |",
             "|---|---|---|---|---|"]
    for name, v in r.items():
        if isinstance(v, dict):
            lines.append(f"| {name} | {v['first_s']:.1f} | {v['texts_per_s']:.0f} | "
                         f"{v['second_s']:.2f} | {v['cache_hits_second'] == r['texts']} |")
    return lines + [f"\nTarget: first run < {TARGETS['encode_s']:.0f} s; second run from cache.\n"]


def quality_md(r: dict) -> list[str]:
    lines = ["## Quality (test, full ranking)\n",
             "| items | HR@10 | HR@20 | NDCG@10 | NDCG@20 | params | best epoch | wall (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("id", "text", "fusion"):
        if name in r:
            row, t = r[name], r[name]["test"]
            lines.append(f"| {name} | {_m(t, 'hr@10')} | {_m(t, 'hr@20')} | {_m(t, 'ndcg@10')} "
                         f"| {_m(t, 'ndcg@20')} | {row['n_parameters']:,} | {row['best_epoch']} "
                         f"| {row['wall_s']:.0f} |")
    lines += [f"\nSettings: {name}: `{r[name].get('overrides', [])}`" for name in
              ("id", "text", "fusion") if name in r]
    return lines + [f"\nTarget (best text-aware): NDCG@20 >= {TARGETS['ndcg@20']}, "
                    f"HR@20 >= {TARGETS['hr@20']}.\n"]


def coldstart_md(r: dict) -> list[str]:
    lines = [f"## Cold start ({r['cold_items']:,} items = {r['fraction']:.0%} held out)\n",
             "| items | cold HR@20 | cold NDCG@20 | warm HR@20 | warm NDCG@20 | cold/warm HR@20 "
             "| cold cases |", "|---|---|---|---|---|---|---|"]
    for name in ("id", "text", "fusion"):
        if name in r:
            c, w = r[name]["cold"], r[name]["warm"]
            lines.append(f"| {name} | {_m(c, 'hr@20')} | {_m(c, 'ndcg@20')} | {_m(w, 'hr@20')} | "
                         f"{_m(w, 'ndcg@20')} | {r[name]['cold_warm_hr@20_ratio']:.3f} | "
                         f"{c.get('cases', 0)} |")
    lines += [f"\nSettings: {name}: `{r[name].get('overrides', [])}`" for name in
              ("id", "text", "fusion") if name in r]
    return lines + [f"\nTarget: cold/warm HR@20 >= {TARGETS['cold_warm']} (best text-aware).\n"]


def transfer_md(r: dict) -> list[str]:
    lines = [f"## Transfer to {r['target']} and fine-tuning modes (pretrained: "
             f"`{r['pretrained']}`)\n",
             "| users | mode | trainable | fraction | HR@20 | NDCG@20 | wall (s) |",
             "|---|---|---|---|---|---|---|"]
    full = {row["fraction"]: row["test"]["ndcg@20"] for row in r["rows"] if row["mode"] == "full"}
    for row in r["rows"]:
        lines.append(f"| {row['fraction']:.0%} | {row['mode']} | {row['n_trainable']:,} | "
                     f"{row['trainable_fraction']:.1%} | {_m(row['test'], 'hr@20')} | "
                     f"{_m(row['test'], 'ndcg@20')} | {row['wall_s']:.0f} |")
    lines.append("\n| users | PEFT mode | NDCG@20 / full fine-tuning |\n|---|---|---|")
    for row in r["rows"]:
        if row["mode"] in ("lora", "adaptor") and full.get(row["fraction"]):
            ratio = row["test"]["ndcg@20"] / full[row["fraction"]]
            lines.append(f"| {row['fraction']:.0%} | {row['mode']} | {ratio:.3f} |")
    lines.append(f"\nSettings: `{r.get('overrides', [])}`; LoRA/adaptor learning rate "
                 f"{r.get('peft_lr', 'the config')}, every mode the same epochs and stopping.")
    return lines + [f"\nTargets: PEFT with <= {TARGETS['peft_fraction']:.0%} trainable reaches "
                    f">= {TARGETS['peft_ratio']:.0%} of full fine-tuning; with 10% of users, "
                    "pretrained + fine-tuned beats scratch.\n"]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    names = ["id", "text", "fusion"]
    if "quality" in results:
        q = results["quality"]
        have = [n for n in names if n in q]
        axes[0].bar(have, [q[n]["test"]["ndcg@20"] for n in have])
        axes[0].set_title("test NDCG@20")
    if "coldstart" in results:
        c = results["coldstart"]
        have = [n for n in names if n in c]
        x = range(len(have))
        axes[1].bar([i - 0.2 for i in x], [c[n]["warm"].get("hr@20", 0) for n in have], 0.4,
                    label="warm")
        axes[1].bar([i + 0.2 for i in x], [c[n]["cold"].get("hr@20", 0) for n in have], 0.4,
                    label="cold")
        axes[1].set_xticks(list(x), have)
        axes[1].set_title("cold start: test HR@20")
        axes[1].legend()
    if "transfer" in results:
        rows = results["transfer"]["rows"]
        for mode in ("scratch", "full"):
            pts = sorted((r["fraction"], r["test"]["ndcg@20"]) for r in rows if r["mode"] == mode)
            if pts:
                axes[2].plot(*zip(*pts), marker="o", label=mode)
        for mode, marker in (("lora", "s"), ("adaptor", "^")):  # fine-tuning modes, as points
            pts = [(r["fraction"], r["test"]["ndcg@20"], r["trainable_fraction"]) for r in rows
                   if r["mode"] == mode]
            for x, y, share in pts:
                axes[2].scatter([x], [y], marker=marker, s=60, zorder=3,
                                label=f"{mode} ({share:.1%} trainable)")
        axes[2].set_xlabel("share of target users")
        axes[2].set_title(f"transfer to {results['transfer']['target']}: NDCG@20")
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(results: dict, stem: Path) -> None:
    """Write ``stem``.json, .md and .png."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    meta = results.get("meta", {})
    lines = [f"# Text-aware items benchmark `{meta.get('tag')}`\n",
             f"Overrides of the latest run (each part lists its own): {meta.get('overrides')}; "
             f"torch {meta.get('torch')}, "
             f"{meta.get('threads')} threads; smoke: {meta.get('smoke')}.\n"]
    for part, fn in (("encode", encode_md), ("quality", quality_md),
                     ("coldstart", coldstart_md), ("transfer", transfer_md)):
        if part in results:
            lines += fn(results[part])
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(results, stem.with_suffix(".png"))
