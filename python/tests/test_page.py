"""The web page of `ferkit serve` in a real browser (Debian's chromium, headless, driven by
chromedriver through selenium): upload the shared astronaut photo with the page's file input,
wait for the answer, and check that the page shows one face labelled with the CLI's emotion.
Saves a screenshot (FERKIT_SCREENSHOT, default target/tmp/serve-page.png)."""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
PHOTO = SHARED / "data" / "photos" / "astronaut.png"
CASCADE = SHARED / "models" / "haarcascade_frontalface_default.xml"
CLI = ROOT / "target" / "release" / "ferkit"


def need(ok: bool, message: str) -> None:
    if not ok:
        if os.environ.get("FERKIT_REQUIRE_REFERENCES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_page_shows_the_uploaded_photos_face_and_emotion():
    need(PHOTO.exists() and CASCADE.exists(), f"SKIPPED: {PHOTO} or {CASCADE} is absent")
    need(CLI.exists(), "SKIPPED: build the CLI first (cargo build --release)")
    need(shutil.which("chromium") and shutil.which("chromedriver"),
         "SKIPPED: no browser (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        need(False, "SKIPPED: selenium is not installed (pip install selenium)")

    with tempfile.TemporaryDirectory() as out:
        subprocess.run([str(CLI), "predict", str(PHOTO), "--cascade", str(CASCADE), "--out", out], check=True,
                       capture_output=True)
        cli_faces = json.loads(pathlib.Path(out, "predictions.json").read_text())["photos"][0]["faces"]
    assert len(cli_faces) == 1

    port = free_port()
    server = subprocess.Popen([str(CLI), "serve", "--port", str(port), "--cascade", str(CASCADE)],
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.1)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900"]:
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            browser.get(f"http://127.0.0.1:{port}/")
            browser.find_element(By.ID, "file").send_keys(str(PHOTO))
            WebDriverWait(browser, 30).until(
                lambda b: b.find_element(By.ID, "status").get_attribute("data-faces") is not None
            )
            assert browser.find_element(By.ID, "status").get_attribute("data-faces") == "1"
            labels = browser.find_elements(By.CSS_SELECTOR, "#faces h3")
            assert [h.get_attribute("data-emotion") for h in labels] == [cli_faces[0]["emotion"]]
            assert labels[0].text == f"Face 1: {cli_faces[0]['emotion']}"
            bars = browser.find_elements(By.CSS_SELECTOR, "#faces .bar")
            assert len(bars) == 7
            shot = pathlib.Path(os.environ.get("FERKIT_SCREENSHOT", ROOT / "target" / "tmp" / "serve-page.png"))
            shot.parent.mkdir(parents=True, exist_ok=True)
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        finally:
            browser.quit()
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0, server.stderr.read()
