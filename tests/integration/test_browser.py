"""The UI in a real browser: headless Debian Chromium driven by Playwright signs in, writes a
job in the editor, runs it, watches it succeed in the live runs view and finds its rows in
the data preview. Saves a screenshot to docs/ui.png (shown in the README). A run started
through the HTTP API shows live in the Jobs tab (the `status` topic, not a timer).

`make test` installs Debian's chromium when it can (root + apt-get); only where no browser can
run at all does this test skip, saying why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit.ray import serving

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

CHROMIUM = "/usr/bin/chromium"
TOKEN = "browser-test-token"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the README's picture of the UI: rewritten only when asked (TG_UPDATE_SCREENSHOT=1), so that
# a test run never changes a tracked file
README_SHOT = Path(__file__).resolve().parents[2] / "docs" / "ui.png"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} missing (make test installs Debian's chromium when it can)")
    pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    tmp = tmp_path_factory.mktemp("browser")
    (tmp / "configs" / "jobs").mkdir(parents=True)
    with serving(tmp, TOKEN) as (url, _):
        yield url


def job_yaml(base_url: str) -> str:
    return f"""name: browser_orders
description: "Orders written in the browser"
source:
  url: {base_url}/demo/orders
  params: {{per_page: 500}}
  records: "$.data"
  paginate: {{type: page}}
destination: {{table: browser_orders, write: merge, primary_key: [id]}}
"""


def pick(page: object, elem_id: str, value: str) -> None:
    """Choose `value` in a Gradio dropdown."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    page.locator("ul[role='listbox'] li", has_text=value).first.click()


def test_sign_in_write_a_job_run_it_and_see_its_rows(base_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shot = README_SHOT if os.environ.get("TG_UPDATE_SCREENSHOT") == "1" else tmp_path / "ui.png"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            # not signed in: the login page; a wrong token is refused
            page.goto(f"{base_url}/")
            expect(page).to_have_url(f"{base_url}/login?next=%2F")
            page.fill("#token", "wrong")
            page.click("#sign-in")
            expect(page.locator(".error")).to_contain_text("not right")
            page.fill("#token", TOKEN)
            page.click("#sign-in")
            expect(page.locator("#jobs-table")).to_be_visible()

            # the editor: a mistake is shown by field, then the fixed job validates and saves
            page.get_by_role("tab", name="Editor").click()
            editor = page.locator("#editor .cm-content")
            editor.click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(job_yaml(base_url).replace("write: merge", "write: upsert"))
            page.click("#validate")
            expect(page.locator("#editor-errors")).to_contain_text("destination.write")
            editor.click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(job_yaml(base_url))
            page.click("#validate")
            expect(page.locator("#editor-status")).to_contain_text("Valid")
            page.click("#save")
            expect(page.locator("#editor-status")).to_contain_text("browser_orders")

            # run it now from the jobs tab, watch it succeed in the live runs view
            page.get_by_role("tab", name="Jobs").click()
            pick(page, "job-select", "browser_orders")
            page.click("#run-now")
            expect(page.locator("#jobs-status")).to_contain_text("browser_orders")
            page.get_by_role("tab", name="Runs").click()
            # the grid's rows (Gradio also renders hidden copies for measuring)
            row = page.locator("#runs-table").get_by_role("row", name=re.compile("browser_orders"))
            expect(row.filter(has_text="succeeded").first).to_be_visible(timeout=60_000)

            # its rows in the data preview
            page.get_by_role("tab", name="Data").click()
            pick(page, "table-select", "browser_orders")
            expect(page.locator("#table-preview")).to_contain_text("amount")
            # back to the run: its detail and logs one click away
            page.get_by_role("tab", name="Runs").click()
            row.filter(has_text="succeeded").first.get_by_role("gridcell").first.click()
            expect(page.locator("#run-logs")).to_contain_text("loaded 2500 rows")
            expect(page.locator("#run-detail")).to_contain_text("rows_loaded")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def fill(page: object, elem_id: str, value: str) -> None:
    """Type `value` into a Gradio textbox or number field."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    box = page.locator(f"#{elem_id}").locator("input, textarea").first
    box.fill(value)
    expect(box).to_have_value(value)


def sign_in(page: object, base_url: str) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{base_url}/")
    page.fill("#token", TOKEN)
    page.click("#sign-in")
    expect(page.locator("#jobs-table")).to_be_visible()


def test_build_a_job_with_the_form_test_it_save_it_and_run_it(base_url: str) -> None:
    """The guided form writes the job's YAML into the editor; Test reads 2 pages of it (the
    requests, the stop reason, the sample, the column types), then it saves and runs."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(30_000)
            sign_in(page, base_url)
            page.get_by_role("tab", name="Editor").click()
            page.get_by_text("New job from a form").click()
            # Gradio may reset the fields of an accordion just opened: let it settle first
            page.wait_for_timeout(2000)
            fill(page, "form-name", "browser_form_orders")
            fill(page, "form-url", f"{base_url}/demo/orders")
            fill(page, "form-records", "$.data")
            pick(page, "form-paginate", "page")
            # the page fields show once page is chosen
            fill(page, "form-page-size-param", "per_page")
            fill(page, "form-page-size", "500")
            pick(page, "form-write-mode", "merge")
            fill(page, "form-name", "browser_form_orders")  # still there, if it was reset
            page.click("#form-write")  # merge without a primary key: nothing is written
            expect(page.locator("#form-status")).to_contain_text("Primary key")
            fill(page, "form-primary-key", "id")
            page.click("#form-write")
            expect(page.locator("#form-status")).to_contain_text("Written into the editor")
            editor = page.locator("#editor .cm-content")
            expect(editor).to_contain_text("name: browser_form_orders")
            expect(editor).to_contain_text("size_param: per_page")

            # Test: two pages of the job as the editor holds it, nothing written
            fill(page, "test-pages", "2")
            page.click("#test-job")
            status = page.locator("#test-status")
            expect(status).to_contain_text("page_limit", timeout=60_000)
            expect(status).to_contain_text("1,000 records on 2 pages")
            expect(page.locator("#editor-status")).to_contain_text("Tested job")
            requests = page.locator("#test-requests")
            expect(requests).to_contain_text("/demo/orders")
            expect(requests).to_contain_text("page=2")
            expect(page.locator("#test-sample")).to_contain_text("amount")
            expect(page.locator("#test-columns")).to_contain_text("BIGINT")
            expect(page.locator("#test-next")).to_contain_text("page=3")

            # save it, run it now, see it succeed
            page.click("#save")
            expect(page.locator("#editor-status")).to_contain_text("Created job")
            page.get_by_role("tab", name="Jobs").click()
            pick(page, "job-select", "browser_form_orders")
            page.click("#run-now")
            expect(page.locator("#jobs-status")).to_contain_text("browser_form_orders")
            page.get_by_role("tab", name="Runs").click()
            row = page.locator("#runs-table").get_by_role(
                "row", name=re.compile("browser_form_orders")
            )
            expect(row.filter(has_text="succeeded").first).to_be_visible(timeout=60_000)
        finally:
            browser.close()


def test_a_run_started_through_the_api_shows_live_in_the_jobs_tab(base_url: str) -> None:
    """The Jobs tab follows the `status` topic: a run started through the HTTP API (not the
    UI) shows its end in the Recent runs table within 2 s of the API saying so, without a
    reload, and none of the page's 2 s fallback timers ticks meanwhile (the refreshes come
    from the live stream's pulses: with only the timer this test fails)."""
    import time

    import httpx
    from playwright.sync_api import Request, expect, sync_playwright

    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = job_yaml(base_url).replace("browser_orders", "browser_live")
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as api, sync_playwright() as p:
        saved = api.put(
            "/api/jobs/browser_live", content=body, headers={"Content-Type": "application/yaml"}
        )
        assert saved.status_code in (200, 201), saved.text
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            joins: list[tuple[float, Any]] = []  # (when, body) of each Gradio event sent

            def sent(request: Request) -> None:
                if "/queue/join" in request.url:
                    joins.append((time.monotonic(), request.post_data_json))

            page.on("request", sent)
            sign_in(page, base_url)
            page.evaluate("() => { window.tgNotReloaded = true }")
            config = page.evaluate("() => window.gradio_config")
            timers = {c["id"] for c in config["components"] if c["type"] == "timer"}
            (go_live,) = [d for d in config["dependencies"] if d["api_name"] == "go_live"]
            pulse = go_live["outputs"][0]
            # the Jobs timer starts on, as the page's fallback, and is off once the stream
            # connects (at once): from its first period on, none may tick
            page.wait_for_timeout(2500)

            started = time.monotonic()
            run_id = api.post("/api/jobs/browser_live/runs").json()["run_id"]
            state = ""
            while state not in ("succeeded", "failed", "cancelled"):
                assert time.monotonic() - started < 60, f"run {run_id} still {state!r}"
                time.sleep(0.05)
                state = api.get(f"/api/runs/{run_id}").json()["state"]
            ended = time.monotonic()
            assert state == "succeeded", api.get(f"/api/runs/{run_id}").json()
            row = page.locator("#recent-runs").get_by_role("row", name=re.compile(run_id))
            expect(row.filter(has_text="succeeded").first).to_be_visible(timeout=2000)
            shown = time.monotonic() - ended
            print(f"run {run_id} ended after {ended - started:.2f}s; shown {shown:.3f}s later")
            assert shown < 2.0
            assert page.evaluate("() => window.tgNotReloaded === true")  # the same page
            since = [body for at, body in joins if at >= started and body]
            assert not [b for b in since if b.get("trigger_id") in timers], since
            assert [b for b in since if b.get("trigger_id") == pulse], since
        finally:
            browser.close()
