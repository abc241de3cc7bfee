"""Open a local HTML file in real headless Chromium (Debian's package) through ChromeDriver."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def chromium_driver(width: int = 1300, height: int = 1000, webgl: bool = False, offline: bool = False,
                    no_webgl: bool = False):
    """Headless Chromium. ``webgl``: WebGL through SwiftShader (software, no GPU needed);
    ``no_webgl``: WebGL switched off; ``offline``: no network at all (a proxy on a closed port for
    every scheme, DevTools' offline emulation) and a performance log of every request
    (:func:`requested_urls`)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert binary and driver_path, "Chromium and ChromeDriver must be installed (scripts/test.sh installs them)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    flags = ["--headless=new", "--no-sandbox", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--window-size={width},{height}",
             f"--user-data-dir={tempfile.mkdtemp(prefix='impax-chromium-')}"]
    if webgl:
        flags += ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
    else:
        flags.append("--disable-gpu")
    if no_webgl:
        flags.append("--disable-3d-apis")
    if offline:
        flags += ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    for flag in flags:
        opts.add_argument(flag)
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    if offline:
        drv.execute_cdp_cmd("Network.enable", {})
        drv.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    return drv


def requested_urls(drv) -> list[str]:
    """Every URL the page asked for so far (DevTools ``Network.requestWillBeSent``; needs a driver
    made with ``offline=True``)."""
    import json

    urls = []
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


IMAGES_STATUS_JS = """
const imgs = Array.from(document.images);
return imgs.map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}));
"""


#: Per table id: the first cell's image (its laid-out box and natural size) and the first two cells'
#: boxes, to tell whether the first picture is clipped or covered by the next cell.
FIRST_CELLS_JS = """
const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, width: r.width}; };
const out = {};
for (const id of arguments[0]) {
  const t = document.getElementById(id);
  if (!t || !t.rows.length) { out[id] = null; continue; }
  const cells = t.rows[0].cells;
  const img = cells[0].querySelector('img');
  out[id] = {img: img ? box(img) : null, natural: img ? img.naturalWidth : 0,
             inner: img ? img.clientWidth : 0, cell0: box(cells[0]),
             cell1: cells.length > 1 ? box(cells[1]) : null};
}
return out;
"""


def inspect_page(path: Path, screenshot: Path | None = None, ids: tuple[str, ...] = (),
                 strips: tuple[str, ...] = ()) -> dict:
    """Load ``path`` and return its images' load status, table ids/captions and title; ``elements``:
    the visible text of each element in ``ids`` (None when absent); ``strips``: the first-cell
    geometry (:data:`FIRST_CELLS_JS`) of each table in ``strips``."""
    drv = chromium_driver()
    try:
        drv.get(path.resolve().as_uri())
        images = drv.execute_script(IMAGES_STATUS_JS)
        elements = drv.execute_script(
            "return arguments[0].map(i => { const e = document.getElementById(i); "
            "return e ? e.innerText : null; });", list(ids))
        geometry = drv.execute_script(FIRST_CELLS_JS, list(strips))
        tables = drv.execute_script(
            "return Array.from(document.querySelectorAll('table')).map(t => ({id: t.id, "
            "caption: t.caption ? t.caption.textContent : '', rows: t.rows.length}));")
        svgs = drv.execute_script("return document.querySelectorAll('svg').length;")
        if screenshot is not None:
            height = drv.execute_script("return document.body.scrollHeight;")
            drv.set_window_size(1300, min(int(height) + 50, 12000))
            drv.save_screenshot(str(screenshot))
        return {"title": drv.title, "images": images, "tables": tables, "svgs": svgs,
                "elements": dict(zip(ids, elements)), "strips": geometry}
    finally:
        drv.quit()


INIT_VIEWERS_JS = """
const done = arguments[arguments.length - 1];
if (!window.impaxViewers) { done({error: 'no window.impaxViewers'}); return; }
impaxViewers.initAll().then(done, e => done({error: String(e)}));
"""

#: Every 3D viewer's canvas (PNG data URI) and every row's cameras.
VIEWER_SNAPSHOT_JS = """
impaxViewers.flush();
return {images: Array.from(document.querySelectorAll('#look3d .v3d canvas')).map(c => c.toDataURL('image/png')),
        cameras: impaxViewers.rows.map((r, i) => r.viewers.map((v, j) => impaxViewers.camera(i, j)))};
"""


def inspect_viewers(path: Path, webgl: bool = True) -> dict:
    """Load the report ``path`` offline, start every 3D viewer (``impaxViewers.initAll()``) and
    return ``states`` (per viewer), ``status`` (the page's 3D status line, None when hidden),
    ``messages`` (each viewer's message), ``before`` (:data:`VIEWER_SNAPSHOT_JS`), then, with WebGL,
    ``dragged`` after a mouse drag on row 0's first viewer and ``zoomed`` after a wheel turn on
    row 0's last viewer; ``urls``: every URL the page requested."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By

    drv = chromium_driver(webgl=webgl, no_webgl=not webgl, offline=True)
    try:
        drv.set_script_timeout(60)
        drv.get(path.resolve().as_uri())
        out = {"states": drv.execute_async_script(INIT_VIEWERS_JS)}
        out["status"] = drv.execute_script(
            "const s = document.getElementById('look3d-status'); return s && !s.hidden ? s.textContent : null;")
        out["messages"] = drv.execute_script(
            "return Array.from(document.querySelectorAll('#look3d .v3d-msg')).map("
            "m => m.style.display === 'none' ? '' : m.textContent);")
        out["images_ok"] = drv.execute_script(
            "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0);")
        out["before"] = drv.execute_script(VIEWER_SNAPSHOT_JS)
        if webgl and isinstance(out["states"], list) and out["states"]:
            canvases = drv.find_element(By.CSS_SELECTOR, "#viewers-3d tr.v3d-row").find_elements(By.TAG_NAME, "canvas")
            drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvases[0])
            (ActionChains(drv).move_to_element(canvases[0]).click_and_hold().move_by_offset(30, 8)
             .move_by_offset(30, 8).release().perform())
            out["dragged"] = drv.execute_script(VIEWER_SNAPSHOT_JS)
            ActionChains(drv).scroll_from_origin(ScrollOrigin.from_element(canvases[-1]), 0, 300).perform()
            out["zoomed"] = drv.execute_script(VIEWER_SNAPSHOT_JS)
        out["urls"] = requested_urls(drv)
        return out
    finally:
        drv.quit()
