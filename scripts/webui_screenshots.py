"""Screenshots of the web chat of a running `lume serve`: docs/webui-desktop.png (1280x800,
light theme) and docs/webui-phone.png (390x844, dark theme).

    lume serve -m smollm2-135m --port 8080 &
    target/openai-venv/bin/python scripts/webui_screenshots.py [--url http://127.0.0.1:8080] \
        [--key KEY] [--out docs]

Uses the test venv (tests/openai/requirements.txt: playwright) and Debian's chromium
(`apt-get install chromium`; --chromium to point elsewhere). The replies are the model's own
(greedy, so the same model gives the same pictures).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 120_000


def chat(page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator("#send")).to_be_visible(timeout=TIMEOUT_MS)


def settings(page, system: str = "", **values) -> None:
    page.click("#open-settings")
    page.fill("#set-system", system)
    for k, v in values.items():
        page.fill(f"#set-{k}", str(v))
    page.click("#settings-save")
    expect(page.locator("#settings-dialog")).to_be_hidden()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--key", default=os.environ.get("LUME_API_KEY", ""))
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    if not Path(args.chromium).exists():
        print(f"no Chromium at {args.chromium}: apt-get install chromium chromium-driver",
              file=sys.stderr)
        return 1
    url = args.url.rstrip("/") + "/"
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True)
        ctx = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
        if args.key:
            ctx.add_init_script(f"localStorage.setItem('lume.apiKey', {json.dumps(args.key)});")
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        expect(page.locator("#model-info")).not_to_have_text("connecting…")
        settings(page, temperature=0, max_tokens=48)
        chat(page, "What is the capital of France?")
        page.click("#new-chat")
        settings(page, system="You are a helpful coding assistant.", temperature=0,
                 max_tokens=160, seed=1)
        chat(page, "Write a Python function that reverses a string.")
        page.mouse.move(0, 0)
        desktop = args.out / "webui-desktop.png"
        page.screenshot(path=str(desktop))

        # The same storage at phone width, in the dark theme.
        state = ctx.storage_state()
        phone = browser.new_context(viewport={"width": 390, "height": 844},
                                    color_scheme="dark", storage_state=state, has_touch=True)
        p2 = phone.new_page()
        p2.set_default_timeout(TIMEOUT_MS)
        p2.goto(url)
        expect(p2.locator("#model-info")).not_to_have_text("connecting…")
        expect(p2.locator("article.msg.assistant").last).to_be_visible()
        phone_png = args.out / "webui-phone.png"
        p2.screenshot(path=str(phone_png))
        browser.close()
    for f in (desktop, phone_png):
        print(f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}: {f.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
