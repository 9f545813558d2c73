"""Service settings (pydantic-settings): built by ``create_app()``, never at import.

Every field can come from the environment as ``LIVEREC_SERVE_<FIELD>`` (this is how
``liverec serve --workers N`` hands settings to each uvicorn worker process).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    """What a liverec service runs and how.

    ``naive`` is the reference path the load benchmark compares with: every request recomputes
    the scores of all items for the user's full history (no cache, no micro-batching).
    """

    model_config = SettingsConfigDict(env_prefix="LIVEREC_SERVE_", extra="forbid")

    run_dir: Path = Field(description="run directory written by 'liverec train'")
    store: str = Field("", description="memory://, sqlite:///path.db or redis://host:port/db; "
                                       "empty = sqlite:///<run_dir>/../events.db")
    api_key: SecretStr | None = Field(
        None, description="API keys separated by commas (rotation), each 'KEY' (admin) or "
                          "'read:KEY' / 'write:KEY' / 'admin:KEY'; set: reads of a person's "
                          "data need a read key, writes a write key, reload an admin key "
                          "(see liverec.serve.keys)")
    api_key_file: Path | None = Field(
        None, description="file of API keys, one per line (same forms), re-read when it "
                          "changes and on SIGHUP")
    models_root: Path | None = Field(
        None, description="POST /admin/reload loads only run directories inside it "
                          "(default: the parent directory of run_dir)")
    retriever: str = Field("exact", description="exact, hnsw or ivf")
    cache: bool = True
    cache_users: int = Field(100_000, ge=0, description="users whose answers are cached (LRU)")
    cache_bytes: int = Field(64 << 20, ge=0, description="bytes of cached answers and user "
                                                         "vectors, all users together (LRU)")
    mask_cache_bytes: int = Field(16 << 20, ge=0, description="bytes of cached attribute-"
                                                              "filter masks (LRU)")
    allow_catalogue_change: bool = Field(False, description="start even if the store's "
                                         "histories were recorded over another catalogue")
    batching: bool = True
    batch_window_ms: float = Field(2.0, ge=0, le=100)
    max_batch: int = Field(64, ge=1, le=4096)
    naive: bool = False
    store_timeout_s: float = Field(0.1, gt=0, le=30, description="socket timeout of each "
                                   "call to a networked store (Redis); past it the request is "
                                   "a 503 with Retry-After")
    drain_s: float = Field(0.0, ge=0, le=300, description="on SIGTERM, answer /readyz 503 "
                           "this long (a load balancer stops routing here) before shutting "
                           "down; 0 = shut down at once")
    max_k: int = Field(200, ge=1)
    max_history: int = Field(200, ge=1, description="events kept per user in state and the "
                                                    "longest history POST /v1/recommend takes")
    max_events: int = Field(1000, ge=1, description="events per POST /v1/events")
    max_exclude: int = Field(1000, ge=0)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    cors_origins: list[str] = Field(default_factory=list, description="CORS off when empty")
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads of the model "
                                      "(process-wide; None = leave torch as it is)")
    rerank: Path | None = Field(None, description="the deployment's re-ranking rules, a JSON "
                                "or TOML file (liverec.serve.rerank_config); checked at start")

    @model_validator(mode="after")
    def _check_key_file(self) -> ServeSettings:
        if self.api_key_file is not None and not Path(self.api_key_file).is_file():
            raise ValueError(f"api_key_file {self.api_key_file}: no such file")
        if self.rerank is not None:
            from liverec.errors import ConfigError
            from liverec.serve.rerank_config import load_rerank_file

            try:
                load_rerank_file(self.rerank)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    def keys_enabled(self) -> bool:
        """Whether routes with a scope need a key (a key setting that holds no key is an
        error at start, never an open service)."""
        return self.api_key is not None or self.api_key_file is not None

    def reload_root(self) -> Path:
        """The directory /admin/reload may load runs from (resolved: symlinks followed)."""
        return Path(self.models_root or Path(self.run_dir).resolve().parent).resolve()

    def store_url(self) -> str:
        """The store URL, defaulting to an SQLite log beside the run directory."""
        if self.store:
            return self.store
        return f"sqlite:///{Path(self.run_dir).resolve().parent / 'events.db'}"
