"""``impax report OUT``: (re)build the HTML report of an ``impax demo`` output folder.

Writes ``OUT/report/index.html`` (images embedded) with what was run, the metric tables of both
model families, renders of ground truth and reconstructions from shared cameras, interactive 3D
viewers of the same shapes (meshes in ``OUT/report/3d/``, three.js in ``OUT/report/assets/``; they
work offline, opened from disk), the SIF elements of the LDIF shapes, GAN samples, the
interpolation strip, the loss curves and the command line that ran the demo. Missing pieces show as "not available: reason". ``--open-check`` then opens the page in
headless Chromium (needs ``chromium``, ``chromedriver`` and the ``selenium`` package) and checks
that every image decodes.

Exit status: 0 complete, 3 written with some pieces not available, 1 failure (no such folder,
or the open check failed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _views(text: str) -> list[tuple[float, float]]:
    try:
        views = []
        for part in text.split(";"):
            az, el = (float(v) for v in part.split(","))
            views.append((az, el))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'AZ,EL;AZ,EL...' in degrees, got {text!r}") from None
    return views


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="build the HTML report of a demo output folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="demo output folder (the report goes to OUT/report/index.html)")
    p.add_argument("--title", default="impax demo report", help="page title")
    p.add_argument("--size", type=int, default=192, help="pixels per render (default 192)")
    p.add_argument("--views", type=_views, default=None,
                   help="views as 'AZ,EL;AZ,EL' in degrees (default '35,22;215,22')")
    p.add_argument("--max-shapes", type=int, default=8, help="rows of per-shape renders (default 8)")
    p.add_argument("--supersample", type=int, default=2, help="rays per pixel per axis (default 2)")
    p.add_argument("--open-check", action="store_true",
                   help="open the page in headless Chromium and check that every image loads")
    p.set_defaults(func=run)


def open_check(page: Path) -> tuple[bool, str]:
    """Load ``page`` in headless Chromium; ``(ok, message)`` — ok when every image decodes."""
    import shutil
    import tempfile

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return False, "the selenium package is not installed"
    if not binary or not driver_path:
        return False, "chromium and chromedriver must be on PATH"
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    with tempfile.TemporaryDirectory(prefix="impax-chromium-") as profile:
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-dev-shm-usage",
                     f"--user-data-dir={profile}"):
            opts.add_argument(flag)
        drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
        try:
            drv.get(page.resolve().as_uri())
            imgs = drv.execute_script("return Array.from(document.images).map(i => [i.alt, i.complete, "
                                      "i.naturalWidth]);")
            tables = drv.execute_script("return document.querySelectorAll('table').length;")
            svgs = drv.execute_script("return document.querySelectorAll('svg').length;")
        finally:
            drv.quit()
    bad = [alt for alt, complete, w in imgs if not complete or not w]
    msg = f"{len(imgs)} images, {tables} tables, {svgs} plots"
    if bad:
        return False, f"{msg}; {len(bad)} images did not load: {', '.join(bad[:5])}"
    return True, msg


def run(args: argparse.Namespace) -> int:
    from impax.report.demo_report import DEFAULT_VIEWS, build_report

    out = Path(args.out)
    if not out.is_dir():
        print(f"impax report: {out} is not a folder", file=sys.stderr)
        return 1
    if args.size < 16 or args.max_shapes < 0 or args.supersample < 1:
        print("impax report: need --size >= 16, --max-shapes >= 0, --supersample >= 1", file=sys.stderr)
        return 1
    page = build_report(out, title=args.title, views=args.views or DEFAULT_VIEWS, size=args.size,
                        max_shapes=args.max_shapes, supersample=args.supersample)
    missing = page.read_text(encoding="utf-8").count('class="na"')
    print(f"wrote {page}" + (f" ({missing} pieces not available)" if missing else ""), file=sys.stderr)
    if args.open_check:
        ok, msg = open_check(page)
        print(f"open check: {'ok' if ok else 'FAILED'}: {msg}", file=sys.stderr)
        if not ok:
            return 1
    return 3 if missing else 0
