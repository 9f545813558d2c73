"""Issue 15 experiment: continue a finished run on its validation events, test after each epoch.

    python benchmarks/exp_refit.py RUN_DIR EPOCHS LR [refit|control|new] > LOG

Loads RUN_DIR's kept (best validation) weights and trains them EPOCHS more epochs with a fresh
AdamW and a cosine decay from LR to 0 (no warm-up), printing test NDCG@20 / HR@20 / NDCG@10
(full ranking, history masked) before and after every epoch. What it trains on:

- ``refit``: every user's training events plus their validation event
  (``Prepared.refit_sequences``, the run's ``train.windows``): the refit that
  ``train.refit_epochs`` now does after early stopping;
- ``control``: the training events only, same schedule (is the gain just more training?);
- ``new``: only the windows that end at a validation event, supervised at that last position.

This is the exploration behind ``train.refit_epochs`` / ``train.refit_lr``; its logs are
``benchmarks/results/exp_refit_*.log`` and the experiment log's refit rows. Test is printed
every epoch to see the shape of the curve, so the settings chosen from it (6 epochs at half
the peak lr) were then run end to end by ``liverec train`` on both datasets.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from liverec.data.pipeline import load_and_prepare
from liverec.evaluate.protocol import DeviceCases, evaluate_on_device
from liverec.model.artifact import load_model, read_run_config
from liverec.train.batches import TrainBatches
from liverec.train.loop import default_loss
from liverec.train.optim import build_optimizer


def main() -> int:
    run, epochs, lr = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "refit"
    if mode not in ("refit", "control", "new"):
        raise SystemExit(f"unknown mode {mode!r}: refit, control or new")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = read_run_config(run)
    model, vocab, _, _ = load_model(run)
    prep = load_and_prepare(cfg.data, vocab=vocab)
    s = prep.split
    tc = dataclasses.replace(cfg.train, lr=lr)
    dev = torch.device("cpu")
    if mode == "new":
        ends = np.where(s.valid_pos > 0, s.valid_pos + 1, 0)
        seqs = [prep.sequences.items[prep.sequences.indptr[u]: prep.sequences.indptr[u] + ends[u]]
                for u in np.flatnonzero(ends >= 2)]
        batches = TrainBatches(seqs, cfg.model.max_len, tc.batch_size, tc.seed + 7, device=dev,
                               windows="last")
        batches._targets[:, :-1] = 0  # the validation event is the only target
        print("new-only rows", len(batches.lengths), flush=True)
    else:
        seqs = prep.train_sequences() if mode == "control" else prep.refit_sequences()
        batches = TrainBatches(seqs, cfg.model.max_len, tc.batch_size, tc.seed + 7, device=dev,
                               windows=tc.windows)
    cases = DeviceCases.build(prep, "test", cfg.model.max_len, dev)

    def test() -> dict:
        m = evaluate_on_device(model, cases, (10, 20), 512)
        return {k: round(m[k], 4) for k in ("ndcg@20", "hr@20", "ndcg@10")}

    print("start", test(), flush=True)
    opt = build_optimizer(model, tc)
    total = len(batches) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + np.cos(np.pi * min(1.0, step / total))))
    for epoch in range(1, epochs + 1):
        model.train()
        t0, tot, n = time.time(), 0.0, 0
        for batch in batches:
            loss = default_loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            tot, n = tot + float(loss.detach()), n + 1
        model.eval()
        print("epoch", epoch, "loss", round(tot / n, 4), "s", round(time.time() - t0), test(),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
