import numpy as np

from impax.report.html import Report, line_plot_svg, png_bytes

from browser_util import inspect_page


def _checker(n: int = 64) -> np.ndarray:
    y, x = np.mgrid[:n, :n]
    return (((x // 8 + y // 8) % 2) * 200 + 30).astype(np.uint8)


def test_png_roundtrip():
    from io import BytesIO

    from PIL import Image

    img = _checker()
    back = np.asarray(Image.open(BytesIO(png_bytes(img))))
    np.testing.assert_array_equal(back, img)


def test_line_plot_svg_drops_nonfinite_and_handles_empty():
    svg = line_plot_svg({"loss": ([0, 1, 2, 3], [1.0, np.nan, 0.5, 0.25])}, title="t", log_y=True)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count(",") >= 3  # three finite points in the polyline
    assert "no data" in line_plot_svg({"loss": ([], [])})


def test_report_escapes_text(tmp_path):
    r = Report("a <b> report")
    r.paragraph("<script>alert(1)</script>")
    r.table([{"name": "<x>", "v": 1.5}], caption="c")
    text = r.to_html()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "&lt;x&gt;" in text


def test_report_in_headless_chromium(tmp_path):
    r = Report("impax test report", "built by the test")
    r.heading("Images")
    r.image_row([("checker", _checker()), ("rgb", np.dstack([_checker()] * 3))], label="row")
    r.heading("Table")
    r.table([{"shape": "a", "iou": 0.9}, {"shape": "b", "iou": 0.8}], caption="metrics", table_id="metrics")
    r.svg(line_plot_svg({"loss": ([0, 1, 2], [3.0, 2.0, 1.0])}, title="loss"))
    page = r.write(tmp_path / "report" / "index.html")
    info = inspect_page(page, screenshot=tmp_path / "shot.png")
    assert info["title"] == "impax test report"
    assert len(info["images"]) == 2
    assert all(i["complete"] and i["w"] == 64 and i["h"] == 64 for i in info["images"])
    assert info["tables"] == [{"id": "metrics", "caption": "metrics", "rows": 3}]
    assert info["svgs"] == 1
    assert (tmp_path / "shot.png").stat().st_size > 1000
