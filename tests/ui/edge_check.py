"""What the edge browser tests (synthetic and Beauty) and benchmarks/edge_web.py measure: the
page's own top-k lists for many histories, their agreement with the service's, in-browser
latency, and the bytes the bundle took over the wire."""

from __future__ import annotations

import statistics
from pathlib import Path

import httpx

RUN_IN_PAGE = """async ([bundle, histories, k, warm]) => {
  const { mod } = window.liverecEdge;
  const rec = bundle ? await mod.loadBundle(bundle, { storage: null }) : window.liverecEdge.rec;
  for (const h of histories.slice(0, warm)) await rec.recommend(h, { k });
  const out = [];
  const t0 = performance.now();
  for (const h of histories) {
    const r = await rec.recommend(h, { k });
    out.push({ ids: r.items.map((i) => i.item_id), scores: r.items.map((i) => i.score),
               ms: r.ms, fallback: r.fallback });
  }
  return { lists: out, total_ms: performance.now() - t0, load_ms: rec.loadMs };
}"""


def histories_of(prepared, run_dir: Path, n: int) -> list[list[str]]:
    """The first ``n`` non-empty test-split histories, as the run's item ids."""
    import polars as pl

    ids = pl.read_parquet(Path(run_dir) / "items.parquet").sort("index")["item"].to_list()
    cases = [h for h in prepared.eval_cases("test")[1] if len(h)][:n]
    return [[ids[i - 1] for i in h.tolist()] for h in cases]


def server_lists(base_url: str, histories: list[list[str]], k: int = 10) -> list[dict]:
    """The service's answers (POST /v1/recommend, seen items masked) as {ids, scores}."""
    out = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for h in histories:
            r = client.post("/v1/recommend", json={"history": h, "k": k, "unknown": "ignore"})
            r.raise_for_status()
            items = r.json()["items"]
            out.append({"ids": [i["item_id"] for i in items],
                        "scores": [i["score"] for i in items]})
    return out


def run_in_page(page, histories: list[list[str]], bundle: str | None = None, k: int = 10,
                warm: int = 10) -> dict:
    """Top-k of every history computed by the page's client (the loaded bundle, or another
    one at ``bundle``), each one timed by the client; ``p50_ms`` / ``mean_ms`` over them."""
    res = page.evaluate(RUN_IN_PAGE, [bundle, histories, k, warm])
    times = [r["ms"] for r in res["lists"]]
    res["p50_ms"] = statistics.median(times)
    ranked = sorted(times)
    res["p90_ms"] = ranked[int(0.9 * (len(ranked) - 1))]
    res["p99_ms"] = ranked[int(0.99 * (len(ranked) - 1))]
    res["max_ms"] = ranked[-1]
    res["mean_ms"] = res["total_ms"] / len(times)
    return res


def overlap(server: list[dict], browser: list[dict]) -> float:
    """Mean share of each server list that the browser's list holds."""
    shares = [len(set(s["ids"]) & set(b["ids"])) / len(s["ids"])
              for s, b in zip(server, browser) if s["ids"]]
    return sum(shares) / len(shares)


def differences_beyond_ties(server: list[dict], browser: list[dict],
                            rtol: float = 1e-4) -> list[tuple[int, set]]:
    """Histories whose lists differ by more than floating-point ties: an item in one list
    and not the other whose score is not within ``rtol`` of the server's k-th score."""
    bad = []
    for n, (s, b) in enumerate(zip(server, browser)):
        edge = s["scores"][-1] if s["scores"] else 0.0
        tol = rtol * max(1.0, abs(edge))
        scores = dict(zip(s["ids"], s["scores"])) | dict(zip(b["ids"], b["scores"]))
        odd = {i for i in set(s["ids"]) ^ set(b["ids"]) if abs(scores[i] - edge) > tol}
        if odd or len(s["ids"]) != len(b["ids"]):
            bad.append((n, odd))
    return bad


def bundle_transfer(responses: list, manifest: dict) -> dict:
    """Bytes on the wire (encoded bodies) of the bundle's model files and of its runtime,
    from Playwright responses collected on ``requestfinished``."""
    model_files = set(manifest["files"])
    runtime_files = set((manifest.get("runtime") or {}).get("files", {}))
    out = {"model_bytes": 0, "runtime_bytes": 0, "model_files": 0, "manifest_bytes": 0}
    for request in responses:
        name = request.url.split("/edge/", 1)[-1].split("?")[0]
        size = request.sizes()["responseBodySize"]
        if name in model_files:
            out["model_bytes"] += size
            out["model_files"] += 1
        elif name == "manifest.json":
            out["manifest_bytes"] += size
        elif name.removeprefix("runtime/") in runtime_files:
            out["runtime_bytes"] += size
    out["bundle_bytes"] = out["model_bytes"] + out["manifest_bytes"]
    return out


def fulfil_from(page, prefix: str, folder: Path) -> None:
    """Serve ``folder`` at ``<origin>/<prefix>/`` from the test itself (a second bundle)."""
    def handle(route):
        name = route.request.url.split(f"/{prefix}/", 1)[1].split("?")[0]
        path = Path(folder) / name
        if path.is_file():
            route.fulfill(path=str(path))
        else:
            route.fulfill(status=404, body="no such file")

    page.route(f"**/{prefix}/**", handle)


def live_service(run_dir: Path):
    """A context manager: uvicorn serving ``run_dir`` (memory store) in a thread; yields its
    base URL."""
    import contextlib
    import socket
    import threading
    import time

    import uvicorn

    from liverec.serve.app import create_app

    @contextlib.contextmanager
    def serving():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        app = create_app(run_dir=run_dir, store="memory://", torch_threads=1)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)

    return serving()
