"""Open a local HTML file in real headless Chromium (Debian's package) through ChromeDriver."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def chromium_driver(width: int = 1300, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert binary and driver_path, "Chromium and ChromeDriver must be installed (scripts/test.sh installs them)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={width},{height}",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='impax-chromium-')}"):
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))


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
