"""One user's session in Open WebUI, in a real Chromium driven by Playwright; run by tests/test_chat_ui_browser.py
with the Open WebUI venv's python (Playwright is not in ./venv): `python browser_flow.py SPEC.json`.

It signs in, picks a model and chats, uploads a document and asks about it, and prints one JSON object of what it
saw (the test asserts on it); on a step that fails it prints the step, the error and the page's text instead, and
leaves a screenshot beside the spec. The page's "network idle" never comes (a socket stays open): it waits for
elements.

SPEC: {"url", "chromium", "user_data_dir", "email", "password", "model", "message", "document", "question",
"answer_marker", "rag_marker", "screenshot", "args": [chromium switches]}
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

STEP_TIMEOUT_MS = 60_000


def close_whats_new(page: Page, wait_ms: int) -> bool:
    """The first sign-in shows a "What's New" dialog over the page, just after the page: close it when it comes."""
    button = page.get_by_role("button", name="Okay, Let's Go!")
    try:
        button.wait_for(timeout=wait_ms)
    except PlaywrightTimeout:
        return False
    button.click()
    button.wait_for(state="hidden")
    return True


# Chromium drops every request in flight when the machine's network changes (net::ERR_NETWORK_CHANGED): the
# suite's Docker engines add and remove bridges beside this test, and the page then shows "500: Internal Error".
# A page that did not come up is loaded again, a few times; what the user does is never repeated.
LOAD_TRIES = 4
LOAD_WAIT_MS = 20_000


def load_until(page: Page, css: str, seen: dict[str, Any], url: str | None = None) -> None:
    """Go to url (or stay) until the element `css` shows, reloading a page the network change broke."""
    for attempt in range(1, LOAD_TRIES + 1):
        if url is not None and attempt == 1:
            page.goto(url, wait_until="domcontentloaded")
        elif attempt > 1:
            seen.setdefault("reloads", []).append(css)
            page.reload(wait_until="domcontentloaded")
        try:
            page.locator(css).first.wait_for(timeout=LOAD_WAIT_MS)
            return
        except PlaywrightTimeout:
            if attempt == LOAD_TRIES:
                raise


def ask(page: Page, text: str, index: int, marker: str) -> str:
    """Type `text` into the chat box and send it; the index-th answer, once it holds marker."""
    page.locator("#chat-input").click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    return assistant_text(page, index, marker)


def assistant_text(page: Page, index: int, marker: str) -> str:
    """The text of the index-th answer on the page, once it holds marker and has stopped growing."""
    answer = page.locator(".chat-assistant").nth(index)
    answer.get_by_text(marker, exact=False).first.wait_for(timeout=STEP_TIMEOUT_MS)
    text, deadline = str(answer.inner_text()), time.monotonic() + 10
    while time.monotonic() < deadline:  # the stream may still be adding its last pieces
        time.sleep(0.3)
        now = str(answer.inner_text())
        if now == text:
            break
        text = now
    return text


def run(spec: dict[str, Any], seen: dict[str, Any]) -> None:
    step = seen.setdefault("steps", [])
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            spec["user_data_dir"],
            executable_path=spec["chromium"],
            headless=True,
            args=spec["args"],
            viewport={"width": 1280, "height": 800},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            errors = seen.setdefault("page_errors", [])
            page.on("pageerror", lambda exc: errors.append(str(exc)[:500]))
            page.on("console", lambda m: errors.append(m.text[:500]) if m.type == "error" else None)
            started = time.monotonic()

            step.append("sign-in page")
            load_until(page, "#email", seen, spec["url"] + "/auth")
            page.locator("#password").wait_for()
            seen["sign_in_heading"] = page.locator("form").first.inner_text()
            seen["signup_buttons"] = page.get_by_role("button", name="Sign up").count()
            seen["signup_text"] = page.get_by_text("Don't have an account?").count()
            seen["name_inputs"] = page.locator("#name").count()

            step.append("sign in")
            for attempt in range(1, LOAD_TRIES + 1):
                if page.locator("#email").count():  # the sign-in form (again, if the network change lost the sign-in)
                    page.locator("#email").fill(spec["email"])
                    page.locator("#password").fill(spec["password"])
                    page.locator("button[type=submit]").click()
                try:
                    page.locator("#chat-input").wait_for(timeout=LOAD_WAIT_MS)
                    break
                except PlaywrightTimeout:
                    if attempt == LOAD_TRIES:
                        raise
                    seen.setdefault("reloads", []).append("sign in")
                    page.reload(wait_until="domcontentloaded")
                    try:
                        page.locator("#email, #chat-input").first.wait_for(timeout=LOAD_WAIT_MS)
                    except PlaywrightTimeout:
                        continue
            seen["whats_new_closed"] = close_whats_new(page, 5000)

            step.append("pick the model")
            selector = page.locator('button[aria-haspopup="listbox"][id^="model-selector-"]').first
            selector.click()
            offered = page.locator('[id^="model-option-"][data-value]')
            offered.first.wait_for()
            seen["offered_models"] = offered.evaluate_all("els => els.map(e => e.dataset.value)")
            offered.and_(page.locator(f'[data-value="{spec["model"]}"]')).click()
            seen["selected_model"] = selector.get_attribute("aria-label")

            step.append("chat")
            seen["chat_answer"] = ask(page, spec["message"], 0, spec["answer_marker"])

            step.append("upload")
            document = Path(spec["document"])
            page.locator("input[type=file][multiple]").first.set_input_files(str(document))
            chips = page.locator("#message-input-container")
            chips.get_by_text(document.name).first.wait_for()
            chips.locator(".spinner_ajPY").first.wait_for(state="detached", timeout=STEP_TIMEOUT_MS)

            step.append("ask about the document")
            seen["rag_answer"] = ask(page, spec["question"], 1, spec["rag_marker"])

            step.append("sources")
            answer = page.locator(".chat-assistant").nth(1)
            sources = answer.get_by_role("button", name="1 Source")
            sources.wait_for()
            sources.click()
            named = answer.locator('[id^="source-"]')
            named.first.wait_for()
            seen["sources"] = [named.nth(i).inner_text().strip() for i in range(named.count())]
            page.screenshot(path=spec["screenshot"])
            seen["seconds"] = round(time.monotonic() - started, 1)
        except Exception as exc:
            seen["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            try:
                seen["page_text"] = page.locator("body").inner_text()[-3000:]
                page.screenshot(path=str(Path(spec["user_data_dir"]).parent / "failed.png"))
            except Exception as again:  # the page itself is gone
                seen["page_text"] = f"(unreadable: {again})"
        finally:
            context.close()


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    seen: dict[str, Any] = {}
    try:
        run(spec, seen)
    except Exception as exc:  # the browser did not start
        seen["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
