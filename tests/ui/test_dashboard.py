"""The dashboard in a real browser: Debian's chromium (headless) driven by Playwright.

Opens /ui on a live uvicorn server, opens a user, clicks a recommended item (which posts an
event) and checks that the recommendations are recomputed from the new history; saves a
screenshot to test-artifacts/dashboard.png.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
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
    with sync_api.sync_playwright() as p:
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
