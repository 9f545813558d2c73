"""Recommendations on the device, in a real browser (Debian's chromium through Playwright), on
a small synthetic shop: a distilled one-layer student with a product-quantized item table,
its web bundle served by the service at /edge/, the dashboard's "on this device" mode.

- 200 test histories: the page's top-10 (int8 encoder) overlaps the service's by >= 0.95 on
  average; the fp32 bundle gives the service's items up to floating-point ties; p50 in-browser
  latency <= 5 ms (WebAssembly, one thread); the bundle went over the wire gzip-encoded.
- With the network cut after the bundle loaded, the page still recommends and follows clicks.
- New items reach the page from their rows (GET /v1/edge/items), not by a new download, and
  stay across a reload.
- An item flagged on the server (PATCH /v1/items/{id}) leaves the page's lists after update()
  (GET /v1/edge/hidden) and stays hidden across a reload without asking again.

Figures go to test-artifacts/edge_synthetic.json. The Beauty version: test_edge_beauty.py.
"""

from __future__ import annotations

import json

import httpx
import pytest
from tests.ui.browser import CHROMIUM, sync_playwright
from tests.ui.edge_check import (
    bundle_transfer,
    differences_beyond_ties,
    fulfil_from,
    histories_of,
    live_service,
    overlap,
    run_in_page,
    server_lists,
)

from liverec.edge.bundle import REPO_RUNTIME, RUNTIME_INDEX

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install 'liverec[dev]')")
pytest.importorskip("onnxruntime")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
if not (REPO_RUNTIME / RUNTIME_INDEX).is_file():
    pytest.skip("the web client is not built (cd clients/js && npm ci && npm run build)",
                allow_module_level=True)

expect = sync_api.expect
N_HISTORIES = 200


@pytest.fixture(scope="module")
def student(dashboard_run, tmp_path_factory):
    """(student run with its bundle in RUN/web (int8 encoder), fp32 bundle, histories)."""
    from liverec.compress.pipeline import DEFAULT_STUDENT
    from liverec.compress.variants import (
        CompressConfig,
        build_variants,
        check_histories,
        prepare_for,
    )
    from liverec.edge.bundle import WebExportConfig, export_web

    prepared = prepare_for(dashboard_run)
    out = tmp_path_factory.mktemp("edge-student")
    cc = CompressConfig(int8=False, distill=DEFAULT_STUDENT, distill_copy=True,
                        distill_epochs=1, report=False)
    run = build_variants(dashboard_run, out, cc, prepared)["distilled"]
    checks = check_histories(prepared, N_HISTORIES)
    export_web(run, run / "web", WebExportConfig(weights="int8"), checks)
    export_web(run, out / "fp32", WebExportConfig(weights="fp32", runtime="none"), checks)
    return run, out / "fp32", histories_of(prepared, run, N_HISTORIES)


@pytest.fixture(scope="module")
def service(student):
    with live_service(student[0]) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page in a fresh context (its own storage, cache and network state)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def open_device_mode(page, service: str) -> list:
    """The dashboard in device mode, bundle loaded and a first list shown; returns the
    finished requests (collected from before the page opened)."""
    finished: list = []
    page.on("requestfinished", lambda r: finished.append(r))
    page.goto(f"{service}/ui/?device=1&poll=600000")
    page.wait_for_function("window.liverecEdge !== undefined")
    expect(page.locator("#device-recs li")).to_have_count(10)
    return finished


def test_browser_lists_match_the_service_and_are_fast(service, student, page, request):
    run, fp32_dir, histories = student
    finished = open_device_mode(page, service)
    expect(page.locator("#device-agree")).to_have_text("10 of 10 items in common")
    manifest = page.evaluate("window.liverecEdge.rec.manifest")
    assert manifest["encoder"]["weights"] == "int8" and manifest["table"]["kind"] == "pq"

    server = server_lists(service, histories)
    here = run_in_page(page, histories)
    assert all(b["fallback"] is None for b in here["lists"])
    agree = overlap(server, here["lists"])
    assert agree >= 0.95, f"top-10 overlap with the service {agree:.3f} < 0.95"

    fulfil_from(page, "edge-fp32", fp32_dir)
    exact = run_in_page(page, histories, bundle="/edge-fp32/")
    assert differences_beyond_ties(server, exact["lists"]) == []
    assert here["p50_ms"] <= 5.0, f"p50 {here['p50_ms']:.2f} ms per recommendation"

    wire = bundle_transfer(finished, manifest)
    assert wire["model_files"] == len(manifest["files"])
    assert wire["model_bytes"] == manifest["total"]["gzip_bytes"]  # gzip on the wire
    out = request.config.rootpath / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "edge_synthetic.json").write_text(json.dumps({
        "histories": len(histories), "top10_overlap_int8": round(agree, 4),
        "fp32_same_items_up_to_ties": True, "p50_ms": here["p50_ms"],
        "p90_ms": here["p90_ms"], "p99_ms": here["p99_ms"], "max_ms": here["max_ms"],
        "mean_ms": round(here["mean_ms"], 4), "p50_ms_fp32": exact["p50_ms"],
        "bundle_transfer_bytes": wire["bundle_bytes"], "bundle_raw_bytes":
        manifest["total"]["bytes"], "runtime_transfer_bytes": wire["runtime_bytes"],
        "load_ms": here["load_ms"]}, indent=2) + "\n")
    page.screenshot(path=str(out / "edge_device_mode.png"), full_page=True)


def test_offline_after_loading_still_recommends_and_follows_clicks(service, page):
    open_device_mode(page, service)
    aborted: list[str] = []
    page.context.set_offline(True)
    page.route("**/*", lambda route: (aborted.append(route.request.url), route.abort()))
    recs = page.locator("#device-recs")
    for n in (1, 2):
        before = recs.locator("li").evaluate_all("els => els.map(e => e.dataset.item)")
        clicked = before[0]
        recs.locator("li").first.locator("button.item").click()
        expect(recs).to_have_attribute("data-history-length", str(n))
        expect(page.locator("#device-history li")).to_have_count(n)
        after = recs.locator("li").evaluate_all("els => els.map(e => e.dataset.item)")
        assert len(after) == 10 and clicked not in after and after != before
    expect(page.locator("#device-agree")).to_contain_text("server unreachable")
    assert aborted and all("/v1/recommend" in u for u in aborted)  # only the comparison
    page.locator("#device-compare").uncheck()  # now nothing at all leaves the page
    aborted.clear()
    recs.locator("li").first.locator("button.item").click()
    expect(recs).to_have_attribute("data-history-length", "3")
    expect(page.locator("#device-agree")).to_contain_text("stayed on this device")
    assert aborted == []
    assert len(page.evaluate("window.liverecEdge.history.list()")) == 3


def test_new_items_arrive_as_rows_and_stay(service, page):
    open_device_mode(page, service)
    later: list[str] = []
    page.on("request", lambda r: later.append(r.url))
    item = {"item_id": "new item/ü 1", "title": "A brand-new thing", "attributes": ["c1"]}
    assert httpx.post(f"{service}/v1/items", json=item).status_code == 200
    page.locator("#device-update").click()
    expect(page.locator("#device-added")).to_have_attribute("data-added", "1")
    assert [u for u in later if "/edge/" in u and "/v1/edge/" not in u] == []  # no re-download
    assert sum("/v1/edge/items" in u for u in later) == 1
    rows = httpx.get(f"{service}/v1/edge/items").json()["items"]
    here = page.evaluate("Array.from(window.liverecEdge.rec.table.added)")
    assert here == rows[0]["vector"]  # the service's row, bit for bit (float32)
    got = page.evaluate("""async (id) => {
        const rec = window.liverecEdge.rec;
        const all = (await rec.recommend([id], { k: rec.rows })).items.map((i) => i.item_id);
        const other = (await rec.recommend([rec.ids[0]], { k: rec.rows })).items;
        return { masked: !all.includes(id), scored: other.some((i) => i.item_id === id) };
    }""", item["item_id"])
    assert got == {"masked": True, "scored": True}
    later.clear()
    page.reload()
    page.wait_for_function("window.liverecEdge !== undefined")
    expect(page.locator("#device-added")).to_have_attribute("data-added", "1")
    assert not any("/v1/edge/items" in u for u in later)  # kept in localStorage


def test_a_flag_set_on_the_server_leaves_the_device_list_after_update(service, page):
    open_device_mode(page, service)
    recs = page.locator("#device-recs")
    target = recs.locator("li").first.get_attribute("data-item")
    later: list[str] = []
    page.on("request", lambda r: later.append(r.url))
    try:
        r = httpx.patch(f"{service}/v1/items/{target}", json={"unsafe": True})
        assert r.status_code == 200 and r.json()["unsafe"] is True
        page.locator("#device-update").click()
        expect(page.locator("#device-added")).to_have_attribute("data-hidden", "1")
        expect(recs.locator(f'li[data-item="{target}"]')).to_have_count(0)
        expect(recs.locator("li")).to_have_count(10)
        expect(page.locator("#device-agree")).to_have_text("10 of 10 items in common")
        assert sum("/v1/edge/hidden" in u for u in later) == 1
        anywhere = page.evaluate("""async (id) => {
            const rec = window.liverecEdge.rec;
            const lists = await Promise.all(rec.ids.slice(0, 20).map(
                (h) => rec.recommend([h], { k: rec.rows })));
            return lists.some((l) => l.items.some((i) => i.item_id === id));
        }""", target)
        assert anywhere is False
        later.clear()
        page.reload()
        page.wait_for_function("window.liverecEdge !== undefined")
        expect(page.locator("#device-added")).to_have_attribute("data-hidden", "1")
        expect(recs.locator("li")).to_have_count(10)
        expect(recs.locator(f'li[data-item="{target}"]')).to_have_count(0)
        assert not any("/v1/edge/hidden" in u for u in later)  # kept in localStorage
    finally:
        httpx.patch(f"{service}/v1/items/{target}", json={"unsafe": False})
