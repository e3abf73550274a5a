"""End-to-end tests of the dashboard in Debian's headless Chromium (Playwright).

One real ``iomt`` app (``create_app``) is served by uvicorn on a free loopback port, on a
SQLite database seeded through the store's CRUD functions (see ``dashboard_seed.py``). One
browser serves the whole module; each test opens its own context (cookie jar). Screenshots
go to the test's tmp dir and are copied to ``reports/screenshots/`` for people to look at.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from dashboard_seed import PASSWORD, Seeded, seed
from playwright import sync_api
from pydantic import SecretStr

from iomt.api.app import create_app
from iomt.config import Settings
from iomt.store import crud
from iomt.store.db import init_db, session_factory

pytestmark = pytest.mark.browser

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPORTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots"

if not CHROMIUM.exists():  # pragma: no cover - the CI script installs it
    pytest.fail("Debian's chromium is missing: apt-get install -y chromium", pytrace=False)


@dataclass
class Served:
    """The running app: its base URL, seeded ids and a database session factory."""

    url: str
    seeded: Seeded
    sessions: Any
    shots: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Seed a database, then serve the real app with uvicorn on a free loopback port."""
    data_dir = tmp_path_factory.mktemp("iomt-dashboard")
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'iomt.db'}",
        mqtt_port=0,
        secret_key=SecretStr("dashboard-test-key-" + "x" * 32),
    )
    engine = init_db(settings.resolved_database_url)
    sessions = session_factory(engine)
    with sessions() as session:
        seeded = seed(session, image_root=data_dir / "images")

    app = create_app(settings, start_ingest=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the iomt app did not start")
        time.sleep(0.05)
    shots = tmp_path_factory.mktemp("screenshots")
    try:
        yield Served(f"http://127.0.0.1:{port}", seeded, sessions, shots)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (closed before other modules' async tests run)."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_as(browser: Any, served: Served) -> Iterator[Callable[..., Any]]:
    """Log in through the form as a user; returns the page (closed after the test)."""
    contexts: list[Any] = []
    problems: list[str] = []  # script errors and Content-Security-Policy violations

    def watch(page: Any) -> None:
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )

    def login(username: str, *, width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.on("page", watch)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{served.url}/login")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("domcontentloaded")
        return page

    yield login
    for context in contexts:
        context.close()
    assert not problems, problems


def shot(served: Served, page: Any, name: str) -> None:
    """Save a full-page screenshot in the tmp dir and copy it to reports/screenshots/."""
    path = served.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    REPORTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, REPORTS / path.name)


def _post_readings(served: Served, device_id: str, readings: list[dict[str, Any]]) -> int:
    """Send a batch over the device HTTP API with the device's Basic credentials."""
    secret = served.seeded.device_secrets[device_id]
    request = urllib.request.Request(
        f"{served.url}/api/devices/{device_id}/readings",
        data=json.dumps({"readings": readings}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{device_id}:{secret}".encode()).decode(),
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


# --------------------------------------------------------------------------------- tests


def test_each_role_logs_in_to_its_own_start_page(
    open_as: Callable[..., Any], served: Served
) -> None:
    page = open_as("admin")
    assert page.url.endswith("/admin")
    assert page.locator("h1").inner_text() == "Administration"
    page = open_as("ada")
    assert page.url.endswith("/ward")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    assert page.context.cookies() == []
    page.goto(f"{served.url}/ward")
    assert "/login" in page.url
    page = open_as("alice")
    assert page.url.endswith("/me")
    assert "Alice Critical" in page.locator("h1").inner_text()
    shot(served, page, "login-patient-self-view")


def test_wrong_password_is_refused_without_a_cookie(browser: Any, served: Served) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{served.url}/login")
    shot(served, page, "login")
    page.fill("#username", "ada")
    page.fill("#password", "not-the-password")
    with page.expect_response(
        lambda r: r.url.endswith("/login") and r.request.method == "POST"
    ) as info:
        page.click("button[type=submit]")
    assert info.value.status == 401
    assert "Wrong user name or password" in page.inner_text("#login-error")
    assert context.cookies() == []
    # Pages need a session: they send the browser to the login form.
    page.goto(f"{served.url}/ward")
    assert "/login?next=%2Fward" in page.url
    context.close()


def test_session_cookie_is_httponly_strict_jwt(open_as: Callable[..., Any]) -> None:
    page = open_as("ada")
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"].count(".") == 2  # a JWT, the same the JSON API accepts
    response = page.request.get(
        page.url.replace("/ward", "/api/auth/me"),
        headers={"Authorization": f"Bearer {cookie['value']}"},
    )
    assert response.ok and response.json()["name"] == "ada"
    assert page.evaluate("document.cookie") == ""  # not readable by scripts


def test_ward_lists_only_assigned_patients_by_urgency(
    open_as: Callable[..., Any], served: Served
) -> None:
    page = open_as("ada")
    rows = page.locator("#ward-table tbody tr")
    names = [rows.nth(i).locator("th a").inner_text() for i in range(rows.count())]
    # Seeded in the order Cara, Bert, Alice (ids 1, 2, 3): urgency reverses it.
    assert names == ["Alice Critical", "Bert Mild", "Cara Well"]
    levels = [rows.nth(i).get_attribute("data-level") for i in range(rows.count())]
    assert levels == ["critical", "mild", "normal"]
    first = rows.nth(0).inner_text()
    assert "Critical" in first and "1 online" in first
    assert "1 offline" in rows.nth(2).inner_text()  # Cara's band went silent
    shot(served, page, "ward-clinician")
    page = open_as("bob")
    names = page.locator("#ward-table tbody th a").all_inner_texts()
    assert names == ["Bert Mild"]


def test_patient_page_charts_windows_explanation_and_audit(
    open_as: Callable[..., Any], served: Served
) -> None:
    page = open_as("ada")
    page.click("text=Alice Critical")
    page.wait_for_load_state("domcontentloaded")
    assert page.locator("h1").inner_text() == "Alice Critical"
    charts = page.locator("svg.chart")
    assert charts.count() == 4
    titles = page.eval_on_selector_all("svg.chart > title", "els => els.map(e => e.textContent)")
    assert [t.split(" (")[0] for t in titles] == [
        "Temperature",
        "SpO\u2082",
        "Heart rate",
        "Respiratory rate",
    ]
    # Triage windows are shaded with a pattern and a letter, not colour alone.
    spo2 = page.locator("#chart-spo2")
    assert spo2.locator("g.window.level-critical").count() >= 1
    letters = spo2.locator("g.level-critical text.window-letter").all_text_contents()
    assert "C" in letters
    assert spo2.locator("polyline.series").count() >= 1
    verdict = page.locator("#latest-verdict")
    assert "Critical" in verdict.inner_text()
    assert "-> critical (firing strength" in verdict.inner_text()  # the strongest FLCD rule
    spo2_row = verdict.locator("table.categories tr", has_text="spo2")
    assert "critical (membership" in spo2_row.inner_text()
    assert "NEWS2" in verdict.inner_text()
    assert page.locator("#studies-table").get_by_text("covid").count() == 1
    shot(served, page, "patient-clinician")
    with served.sessions() as session:
        rows = crud.list_audit(
            session,
            patient_id=served.seeded.patients["alice"],
            actor_user_id=served.seeded.users["ada"],
        )
    assert any(r.resource.endswith(f"/patients/{served.seeded.patients['alice']}") for r in rows)


def test_study_page_heatmap_toggle_and_model_version(
    open_as: Callable[..., Any], served: Served
) -> None:
    page = open_as("ada")
    page.goto(f"{served.url}/studies/{served.seeded.study_id}")
    page.wait_for_function("document.getElementById('study-image').naturalWidth > 0")
    page.wait_for_function("document.getElementById('heatmap').naturalWidth > 0")
    text = page.locator("main").inner_text()
    assert "91.0%" in text and "0.420" in text and "version fixture-1" in text
    assert page.locator("svg.boxes rect").count() == 1

    def heat_opacity() -> float:
        return float(page.eval_on_selector("#heatmap", "e => getComputedStyle(e).opacity"))

    page.wait_for_timeout(300)  # the CSS transition
    assert heat_opacity() > 0.3
    shot(served, page, "study-heatmap-on")
    page.keyboard.press("Tab")  # the toggle is reachable and operable by keyboard
    page.focus("#heatmap-toggle")
    page.keyboard.press("Space")
    page.wait_for_timeout(300)
    assert heat_opacity() == 0.0
    shot(served, page, "study-heatmap-off")
    # The heatmap is served coloured and see-through (RGBA), from the grayscale map stored.
    response = page.request.get(page.eval_on_selector("#heatmap", "e => e.src"))
    assert response.ok and response.headers["content-type"] == "image/png"
    assert response.body()[25] == 6  # PNG colour type 6: RGBA


def test_smear_analysed_by_the_shipped_model_shows_its_card(
    open_as: Callable[..., Any], served: Served
) -> None:
    # The seed uploads a blood smear for Bert and runs the platform's real ONNX step on it.
    assert served.seeded.smear_study_id, "no microscopy model registered under models/"
    page = open_as("ada")
    page.goto(f"{served.url}/studies/{served.seeded.smear_study_id}")
    page.wait_for_function("document.getElementById('study-image').naturalWidth > 0")
    text = page.locator("main").inner_text()
    assert "Microscopy" in text and "wbc-types-iomtnet_s-v2" in text
    assert "Test accuracy" in text  # the held-out report of the model card
    assert page.locator("#heatmap").count() == 1
    page.wait_for_function("document.getElementById('heatmap').naturalWidth > 0")
    page.wait_for_timeout(300)  # the CSS transition
    shot(served, page, "study-smear-shipped-model")


def test_alert_appears_live_and_is_acknowledged(
    open_as: Callable[..., Any], served: Served
) -> None:
    page = open_as("ada")
    page.goto(f"{served.url}/alerts")
    page.wait_for_selector("[data-feed-status][data-state=live]")
    ward = page.context.new_page()  # the ward, open beside the feed, re-sorts itself
    ward.goto(f"{served.url}/ward")
    cara = str(served.seeded.patients["cara"])
    assert ward.locator("#ward-table tbody tr").nth(2).get_attribute("data-patient-id") == cara
    open_before = page.locator("#open-alerts li.alert-item").count()
    badge_before = int(page.inner_text("[data-open-count]"))
    # Cara's band (silent for 30 minutes) sends a deteriorated window, then a reading of the
    # next window closes it: the triage step judges it and the alert rule fires.
    now = datetime.now(UTC)
    window = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    first = window - timedelta(minutes=15)
    bad = {"temperature": 104.9, "spo2": 82, "heart_rate": 150, "resp_rate": 36}
    readings = [
        {
            "seq": 900_000 + 4 * i + j,
            "kind": kind,
            "value": value,
            "time": (first + timedelta(minutes=i)).isoformat(),
        }
        for i in range(10)
        for j, (kind, value) in enumerate(bad.items())
    ]
    assert _post_readings(served, "band-cara", readings) == 200
    later = (window + timedelta(seconds=5)).isoformat()
    closing = {"seq": 900_100, "kind": "spo2", "value": 83, "time": later}
    assert _post_readings(served, "band-cara", [closing]) == 200
    new_item = page.locator("#open-alerts li.alert-item.new").first
    new_item.wait_for(timeout=15_000)
    assert page.locator("#open-alerts li.alert-item").count() == open_before + 1
    assert "Cara Well" in new_item.inner_text()
    assert int(page.inner_text("[data-open-count]")) == badge_before + 1
    shot(served, page, "alerts-live")
    ward.wait_for_function(
        "id => document.querySelector('#ward-table tbody tr').dataset.patientId !== undefined"
        " && [...document.querySelectorAll('#ward-table tbody tr')].findIndex("
        "r => r.dataset.patientId === id) < 2",
        arg=cara,
    )
    shot(served, ward, "ward-after-live-alert")
    alert_id = int((new_item.get_attribute("id") or "alert-0").removeprefix("alert-"))
    new_item.get_by_role("button", name="Acknowledge").click()
    new_item.get_by_text("Acknowledged by Dr Ada Lovelace").wait_for()
    assert page.url.endswith("/alerts")  # no reload, no navigation
    shot(served, page, "alerts-acknowledged")
    with served.sessions() as session:
        alert = crud.get_alert(session, alert_id=alert_id)
        assert alert.patient_id == served.seeded.patients["cara"]
        assert alert.acknowledged_by == served.seeded.users["ada"]


def test_patient_cannot_open_another_patients_pages(
    open_as: Callable[..., Any], served: Served
) -> None:
    page = open_as("bert")
    alice = served.seeded.patients["alice"]
    for path in (
        f"/patients/{alice}",
        f"/studies/{served.seeded.study_id}",
        f"/studies/{served.seeded.study_id}/image",
        f"/studies/{served.seeded.study_id}/findings/{served.seeded.finding_id}/heatmap.png",
        "/patients/9999",
    ):
        response = page.goto(served.url + path)
        assert response is not None and response.status in (403, 404), path
        body = page.content()
        assert "Alice" not in body and "MRN-1002" not in body and "covid" not in body, path
    assert page.goto(f"{served.url}/alerts").status == 403
    assert page.goto(f"{served.url}/admin").status == 403
    shot(served, page, "patient-denied")
    # A clinician not assigned to Alice is refused the same way.
    page = open_as("bob")
    response = page.goto(f"{served.url}/patients/{alice}")
    assert response is not None and response.status in (403, 404)
    assert "Alice" not in page.content()
    # Bob cannot acknowledge Alice's alert either.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    ack = page.request.post(
        f"{served.url}/alerts/{served.seeded.open_alert_id}/ack",
        form={"csrf": csrf or ""},
        headers={"Accept": "application/json"},
    )
    assert ack.status in (403, 404)


def test_admin_registers_a_device_and_sees_its_secret_once(
    open_as: Callable[..., Any], served: Served
) -> None:
    page = open_as("admin")
    assert "spo2=180 % is outside the plausible range" in page.inner_text("#dead-letters")
    page.fill("#d-id", "band-new-1")
    page.select_option("#d-kind", "wearable")
    page.select_option("#d-patient", str(served.seeded.patients["cara"]))
    page.get_by_role("button", name="Register device").click()
    secret = page.inner_text("#new-device-secret")
    assert len(secret) >= 32
    shot(served, page, "admin-device-registered")
    with served.sessions() as session:
        from iomt.store.credentials import verify_device_secret

        assert verify_device_secret(session, "band-new-1", secret) is not None
    page.goto(f"{served.url}/admin")
    assert secret not in page.content()  # shown once only
    page.select_option("#a-clin", label="Dr Bob Bell")
    page.select_option("#a-patient", str(served.seeded.patients["cara"]))
    page.get_by_role("button", name="Assign", exact=True).click()
    assert "Clinician assigned." in page.inner_text("main")
    cara_row = page.locator("#patients-table tr", has_text="Cara Well")
    assert "Dr Bob Bell" in cara_row.inner_text()


def test_phone_layout_and_keyboard_access(open_as: Callable[..., Any], served: Served) -> None:
    page = open_as("ada", width=390, height=844)
    for path in ("/ward", f"/patients/{served.seeded.patients['alice']}", "/alerts"):
        page.goto(served.url + path)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, path
    page.goto(f"{served.url}/patients/{served.seeded.patients['alice']}")
    shot(served, page, "patient-phone")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to main content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
              .length"""
    )
    assert unlabeled == 0
