"""Periodic re-fine-tuning: new events -> fine-tune from the current model -> held-out check
-> a new version -> hot-swap in the running service."""

from liverec.retrain.core import (
    RetrainConfig,
    events_frame,
    latest_version,
    merge_events,
    notify_reload,
    retrain,
)

__all__ = ["RetrainConfig", "events_frame", "latest_version", "merge_events", "notify_reload",
           "retrain"]
