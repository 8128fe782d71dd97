"""The status page in a real browser: Playwright driving Debian's chromium (issue #13).

A real ingress process serves /ui; the page must show a job that just failed (linking to its
transition history) and update by itself after a new job completes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from shared.embedded import free_port
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

OPERATOR_TOKEN = "op-" + "7f3a9c1e5b2d4f60"
CHROMIUM = "/usr/bin/chromium"  # Debian's package; scripts/services installs it
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    created = Stack.create(tmp_path)
    yield created
    created.close()


@pytest.fixture
def ui_url(stack: Stack) -> str:
    port = free_port()
    stack.spawn(
        "ingress",
        ["ingress", "--host", "127.0.0.1", "--port", str(port)],
        CONVEYOR_UI_REFRESH_S="1",
        CONVEYOR_OPERATOR_TOKEN=OPERATOR_TOKEN,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=60, what="the ingress")
    return url


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium missing: run scripts/services"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _sign_in(page: Page, url: str, token: str) -> None:
    page.goto(f"{url}/ui")
    expect(page).to_have_url(f"{url}/ui/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")


def test_the_page_shows_a_failure_and_updates_after_a_completion(
    stack: Stack, ui_url: str, browser: Browser
) -> None:
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=2)
    failed = stack.submit(payload={"fail_permanently": True})
    assert stack.wait_state(failed["id"], timeout=60).state == "failed"

    page = browser.new_page()
    _sign_in(page, ui_url, stack.new_api_key(admin=True))
    expect(page).to_have_url(f"{ui_url}/ui")
    failures = page.locator("#failures")
    expect(failures).to_contain_text(failed["id"])
    expect(failures).to_contain_text("injected")  # the error code
    default_pool = page.locator("tr[data-pool=default]")
    expect(default_pool.locator("td.failed")).to_have_text("1")

    page.click(f"a[href='/ui/jobs/{failed['id']}']")
    expect(page.locator("#state")).to_have_text("failed")
    expect(page.locator("#events")).to_contain_text("running")
    expect(page.locator("#events")).to_contain_text("injected")

    page.goto(f"{ui_url}/ui")
    succeeded_before = int(default_pool.locator("td.succeeded").inner_text())
    done = stack.submit(payload={})
    assert stack.wait_state(done["id"], timeout=60).state == "succeeded"
    # No reload by the test: the page refreshes itself.
    expect(default_pool.locator("td.succeeded")).to_have_text(
        str(succeeded_before + 1), timeout=30_000
    )
    expect(page.locator("tr[data-kind='diag.noop'] td.succeeded")).to_have_text(
        str(succeeded_before + 1), timeout=30_000
    )


def test_only_admin_keys_get_in_and_bad_job_ids_are_404(
    stack: Stack, ui_url: str, browser: Browser
) -> None:
    page = browser.new_page()
    _sign_in(page, ui_url, stack.new_api_key(admin=False))
    expect(page.locator("#login-error")).to_be_visible()
    assert httpx.get(f"{ui_url}/ui", follow_redirects=False, timeout=60).status_code == 303

    _sign_in(page, ui_url, stack.new_api_key(admin=True))
    response = page.goto(f"{ui_url}/ui/jobs/not-a-uuid")
    assert response is not None and response.status == 404
    response = page.goto(f"{ui_url}/ui/jobs/00000000-0000-0000-0000-000000000000")
    assert response is not None and response.status == 404


def test_the_operator_token_opens_the_page_without_an_api_key(ui_url: str) -> None:
    with httpx.Client(base_url=ui_url) as client:
        refused = client.post("/ui/login", data={"token": "op-wrong"})
        assert refused.status_code == 401
        login = client.post("/ui/login", data={"token": OPERATOR_TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/ui"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        page = client.get("/ui")
        assert page.status_code == 200 and 'id="pools"' in page.text
