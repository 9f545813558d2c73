"""The training-curve plot written into every run directory."""

from __future__ import annotations

from pathlib import Path


def plot_curves(epochs: list[dict], path: Path) -> None:
    """Loss and validation NDCG@K / HR@K per epoch, against epoch and wall time.

    K is 10 when the validation rows hold it, else the smallest K they hold (eval.ks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [e["epoch"] for e in epochs]
    fig, (ax_loss, ax_val, ax_time) = plt.subplots(1, 3, figsize=(14, 3.8))
    ax_loss.plot(xs, [e["loss"] for e in epochs], marker="o", color="tab:red")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    evald = [e for e in epochs if "valid" in e]
    if evald:
        ex = [e["epoch"] for e in evald]
        ks = sorted(int(key[5:]) for key in evald[0]["valid"] if key.startswith("ndcg@"))
        k = 10 if 10 in ks else ks[0]
        ax_val.plot(ex, [e["valid"][f"ndcg@{k}"] for e in evald], marker="o", label=f"NDCG@{k}")
        ax_val.plot(ex, [e["valid"][f"hr@{k}"] for e in evald], marker="s", label=f"HR@{k}")
        ax_val.set(xlabel="epoch", ylabel="validation", title="validation (full ranking)")
        ax_val.legend()
        secs = [e["elapsed_s"] for e in evald]
        ax_time.plot(secs, [e["valid"][f"ndcg@{k}"] for e in evald], marker="o")
        ax_time.set(xlabel="wall time (s)", ylabel=f"validation NDCG@{k}",
                    title="quality vs time")
    for ax in (ax_loss, ax_val, ax_time):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
