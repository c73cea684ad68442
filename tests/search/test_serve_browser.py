"""The search page in a real browser: headless Chromium driven by Selenium against the real server.

A tiny random-init model indexes the synthetic video (two cameras, 3 s each) and two still
images once; the real FastAPI app (:func:`ian_d2.search.serve.create_app`) runs in a thread on a
free loopback port. The page is then used as a person would: open a video source and a frame
of it, click a person's box, read the results, open one (the frame and the video player seeked
to the hit's time), step with the arrow keys, reload the URL, filter everything out.

Needs ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (Debian: ``apt-get install chromium
chromium-driver``): skipped with that message when they are missing, a failure when ``CI`` is
set. Selenium never downloads anything: the driver and the browser are given by path.

``IAN_D2_SAVE_SCREENSHOT=1`` writes the screenshot of an opened result to
``docs/search_browser.png`` (the picture of docs/SEARCH.md); otherwise to a temporary folder.
"""

import json
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

import pytest

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # reported by _browser_problem
    webdriver = None

from ian_d2.data.synthetic import generate_video
from ian_d2.search import index_gallery
from ian_d2.search.indexer import load_search_model
from tests.search_testing import make_cfg, save_model

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT_S = 20  # every wait is bounded


def _browser_problem():
    """Why the browser test cannot run here (None: it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install chromium chromium-driver"
    if webdriver is None:
        return "selenium is not installed: pip install selenium"
    return None


def _start_server(app):
    """Run ``app`` with uvicorn in a daemon thread on a free 127.0.0.1 port.

    Returns:
        (server, thread, base URL)
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the search server did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _chrome():
    """Headless Chromium by path (selenium-manager never runs: nothing is downloaded)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1100", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    return driver


@pytest.mark.synthetic_cuhk_sysu
class TestSearchPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        problem = _browser_problem()
        if problem:
            if os.environ.get("CI"):
                raise AssertionError(f"the browser test cannot run on CI: {problem}")
            raise unittest.SkipTest(problem)
        from ian_d2.search.serve import create_app

        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        gallery = os.path.join(tmp, "gallery")
        generate_video(os.path.join(gallery, "videos"), size="tiny", seed=0)
        os.makedirs(os.path.join(gallery, "photos"))
        for name in sorted(os.listdir(cls.synthetic.images))[:2]:
            shutil.copy(os.path.join(cls.synthetic.images, name), os.path.join(gallery, "photos"))
        weights = save_model(os.path.join(tmp, "model.pth"))
        cfg = make_cfg(weights)
        cls.index_dir = os.path.join(tmp, "index")
        model = load_search_model(cfg)
        index_gallery(cfg, [gallery], cls.index_dir, fps=5, score_thresh=0.0, model=model,
                      num_workers=0, progress=False)  # fmt: skip
        cls.server = cls.thread = cls.driver = None
        try:
            app = create_app(cls.index_dir, weights=weights, device="cpu", model=model)
            cls.server, cls.thread, cls.base = _start_server(app)
            cls.driver = _chrome()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.driver is not None:
                cls.driver.quit()
        finally:
            if cls.server is not None:
                cls.server.should_exit = True
                cls.thread.join(timeout=WAIT_S)
            cls._tmp.cleanup()

    # --- helpers -------------------------------------------------------------------------------

    def api(self, path):
        with urllib.request.urlopen(self.base + path, timeout=WAIT_S) as res:
            return json.load(res)

    def wait(self, condition, message, timeout=WAIT_S):
        return WebDriverWait(
            self.driver, timeout, poll_frequency=0.1,
            ignored_exceptions=[StaleElementReferenceException],
        ).until(condition, message)  # fmt: skip

    def css(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def open_page(self, fragment=""):
        """A fresh load of the page (about:blank first: a new fragment alone would not reload)."""
        self.driver.get("about:blank")
        self.driver.get(f"{self.base}/{fragment}")
        self.wait(lambda d: d.execute_script("return document.body.dataset.ready === '1'"),
                  "the page did not draw its state")  # fmt: skip

    def fragment(self):
        """The page's state: the parameters of the URL's fragment."""
        url = self.driver.current_url
        return dict(urllib.parse.parse_qsl(url.partition("#")[2]))

    def result_ids(self):
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#results .card')]"
            "  .map(c => c.dataset.detectionId);"
        )

    def wait_results(self, first=None):
        """The result cards once they are there (and, if given, ``first`` is the first)."""

        def ready(_):
            ids = self.result_ids()
            return ids if ids and (first is None or ids[0] == first) else False

        return self.wait(ready, f"no results (first expected: {first})")

    def opened(self):
        return self.driver.execute_script(
            "const d = document.getElementById('detail');"
            "return d.hidden ? null : d.dataset.detectionId;"
        )

    def video_source(self):
        return next(s for s in self.api("/api/sources")["sources"] if s["name"] == "cam2.avi")

    def search_by_click(self):
        """Open cam2.avi, step to a later frame, click the topmost box of the frame.

        Returns:
            the clicked detection's id.
        """
        source = self.video_source()
        self.open_page()
        self.css(f'#sources [data-source-id="{source["id"]}"]')[0].click()
        self.wait(lambda d: self.css("#frame-boxes .box"), "no detection box on the first frame")
        for _ in range(3):  # the 4th sampled frame: frame 6, 0.6 s
            self.css("#frame-next")[0].click()
        self.wait(lambda d: self.fragment().get("fi") == "3", "the frame did not change")
        frame = self.api(f"/api/sources/{source['id']}/frames?offset=3&limit=1")["frames"][0]
        expected = sorted(x["id"] for x in frame["detections"])
        self.wait(lambda d: d.execute_script(
            "const img = document.getElementById('frame-image');"
            "const ids = [...document.querySelectorAll('#frame-boxes .box')]"
            "  .map(b => b.dataset.detectionId).sort();"
            "return img.complete && img.naturalWidth > 0"
            "  && img.getAttribute('src').includes(arguments[0]) ? ids : null;",
            frame["id"]) == expected, "frame 3 and its boxes are not shown")  # fmt: skip
        box = self.css("#frame-boxes .box")[-1]  # the smallest: drawn on top, its centre is its own
        detection_id = box.get_attribute("data-detection-id")
        box.click()
        return detection_id

    # --- tests ---------------------------------------------------------------------------------

    def test_click_a_box_open_the_hit_in_the_video(self):
        clicked = self.search_by_click()
        ids = self.wait_results(first=clicked)
        self.assertGreater(len(ids), 1)
        first = self.css("#results .card")[0]
        self.assertEqual(first.find_element(By.CSS_SELECTOR, ".sim").text, "1.00")
        self.assertEqual(self.fragment()["q"], "d:" + clicked)
        first.click()
        self.wait(lambda d: self.opened() == clicked, "the result did not open")
        hit = self.api(f"/api/detections/{clicked}")
        fps = self.api("/api/index")["fps"]
        state = self.wait(
            lambda d: d.execute_script(
                "const v = document.getElementById('detail-video');"
                "return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - arguments[0])"
                " <= arguments[1] ? [v.readyState, v.currentTime] : false;",
                hit["time_s"], 1.0 / fps,
            ),
            f"the video is not at {hit['time_s']} s",
        )  # fmt: skip
        self.assertAlmostEqual(state[1], hit["time_s"], delta=1.0 / fps)
        self.assertTrue(self.css("#detail-boxes .box.selected"), "the hit's box is not drawn")
        self.wait(lambda d: d.execute_script(
            "const i = document.getElementById('detail-image');"
            "return i.complete && i.naturalWidth > 0"),
            "the frame of the hit did not load")  # fmt: skip
        self.wait(lambda d: d.execute_script(
            "return [...document.querySelectorAll('#results img')].every(i => i.complete)"),
            "the crops did not load")  # fmt: skip
        self.wait(lambda d: d.execute_script(
            "const v = document.getElementById('detail-video');"
            "return v.readyState >= 3 && v.networkState !== v.NETWORK_LOADING"),
            "the video's frame at the hit's time did not load")  # fmt: skip
        time.sleep(1.5)  # the player's loading indicator ends its turn before it hides
        if os.environ.get("IAN_D2_SAVE_SCREENSHOT") == "1":
            path = os.path.join(REPO, "docs", "search_browser.png")
        else:
            path = os.path.join(self._tmp.name, "search_browser.png")
        self.assertTrue(self.driver.save_screenshot(path))
        self.assertGreater(os.path.getsize(path), 1000)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_the_url_holds_the_query(self):
        clicked = self.search_by_click()
        ids = self.wait_results(first=clicked)
        url = self.driver.current_url
        self.assertIn("#", url)
        self.driver.refresh()
        self.wait(lambda d: d.execute_script("return document.body.dataset.ready === '1'"),
                  "the reloaded page did not draw its state")  # fmt: skip
        self.assertEqual(self.wait_results(first=clicked), ids)
        self.open_page("#" + url.partition("#")[2])  # the shared link, in a fresh load
        self.assertEqual(self.wait_results(first=clicked), ids)

    def test_empty_state_when_the_filters_exclude_everything(self):
        clicked = self.search_by_click()
        self.wait_results(first=clicked)
        field = self.css("#f-min-sim")[0]
        field.send_keys("1.5", Keys.TAB)  # the change event
        self.wait(lambda d: not self.result_ids() and self.css("#empty-state")[0].is_displayed(),
                  "no empty state")  # fmt: skip
        self.assertIn("No result passes these filters", self.css("#empty-state")[0].text)
        self.assertEqual(self.fragment()["sim"], "1.5")
        self.css("#empty-state button")[0].click()  # clear the filters
        self.wait_results(first=clicked)

    def test_arrow_keys_step_through_results(self):
        clicked = self.search_by_click()
        ids = self.wait_results(first=clicked)
        self.css("#results .card")[0].click()
        self.wait(lambda d: self.opened() == ids[0], "the first result did not open")
        ActionChains(self.driver).send_keys(Keys.ARROW_RIGHT).perform()
        self.wait(lambda d: self.opened() == ids[1], "→ did not open the second result")
        self.assertEqual(self.fragment()["open"], ids[1])
        self.assertTrue(self.css(f'#results .card.open[data-detection-id="{ids[1]}"]'))
        ActionChains(self.driver).send_keys(Keys.ARROW_LEFT).perform()
        self.wait(lambda d: self.opened() == ids[0], "← did not go back to the first result")

    def test_one_hit_per_track(self):
        """Group "one per track": the page shows the API's per-track ranking and says so."""
        clicked = self.search_by_click()
        self.wait_results(first=clicked)
        Select(self.css("#f-group")[0]).select_by_value("tracks")
        self.wait(lambda d: self.fragment().get("group") == "tracks", "no group in the URL")
        body = {"query": {"detection_id": clicked}, "group": "tracks", "top_k": 20}
        request = urllib.request.Request(self.base + "/api/search", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=WAIT_S) as res:
            hits = json.load(res)["hits"]
        expected = [h["detection_id"] for h in hits]
        self.wait(lambda d: self.result_ids() == expected, "not the per-track ranking")
        self.assertIn("(one per track)", self.css("#results-status")[0].text)
        spans = sum(1 for h in hits if h["track"]["tracked"])
        self.assertEqual(len(self.css("#results .card .track")), spans)


if __name__ == "__main__":
    unittest.main()
