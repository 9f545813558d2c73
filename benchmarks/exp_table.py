"""Issue 15's experiment log as one table, built from the result files (no number typed in).

    python benchmarks/exp_table.py   # -> benchmarks/results/experiments_issue15.md

Rows: every ``lastfm_default*.json`` (3 seeds each: mean ± sd of test NDCG@20 / HR@20, mean
training seconds per seed, the overrides of configs/lastfm/sasrec.json) and every
``exp_beauty_*.json`` that has test metrics (one run: test NDCG@20 / HR@20, best validation
NDCG@10, training seconds), beside the Beauty references (the id default,
quality_beauty_sasrec.json; the id + text fusion model, text_bench_beauty.json) and the targets.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TARGETS = {"beauty, id": (0.0705, 0.1403), "beauty, text": (0.0726, 0.1445),
           "lastfm": (0.0589, 0.1238)}


def lastfm_rows() -> list[str]:
    rows = []
    for path in sorted(RESULTS.glob("lastfm_default*.json")):
        d = json.loads(path.read_text())
        n, h = d["summary"]["ndcg@20"], d["summary"]["hr@20"]
        secs = sum(r["train"]["wall_s"] for r in d["runs"]) / len(d["runs"])
        # the config file changes between commits (configs/default.json did): name the commit
        what = ", ".join([f"`{d['config']}` at {d.get('commit', '?')}", *d["overrides"]])
        refit = d["runs"][0]["train"].get("refit") or {}
        if refit:  # recorded by the run itself (the config file may be newer than the commit)
            what += (f", with the refit on validation events ({refit['epochs']} epochs at lr "
                     f"{refit['lr']:g}; validation column: held out, before the refit)")
        rows.append(f"| LastFM | {what} | {n['mean']:.4f} ± {n['std']:.4f} | "
                    f"{h['mean']:.4f} ± {h['std']:.4f} | "
                    f"{d['valid_summary']['ndcg@20']['mean']:.4f} (NDCG@20) | "
                    f"{secs:,.0f} s / seed | `{path.stem}.md` |")
    return rows


def beauty_rows() -> list[str]:
    q = json.loads((RESULTS / "quality_beauty_sasrec.json").read_text())
    best = max(e["valid"]["ndcg@10"] for e in q["train"]["epochs"] if "valid" in e)
    rows = [f"| Beauty | the id default (configs/beauty/sasrec.json) | "
            f"{q['test']['ndcg@20']:.4f} | {q['test']['hr@20']:.4f} | {best:.4f} | | "
            "`quality_beauty_sasrec.md` |"]
    text = json.loads((RESULTS / "text_bench_beauty.json").read_text())["quality"]["fusion"]
    rows.append(f"| Beauty | id + text fusion (configs/beauty/text_fusion.json, "
                f"{', '.join(text['overrides'])}) | {text['test']['ndcg@20']:.4f} | "
                f"{text['test']['hr@20']:.4f} | {text['valid']['ndcg@10']:.4f} | "
                f"{text['wall_s']:,.0f} s | `text_bench_beauty.md` |")
    for path in sorted(RESULTS.glob("exp_beauty_*.json")):
        d = json.loads(path.read_text())
        if not d.get("test"):  # stopped before the end: its best validation so far
            rows.append(f"| Beauty | {d['summary']['what']} | not run | | "
                        f"{d['summary']['best_valid_ndcg10_experiment']:.4f} (epoch "
                        f"{d['summary']['epochs_reached']}, stopped) | | `{path.stem}.md` |")
            continue
        t = d["test"]["experiment"]
        rows.append(f"| Beauty | {d['summary']['what']} | {t['ndcg@20']:.4f} | {t['hr@20']:.4f} | "
                    f"{d['summary']['best_valid_ndcg10_experiment']:.4f} | "
                    f"{d['test']['training_s'] or 0:,.0f} s | `{path.stem}.md` |")
    return rows


# benchmarks/exp_refit.py logs: exp_refit_MODE_RUN_EPOCHS_LR[_seedN].log; LastFM rows pool
# the three seeds of runs/lfs_winall_p2800 (the LastFM default row's runs)
REFIT_RUNS = {
    "fusion": ("Beauty", "the default (fusion) run, runs/exp/beauty_default_winall_p2800"),
    "id": ("Beauty", "the id-only default run, runs/exp/beauty_id_winall"),
    "lfm": ("LastFM", "the default's 3 seed runs, runs/lfs_winall_p2800"),
}
REFIT_MODES = {
    "refit": "training + validation events (the refit now in train.refit_epochs)",
    "control": "training events only (control: same schedule, no new events)",
    "new": "only the windows ending at a validation event, supervised there",
}


def _refit_log(path: Path) -> tuple[dict, list[dict]]:
    start, epochs = {}, []
    for line in path.read_text().splitlines():
        if line.startswith("start "):
            start = json.loads(line[6:].replace("'", '"'))
        elif line.startswith("epoch "):
            epochs.append(json.loads(line[line.index("{"):].replace("'", '"')))
    return start, epochs


def refit_rows() -> list[str]:
    """Rows from benchmarks/exp_refit.py logs: test after the last epoch run (start -> end)."""
    groups: dict[tuple, list[Path]] = {}
    for path in sorted(RESULTS.glob("exp_refit_*.log")):
        mode, run, rest = path.stem[len("exp_refit_"):].split("_", 2)
        # LastFM logs end in _seedN: one row per setting, the seeds pooled
        groups.setdefault((mode, run, "_".join(rest.split("_")[:2])), []).append(path)
    rows = []
    for (mode, run, setting), paths in groups.items():
        data, which = REFIT_RUNS[run]
        n_epochs, lr = setting.split("_")
        logs = [_refit_log(p) for p in paths]
        done = [len(e) for _, e in logs]
        ends = [e[-1] for _, e in logs]
        starts = [s for s, _ in logs]

        def mean(rows_, key):
            return sum(r[key] for r in rows_) / len(rows_)

        what = (f"continue {which} from its kept weights on {REFIT_MODES[mode]}: "
                f"{n_epochs} epochs, cosine from lr {lr.replace('e', 'e-')} to 0 "
                f"(benchmarks/exp_refit.py; test before: NDCG@20 {mean(starts, 'ndcg@20'):.4f}, "
                f"HR@20 {mean(starts, 'hr@20'):.4f}"
                + (f"; stopped after {min(done)} epochs" if min(done) < int(n_epochs) else "")
                + (f"; mean of {len(paths)} seeds" if len(paths) > 1 else "") + ")")
        rows.append(f"| {data} | {what} | {mean(ends, 'ndcg@20'):.4f} | "
                    f"{mean(ends, 'hr@20'):.4f} | | | `{paths[0].stem}.log` |")
    return rows


def main() -> None:
    lines = ["# Issue 15: experiments (kept or not), one row each", "",
             "Test metrics: full ranking over every item, history masked, test split. Validation: "
             "the best epoch's validation metric (NDCG@10 for Beauty runs, NDCG@20 mean over "
             "seeds for LastFM). Time: training wall-clock on one thread of the shared 2-core "
             "machine (other jobs ran beside most of these, so compare times loosely; the "
             "LastFM default's seeds ran beside four helpers). LastFM rows on configs/default.json "
             "made before it had train.min_patience_steps (the patience-8, patience-20 and "
             "dropout-0.3 rows) ran with patience 8 unless their overrides say otherwise.", "",
             "Targets (issue 15): " + "; ".join(f"{k} NDCG@20 >= {n} and HR@20 >= {h}"
                                                for k, (n, h) in TARGETS.items()) + ".", "",
             "| data | what | test NDCG@20 | test HR@20 | validation | time | file |",
             "|---|---|---|---|---|---|---|", *beauty_rows(), *refit_rows(), *lastfm_rows(),
             ""]
    (RESULTS / "experiments_issue15.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
