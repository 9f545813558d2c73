"""Hyper-parameter search on Optuna: TPE / random / grid over model and optimiser settings.

Every trial is an ordinary training run (train/loop.py) on data prepared once, bounded by the
same per-trial wall-time budget (``train.max_time_s``: training stops at the end of the first
epoch that ends past it) and scored by
its best validation NDCG@10 (full ranking). Each epoch's validation NDCG@10 is reported to the
trial through the loop's epoch callback, and the median pruner stops trials that fall behind.
Trial 0 is the base config itself (enqueued), so the study always compares against it under
the same budget.

The study lives in an Optuna RDB storage (SQLite in the output folder by default; any
SQLAlchemy URL, e.g. PostgreSQL, lets several machines search together) and is resumed with
``load_if_exists``: run the same command again and it continues until it holds ``trials``
finished trials. A trial that raises is recorded as FAIL with its error and the study goes on
(a diverged trial, whose loss or scores went NaN/inf, raises NonFiniteError in training, so it
is failed and can never be the best; epochs with non-finite validation are not reported);
the trials of a process that was killed are failed, with a recorded reason, through Optuna's
heartbeat once the study is resumed.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from liverec.config import RunConfig, to_dict
from liverec.data.prepare import Prepared
from liverec.errors import ConfigError, NonFiniteError
from liverec.tune.space import SearchSpace

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "grid")


@dataclass(frozen=True)
class TuneConfig:
    """How a study searches: sampler, budget, pruning, storage."""

    trials: int = 20  # finished (complete or pruned) trials the study should hold
    sampler: str = "tpe"  # tpe | random | grid
    storage: str | None = None  # Optuna RDB URL; None = sqlite:///<out>/study.db
    study_name: str = "liverec"
    timeout_s: float = 0.0  # no new trial starts after this many seconds (0 = no limit)
    trial_time_s: float = 0.0  # each trial's training budget, train.max_time_s (0 = base's)
    seed: int = 0
    prune: bool = True
    prune_startup_trials: int = 3  # the first trials are never pruned
    prune_warmup_epochs: int = 1  # no trial is pruned before this many epochs
    tpe_startup_trials: int = 5  # random trials before TPE models the results
    heartbeat_s: int = 30  # a running trial with no heartbeat for 3x this is failed


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(Path(out_dir) / 'study.db').resolve()}"


def open_study(tc: TuneConfig, out_dir: Path, space: SearchSpace):
    """Create or load (``load_if_exists``) the study in its storage."""
    import optuna

    if tc.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler: unknown {tc.sampler!r}; use {', '.join(SAMPLERS)}")
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=tc.seed,
                                                  n_startup_trials=tc.tpe_startup_trials),
        "random": lambda: optuna.samplers.RandomSampler(seed=tc.seed),
        "grid": lambda: optuna.samplers.GridSampler(space.grid(), seed=tc.seed),
    }
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=tc.prune_startup_trials,
                                          n_warmup_steps=tc.prune_warmup_epochs)
              if tc.prune else optuna.pruners.NopPruner())
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(tc.storage or default_storage(out_dir), tc.heartbeat_s)
    return optuna.create_study(study_name=tc.study_name, storage=storage, direction="maximize",
                               sampler=samplers[tc.sampler](), pruner=pruner,
                               load_if_exists=True)


def open_storage(url: str, heartbeat_s: int):
    """An RDB storage whose running trials beat every ``heartbeat_s``; a trial silent for
    3x that (its process was killed) is failed, with a reason, when the study next runs."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    params = inspect.signature(optuna.storages.RDBStorage).parameters
    # optuna >= 4.9 renamed failed_trial_callback (the old name warns there)
    callback = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params
                else "failed_trial_callback")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s,
                                              grace_period=3 * heartbeat_s,
                                              **{callback: _record_stale})
    except (ValueError, ImportError, SQLAlchemyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--storage: cannot open {redact_url(url)!r}: {reason}") from None


def redact_url(url: str) -> str:
    """A storage URL without its password (for messages and result files)."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def _record_stale(study, trial) -> None:
    """Heartbeat callback: a trial whose process stopped beating was failed; say why."""
    reason = ("the process running this trial stopped (no heartbeat within the grace period: "
              "killed or crashed); failed when the study was resumed")
    study.set_user_attr(f"error:trial {trial.number}", reason)
    log.warning("trial %d: %s", trial.number, reason)


def run_study(base: RunConfig, out_dir: Path, tc: TuneConfig, space: SearchSpace | None = None,
              prepared: Prepared | None = None) -> dict:
    """Search, then write the results table, plots and best config into ``out_dir``.

    Args:
        base: the config every trial starts from (and trial 0 is).
        out_dir: the study folder (storage, trial run directories, results).
        tc: search settings.
        space: the search space (default: SearchSpace()); widened to include ``base``.
        prepared: the data, when the caller has it already (else loaded from ``base.data``).

    Returns:
        The summary written to ``results.json`` (see tune/report.py).
    """
    import optuna

    from liverec.data.pipeline import load_and_prepare
    from liverec.tune.report import write_results

    space = (space or SearchSpace()).covering(base)
    study = open_study(tc, out_dir, space)
    _check_same_base(study, base, space)
    with warnings.catch_warnings():  # trials of a killed process: FAIL, with a reason
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    if not _has_baseline(study):
        study.enqueue_trial(space.point_of(base), user_attrs={"baseline": True})
    prepared = prepared or load_and_prepare(base.data)
    objective = Objective(base, space, tc, prepared, out_dir / "trials")
    deadline = time.monotonic() + tc.timeout_s if tc.timeout_s else None
    # failed trials do not count: run rounds until the study holds `trials` finished ones,
    # stopping when a whole round failed (a broken setting would fail forever)
    while (remaining := tc.trials - _n_finished(study)) > 0:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        before = _n_finished(study)
        study.optimize(objective, n_trials=remaining, timeout=left, catch=(Exception,),
                       gc_after_trial=True)
        if _n_finished(study) == before:
            log.warning("every trial of the last round failed; stopping the study")
            break
    return write_results(study, out_dir, base, space, tc)


def _n_finished(study) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def _check_same_base(study, base: RunConfig, space: SearchSpace) -> None:
    """A resumed study must search around the same base config (else its trials differ)."""
    key = "base_config"
    saved, now = study.user_attrs.get(key), to_dict(base)
    if saved is None:
        study.set_user_attr(key, now)
        study.set_user_attr("space", {k: dataclasses.asdict(p) for k, p in space.params.items()})
    elif saved != now:
        changed = sorted(f"{s}.{k}" for s in now if isinstance(now[s], dict)
                         for k in now[s] if saved.get(s, {}).get(k) != now[s][k])
        raise ConfigError(f"study {study.study_name!r} in this storage was started from another "
                          f"base config (differs in {changed}); use another --out, --storage "
                          f"or study name")


def _has_baseline(study) -> bool:
    import optuna

    live = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    return any(t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False, states=live))


def trial_config(cfg: RunConfig, number: int, tc: TuneConfig) -> RunConfig:
    """The settings a trial trains with: its budget, quiet, no resume checkpoint, no refit on
    validation events (a trial is judged on held-out validation, which the refit would only
    spend time on; train the chosen settings with ``liverec train`` to get it)."""
    train = dataclasses.replace(cfg.train, progress=False, checkpoint=False, refit_epochs=0,
                                max_time_s=tc.trial_time_s or cfg.train.max_time_s)
    return dataclasses.replace(cfg, name=f"{cfg.name}-trial{number}", train=train)


class Objective:
    """One trial: suggest a point, train it, return its best validation NDCG@10."""

    def __init__(self, base: RunConfig, space: SearchSpace, tc: TuneConfig, prepared: Prepared,
                 runs_dir: Path) -> None:
        self.base, self.space, self.tc = base, space, tc
        self.prepared, self.runs_dir = prepared, runs_dir

    def __call__(self, trial) -> float:
        import optuna

        from liverec.train.loop import train

        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        baseline = bool(trial.user_attrs.get("baseline"))
        point = self.space.suggest(trial)  # trial 0: the enqueued base point
        reporter = PruningReporter(trial, prune=self.tc.prune and not baseline)
        try:
            cfg = self.base if baseline else self.space.apply(self.base, point)
            cfg = trial_config(cfg, trial.number, self.tc)
            result = train(cfg, self.prepared, self.runs_dir / f"trial_{trial.number:04d}",
                           callback=reporter)
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            raise
        trial.set_user_attr("epochs", len(result.epochs))
        trial.set_user_attr("wall_s", round(result.wall_s, 2))
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("stopped", result.stopped)
        trial.set_user_attr("valid", result.best_valid)
        trial.set_user_attr("n_parameters", result.n_parameters)
        if reporter.pruned:
            raise optuna.TrialPruned(reporter.pruned)
        if "ndcg@10" not in result.best_valid:
            raise RuntimeError("the trial finished without a validation result")
        value = float(result.best_valid["ndcg@10"])
        if not math.isfinite(value):  # training never keeps such an epoch; belt and braces
            trial.set_user_attr("error", f"NonFiniteError: validation NDCG@10 {value}")
            raise NonFiniteError(f"trial {trial.number}: validation NDCG@10 is {value}")
        return value


class PruningReporter:
    """The loop's epoch callback: report validation NDCG@10; stop when Optuna prunes."""

    def __init__(self, trial, prune: bool = True) -> None:
        self.trial, self.prune, self.pruned = trial, prune, ""

    def __call__(self, epoch: int, row: dict) -> str | None:
        value = float(row["valid"]["ndcg@10"])
        if row.get("nonfinite") or not math.isfinite(value):
            return None  # an epoch that was not kept (train.nonfinite=skip) is not a result
        self.trial.report(value, epoch)
        if self.prune and self.trial.should_prune():
            self.pruned = f"pruned at epoch {epoch}"
            return self.pruned
        return None
