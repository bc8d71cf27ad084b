"""The radiologist's loop in a real browser: `radpilot demo` as `make demo` starts it, and
Debian's Chromium driven by Playwright (issue 6).

Sign in, see the worklist ordered by AI priority, watch it update live when dcmtk's
storescu sends a new study, scroll through that CT series, open a flagged study, change
the window, toggle the heatmap, reject with a reason, then find the decision in the
database and the audit log. Screenshots of both pages go to ``test-artifacts/`` (or
``RADPILOT_TEST_ARTIFACTS``). Ctrl-C (SIGINT) must then stop the demo cleanly.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from radpilot.governance.audit import AuditLog
from radpilot.store import Database
from radpilot.store.models_pipeline import AuditEntry, Decision, Feedback
from tests.conftest import SHARED_DATA, free_port, missing, require_tool

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow, pytest.mark.browser]

RADPILOT = str(Path(sys.executable).parent / "radpilot")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("RADPILOT_TEST_ARTIFACTS", REPO / "test-artifacts"))
CANVAS_SUM = """() => {
  const c = document.getElementById('image-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0;
  for (let i = 0; i < d.length; i += 61) s += d[i] + d[i + 1] + d[i + 2];
  return s;
}"""


def chromium() -> str:
    path = os.environ.get("RADPILOT_CHROMIUM") or shutil.which("chromium")
    if path is None:
        missing("Chromium is not installed (apt-get install -y chromium)")
    assert path is not None
    return path


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`radpilot demo` running on its embedded defaults, with the printed sign-in."""
    if not (SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz").is_file():
        missing(f"PneumoniaMNIST not found under {SHARED_DATA}")
    data_dir = tmp_path / "demo"
    dicom_port, http_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            RADPILOT, "--data-dir", str(data_dir), "demo", "--studies", "12",
            "--dicom-port", str(dicom_port), "--http-port", str(http_port),
            "--shared-data", str(SHARED_DATA), "--model", str(REPO / "models/reference/package"),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops"):
            break
    out = "".join(lines)
    if process.poll() is not None or "Ctrl-C stops" not in out:
        process.kill()
        _, err = process.communicate(timeout=30)
        pytest.fail(f"the demo did not come up:\n{out}\n{err[-3000:]}")
    url = re.search(r"Open (http://\S+/worklist)", out)
    login = re.search(r"radiologist\s+(?:user\s+)?(\S+)\s+password\s+(\S+)", out)
    assert url and login, out
    info = {
        "process": process,
        "url": url.group(1),
        "base": url.group(1).removesuffix("/worklist"),
        "username": login.group(1),
        "password": login.group(2),
        "data_dir": data_dir,
        "dicom_port": dicom_port,
        "tmp": tmp_path,
    }
    try:
        yield info
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def send_ct_study(demo: dict[str, Any]) -> None:
    """A small CT phantom series, sent by dcmtk's storescu (an independent client)."""
    folder = demo["tmp"] / "ct"
    subprocess.run(
        [RADPILOT, "synth", str(folder), "--kind", "ct", "--count", "1", "--slices", "12",
         "--size", "128", "--fov", "200", "--seed", "browser-ct"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    files = sorted(str(p) for p in (folder / "ct-0000").rglob("*.dcm"))
    assert len(files) == 12
    subprocess.run(
        [require_tool("storescu"), "-aec", "RADPILOT", "-aet", "CT_SCANNER", "127.0.0.1",
         str(demo["dicom_port"]), *files],
        check=True, capture_output=True, timeout=120, env={**os.environ, "TCP_NODELAY": "1"},
    )  # fmt: skip


def test_radiologist_loop_in_chromium(demo: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(  # leaving a page aborts its event stream; nothing else may fail
            "requestfailed",
            lambda r: (
                None
                if r.url.endswith("/api/events")
                else errors.append(f"request failed: {r.url} {r.failure}")
            ),
        )
        page.on(
            "request",
            lambda r: (
                errors.append(f"external request: {r.url}")
                if not r.url.startswith(demo["base"]) and not r.url.startswith("data:")
                else None
            ),
        )

        # Sign in: the worklist redirects there first.
        page.goto(demo["url"])
        assert "/signin" in page.url
        page.fill("#username", demo["username"])
        page.fill("#password", "wrong password")
        page.click("#signin-form button[type=submit]")
        expect(page.locator("#signin-error")).to_contain_text("Wrong user name or password")
        page.fill("#password", demo["password"])
        page.click("#signin-form button[type=submit]")
        page.wait_for_url("**/worklist")
        rows = page.locator("#worklist-rows tr[data-study-id]")
        expect(rows).to_have_count(12)
        expect(page.locator("#live-status")).to_have_text("live")

        # Ordered by AI priority: critical first, then by score within a tier.
        priorities = [int(r.get_attribute("data-priority") or 0) for r in rows.all()]
        assert priorities == sorted(priorities, reverse=True) and priorities[0] == 3
        scores = [float(s) for s in rows.locator("td.score").all_inner_texts()]
        tiers: dict[int, list[float]] = {}
        for tier, score in zip(priorities, scores, strict=True):
            tiers.setdefault(tier, []).append(score)
        assert all(v == sorted(v, reverse=True) for v in tiers.values())
        expect(rows.first.locator(".badge.critical")).to_have_text("CRITICAL")
        page.screenshot(path=str(ARTIFACTS / "worklist.png"))

        # Live: a new study appears without a reload, the reader's place kept.
        page.evaluate("window.__stayed = 42")
        send_ct_study(demo)
        expect(rows).to_have_count(13, timeout=60_000)
        assert page.evaluate("window.__stayed") == 42
        ct_row = page.locator("#worklist-rows tr", has_text="CT").first

        # Scroll through the CT series.
        ct_row.click()
        page.wait_for_selector("#study[data-ready=true]")
        canvas = page.locator("#image-canvas")
        expect(canvas).to_have_attribute("data-index", "0")
        first = page.evaluate(CANVAS_SUM)
        canvas.hover()
        page.mouse.wheel(0, 120)
        expect(canvas).to_have_attribute("data-index", "1")
        page.keyboard.press("ArrowDown")
        expect(canvas).to_have_attribute("data-index", "2")
        expect(page.locator("#overlay-tl")).to_contain_text("Image 3/12")
        page.wait_for_timeout(300)
        assert page.evaluate(CANVAS_SUM) != first
        page.keyboard.press("3")  # the bone window preset on CT
        expect(canvas).to_have_attribute("data-window", "400.0,1800.0")

        # Open the flagged study: window, heatmap, reject.
        page.goto(demo["url"])
        rows.first.click()
        page.wait_for_selector("#study[data-ready=true]")
        study_id = int(page.locator("#study").get_attribute("data-study-id") or 0)
        expect(page.locator(".result .badge.critical")).to_have_text("CRITICAL")
        expect(page.locator("#overlay-tl")).to_contain_text("AI: heatmap")
        expect(canvas).to_have_attribute("data-heatmap-shown", "true")
        before_window = canvas.get_attribute("data-window")
        before = page.evaluate(CANVAS_SUM)
        box = canvas.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 - 120, box["y"] + box["height"] / 2 + 60)
        page.mouse.up()
        assert canvas.get_attribute("data-window") != before_window
        windowed = page.evaluate(CANVAS_SUM)
        assert windowed != before
        page.keyboard.press("h")
        expect(canvas).to_have_attribute("data-heatmap-shown", "false")
        assert page.evaluate(CANVAS_SUM) != windowed
        page.keyboard.press("h")
        expect(canvas).to_have_attribute("data-heatmap-shown", "true")
        page.screenshot(path=str(ARTIFACTS / "study.png"))
        page.keyboard.press("r")
        expect(page.locator("#decide-reject")).to_have_attribute("aria-pressed", "true")
        page.select_option("#reason-reject", "false_positive")
        page.fill("#free-text", "Thymus, no consolidation.")
        page.click("#decision-submit")
        expect(page.locator("#decision-status")).to_contain_text("Recorded: reject")
        expect(page.locator("#decisions li").first).to_contain_text("reject (false_positive)")
        browser.close()
    assert errors == []

    # The decision went through the API into the database and the audit log.
    db = Database(f"sqlite:///{demo['data_dir'] / 'radpilot.db'}")
    with db.session() as session:
        (stored,) = session.scalars(select(Feedback)).all()
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.kind == "feedback.decision")
        ).one()
    assert (stored.study_pk, stored.decision, stored.reason_code) == (
        study_id, Decision.REJECT, "false_positive",
    )  # fmt: skip
    assert stored.reader == demo["username"] and stored.opened_at is not None
    assert stored.opened_at <= stored.decided_at
    assert entry.actor == demo["username"] and entry.payload["decision"] == "reject"
    assert AuditLog(db).verify().ok
    db.dispose()
    assert (ARTIFACTS / "worklist.png").stat().st_size > 10_000
    assert (ARTIFACTS / "study.png").stat().st_size > 10_000

    # Ctrl-C stops everything cleanly.
    process = demo["process"]
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    assert "radpilot demo: stopped" in err
