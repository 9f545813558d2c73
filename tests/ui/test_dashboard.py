"""The dashboard in a real browser: Debian's chromium (headless) driven by Playwright.

Opens /ui on a live uvicorn server, opens a user, clicks a recommended item (which posts an
event) and checks that the recommendations are recomputed from the new history; saves a
screenshot to test-artifacts/dashboard.png.
"""

from __future__ import annotations

import httpx
import pytest
from tests.ui.browser import CHROMIUM, sync_playwright

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install 'liverec[dev]')")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

expect = sync_api.expect


def _items(page) -> list[str]:
    return page.locator("#recs li").evaluate_all("els => els.map(e => e.dataset.item)")


@pytest.fixture
def page(request):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 960})
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def test_dashboard_click_refreshes_recommendations(live_server, page, request):
    first = httpx.get(f"{live_server}/v1/recommend", params={"user_id": "x", "k": 2}).json()
    seen = [i["item_id"] for i in first["items"]]  # two popular items as alice's history
    events = [{"user_id": u, "item_id": i} for u in ("bob", "alice") for i in seen]
    assert httpx.post(f"{live_server}/v1/events", json=events).status_code == 200

    page.goto(f"{live_server}/ui?poll=300")
    expect(page.locator("#model-facts")).to_contain_text("sasrec")
    expect(page.locator("#metrics")).to_contain_text("NDCG@10")
    expect(page.locator("#curve-box")).to_be_visible()

    page.locator("#active-users button", has_text="alice").click()  # pick a recent user
    expect(page.locator("#user-input")).to_have_value("alice")
    recs = page.locator("#recs")
    expect(recs).to_have_attribute("data-events-seen", "2")
    expect(page.locator("#history li")).to_have_count(2)
    before = _items(page)
    assert len(before) == 10 and not set(before) & set(seen)
    expect(page.locator("#recs .reason").first).not_to_be_empty()

    clicked = before[0]
    title = httpx.get(f"{live_server}/v1/items/{clicked}").json()["title"]
    page.locator("#recs li").first.locator("button.item").click()
    expect(recs).to_have_attribute("data-events-seen", "3")
    expect(page.locator("#history li").first).to_have_text(title)
    after = _items(page)
    assert clicked not in after and after != before
    stored = httpx.get(f"{live_server}/v1/users/alice").json()["history"]
    assert [e["item_id"] for e in stored] == [*seen, clicked]

    page.locator("#recs li").first.locator("button.why").click()
    expect(page.locator("#explain")).to_be_visible()
    expect(page.locator("#explain-bars li")).to_have_count(3)
    expect(page.locator("#explain-reason")).not_to_be_empty()
    expect(page.locator("#stat-p50")).to_contain_text("ms")
    expect(page.locator("#stat-cache")).to_contain_text("%")

    out = request.config.rootpath / "test-artifacts"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / "dashboard.png"), full_page=True)


def _category(base: str, item: str) -> str:
    attrs = httpx.get(f"{base}/v1/items/{item}").json()["attributes"]
    return next(a for a in attrs if a.startswith("category:"))


def test_dashboard_shows_the_rules_and_switches_them_per_request(live_server_rules, page,
                                                                 request):
    base = live_server_rules
    popular = [i["item_id"] for i in httpx.get(f"{base}/v1/recommend", params={
        "user_id": "x", "k": 2, "rerank": "false"}).json()["items"]]
    events = [{"user_id": "carol", "item_id": i} for i in popular]
    assert httpx.post(f"{base}/v1/events", json=events).status_code == 200

    page.goto(f"{base}/ui?poll=300")
    rules = page.locator("#rules li")
    expect(rules).to_have_count(8)
    box = {name: page.locator(f'#rules input[data-rule="{name}"]') for name in (
        "flags", "deny", "allow", "attributes", "category_caps", "mmr", "calibration",
        "exposure")}
    for name in ("flags", "deny"):  # always on: shown ticked, cannot be switched off
        expect(box[name]).to_be_checked()
        expect(box[name]).to_be_disabled()
    for name in ("category_caps", "mmr"):
        expect(box[name]).to_be_checked()
        expect(box[name]).to_be_enabled()
    expect(box["calibration"]).not_to_be_checked()
    expect(box["calibration"]).to_be_enabled()
    expect(box["allow"]).to_be_disabled()  # not set by the deployment: nothing to try
    expect(page.locator("#rules")).to_contain_text("lambda 0.2")

    page.locator("#user-input").fill("carol")
    page.locator("#user-form button[type=submit]").click()
    applied = page.locator("#rules-applied")
    expect(applied).to_have_attribute("data-applied", "flags,deny,category_caps,mmr")
    expect(applied).to_contain_text("MMR λ 0.2")
    items = _items(page)
    assert len(items) == 10 and "I001" not in items  # denied
    cats = [_category(base, i) for i in items]
    assert max(cats.count(c) for c in cats) <= 3

    box["mmr"].uncheck()
    expect(applied).to_have_attribute("data-applied", "flags,deny,category_caps")
    expect(applied).to_contain_text("switched off: mmr")
    box["category_caps"].uncheck()
    expect(applied).to_have_attribute("data-applied", "flags,deny")
    plain = httpx.get(f"{base}/v1/recommend", params=[
        ("user_id", "carol"), ("k", 10), ("rules_off", "category_caps"),
        ("rules_off", "mmr")]).json()
    expect(page.locator("#recs li").first).to_have_attribute(
        "data-item", plain["items"][0]["item_id"])
    assert _items(page) == [i["item_id"] for i in plain["items"]]  # the page's own request
    box["calibration"].check()
    expect(applied).to_have_attribute("data-applied", "flags,deny,calibration")

    # an item flagged through the API leaves the page's list at its next load
    top = _items(page)[0]
    assert httpx.patch(f"{base}/v1/items/{top}", json={"unsafe": True}).status_code == 200
    page.locator("#user-form button[type=submit]").click()
    expect(page.locator(f'#recs li[data-item="{top}"]')).to_have_count(0)
    expect(page.locator("#rules-hidden")).to_contain_text("2 items hidden")

    out = request.config.rootpath / "test-artifacts"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / "dashboard_rules.png"), full_page=True)
