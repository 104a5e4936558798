"""End to end in a real browser: Debian's chromium driven by Playwright uploads a real BUSI image.

Playwright cannot download its own browser here, so the test launches ``/usr/bin/chromium`` (``make test``
installs it with apt when it is missing and the user is root). Without chromium or the ``playwright`` package
the test is skipped, saying which is missing. The service runs on a free loopback port with the shipped
``busi-seg``/``busi-cls`` models when the zoo holds them, else with the tiny test models. Screenshots are
saved in the test's temporary folder (their paths are printed).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import pytest

from breastdx import RESEARCH_USE_ONLY
from breastdx.data.wdbc import FEATURE_NAMES, load_wdbc
from breastdx.serve import ServeSettings, create_app, running_server
from breastdx.serve.db import PredictionStore

_TOKEN: dict[str, str] = {}  # the API token of the module's server

CHROMIUM = os.environ.get("BREASTDX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    path = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not path:
        message = (f"browser test needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium; "
                   f"`make test` installs it when run as root)")
        if os.environ.get("CI"):  # CI installs it through the Makefile: a missing browser there is a failure
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser():
    path = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser test needs the playwright package "
                                                                 "(pip install -e '.[test]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(model_dirs, registry, tmp_path_factory):
    from breastdx.zoo import shipped_models

    zoo = shipped_models()
    dirs = [zoo.get(t, model_dirs[t]) for t in ("busi-seg", "busi-cls", "wdbc")]
    reg = registry if all(d == model_dirs[t] for d, t in zip(dirs, ("busi-seg", "busi-cls", "wdbc"))) else None
    db = tmp_path_factory.mktemp("browser-db") / "p.sqlite"
    store = PredictionStore(f"sqlite:///{db}")
    _TOKEN["value"] = store.create_token("browser-test")
    app = create_app(ServeSettings(database_url=f"sqlite:///{db}", model_dirs=tuple(dirs)), registry=reg,
                     store=store)
    with running_server(app) as url:
        yield url
    store.close()


def _classes(url: str) -> list[str]:
    import httpx

    models = httpx.get(url + "/v1/models", timeout=30,
                       headers={"Authorization": f"Bearer {_TOKEN['value']}"}).json()["models"]
    return next(m["class_names"] for m in models if m["task"] == "busi-cls")


def _open(browser, url: str, token: bool = True):
    """A page of ``url`` once its models are listed (after entering the module's API token when ``token``), and
    the list its script errors go to."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='true']", timeout=30_000)
    if token:
        _enter_token(page, _TOKEN["value"])
    page.wait_for_selector("#status.ok", timeout=30_000)
    return page, errors


def _enter_token(page, token: str) -> None:
    assert page.is_visible("#token-form"), "the page must ask for the API token"
    page.fill("#token-input", token)
    page.click("#token-form button[type=submit]")


def test_page_asks_for_the_token_and_says_when_it_is_refused(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='true']", timeout=30_000)
    assert "needs an API token" in page.inner_text("#token-message")
    _enter_token(page, "wrong-token")
    page.locator("#token-message").filter(has_text="refused").wait_for(timeout=30_000)  # no eval under the CSP
    assert page.is_visible("#token-form") and page.evaluate("sessionStorage.getItem('breastdx-token')") is None
    _enter_token(page, "\u201cwrong-token\u201d")  # typographic quotes: a header cannot carry them
    page.locator("#token-message").filter(has_text="not an API token").wait_for(timeout=30_000)
    assert page.is_visible("#token-form") and page.evaluate("sessionStorage.getItem('breastdx-token')") is None
    _enter_token(page, _TOKEN["value"] + "\u200b")  # a zero-width space pasted with it is left out
    page.wait_for_selector("#status.ok", timeout=30_000)
    assert page.is_hidden("#token-form")
    page.reload()  # kept for the browser session: not asked again
    page.wait_for_selector("#status.ok", timeout=30_000)
    assert page.is_hidden("#token-form")
    page.close()


def test_upload_shows_prediction_overlays_and_card(browser, server, busi_image, tmp_path):
    page, errors = _open(browser, server)
    notice = page.inner_text("#notice")
    assert "Research use only — not for diagnosis." in notice and RESEARCH_USE_ONLY.split(". ", 1)[1] in notice
    assert page.eval_on_selector("#task-select", "s => s.value") == "ultrasound"
    page.set_input_files("#file-input", str(busi_image))
    page.wait_for_selector("#pred-label:not(:empty)", timeout=60_000)
    label = page.get_attribute("#pred-label", "data-label")
    classes = _classes(server)
    assert label in classes
    assert page.text_content("#pred-label") == label.replace("_", " ")  # shown as read, not as a code
    assert page.locator("#prob-bars .bar").count() == len(classes)
    assert page.locator("#prob-bars .bar.chosen .bar-name").text_content() == label.replace("_", " ")
    # the image and both overlays are decoded images of the same size
    sizes = page.evaluate("""() => ['layer-image', 'layer-heatmap', 'layer-contour'].map(id => {
        const im = document.getElementById(id);
        return [im.src.slice(0, 22), im.naturalWidth, im.naturalHeight, im.complete];
    })""")
    assert all(s[0] == "data:image/png;base64," and s[1] > 0 and s[3] for s in sizes), sizes
    assert sizes[0][1:3] == sizes[2][1:3]  # image and contour layer: same size
    assert abs(sizes[1][1] / sizes[1][2] - sizes[0][1] / sizes[0][2]) < 0.02  # Grad-CAM layer: same aspect
    boxes = [page.locator(f"#{i}").bounding_box() for i in ("layer-image", "layer-heatmap", "layer-contour")]
    assert all(abs(b["width"] - boxes[0]["width"]) < 1 and abs(b["height"] - boxes[0]["height"]) < 1 for b in boxes)
    assert page.is_visible("#layer-heatmap") and page.is_visible("#layer-contour")
    assert "Lesion area" in page.inner_text("#pred-details")
    if page.get_attribute("#pred-label", "data-label") and "Lesion regions\n0" not in page.inner_text("#pred-details"):
        assert "Longest diameter" in page.inner_text("#pred-details")
    # legends: the colour bar with the class the map explains, and what the red outline is
    assert page.is_visible("#heat-legend") and f'"{label.replace("_", " ")}"' in page.inner_text("#heat-class")
    assert page.is_visible("#contour-legend") and "model output" in page.inner_text("#contour-legend")
    assert page.locator("details.card[open]").count() == 2  # the two models' cards open
    shot = tmp_path / "ultrasound.png"
    page.screenshot(path=str(shot), full_page=True)
    # opacity slider and contour toggle act on the layers, client side
    page.fill("#heatmap-opacity", "25")
    assert page.eval_on_selector("#layer-heatmap", "e => e.style.opacity") == "0.25"
    page.click("#contour-toggle")
    assert not page.is_visible("#layer-contour")
    page.click("#contour-toggle")
    assert page.is_visible("#layer-contour")
    assert errors == []
    print(f"\nscreenshot: {shot}")
    page.close()


def test_several_images_give_a_table_and_csv(browser, server, busi_image, tmp_path):
    page, errors = _open(browser, server)
    source = next(p for p in sorted(busi_image.parent.glob("*).png")) if p != busi_image)
    other = tmp_path / "=HYPERLINK(1).png"  # a formula to a spreadsheet: the page's CSV must quote it
    other.write_bytes(source.read_bytes())
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.set_input_files("#file-input", [str(busi_image), str(other), str(bad)])
    page.wait_for_selector("#csv-download:enabled", timeout=90_000)
    rows = page.locator("#batch-table tbody tr")
    assert rows.count() == 3
    assert "not an image" in rows.nth(2).inner_text()
    with page.expect_download() as info:
        page.click("#csv-download")
    text = Path(info.value.path()).read_text()
    records = list(csv.DictReader(io.StringIO(text)))
    assert [r["file"] for r in records[:3]] == [busi_image.name, "'" + other.name, "notes.png"]
    classes = _classes(server)
    assert records[0]["label"] in classes and all(records[0][f"p_{c}"] for c in classes)
    assert records[2]["error"] and not records[2]["label"]
    rows.nth(1).click()
    assert page.inner_text("#result-file") == other.name
    page.screenshot(path=str(tmp_path / "batch.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'batch.png'}")
    assert errors == [] or all("422" in e or "415" in e for e in errors)  # the failed upload's answer is logged
    page.close()


def test_wdbc_csv_of_cases(browser, server, tmp_path):
    """A CSV as a spreadsheet in a decimal-comma locale saves it (; separated, quoted header names, ID and diagnosis
    columns), with one row out of range and one short row: every case is predicted or named with its problem, and
    the results download as CSV."""
    case = load_wdbc()
    header = ";".join(["ID", "diagnosis", *[f'"{n}"' for n in FEATURE_NAMES]])
    rows = [";".join([f"c{i}", "M" if case.y[i] else "B", *[repr(float(v)).replace(".", ",") for v in case.X[i]]])
            for i in range(4)]
    rows[2] = rows[2].replace(rows[2].split(";")[2], "-1", 1)  # mean radius -1: refused by the service, named
    rows.append("c9;B;1,5")  # too short
    csv_file = tmp_path / "cases.csv"
    csv_file.write_text("\ufeff" + "\r\n".join([header, *rows]) + "\r\n", encoding="utf-8")
    page, errors = _open(browser, server)
    page.click("#tab-wdbc")
    page.set_input_files("#wdbc-file", str(csv_file))
    page.wait_for_selector("#wdbc-batch-csv:not([disabled])", timeout=60_000)
    cells = [[td.inner_text() for td in tr.query_selector_all("td")]
             for tr in page.query_selector_all("#wdbc-batch-table tbody tr")]
    assert [c[:4] for c in cells] == [["2", "c0", "malignant", "malignant"], ["3", "c1", "malignant", "malignant"],
                                      ["4", "c2", "malignant", "error"], ["5", "c3", "malignant", "malignant"],
                                      ["6", "c9", "benign", "error"]]
    assert "'mean radius'" in cells[2][5] and "3 fields, but the header has 32" in cells[4][5]
    assert "3 case(s) predicted, 2 could not be" in page.inner_text("#wdbc-batch-status")
    with page.expect_download() as download:
        page.click("#wdbc-batch-csv")
    saved = download.value.path().read_text()
    table = list(csv.DictReader(io.StringIO(saved)))
    assert [r["case_id"] for r in table[:5]] == ["c0", "c1", "c2", "c3", "c9"]
    assert float(table[0]["p_malignant"]) > 0.5 and table[2]["error"] and table[-1]["line"].startswith("# Research")
    uci = tmp_path / "wdbc.data"  # UCI's own layout: no header, ID and diagnosis first, commas
    uci.write_text("\n".join(",".join([str(842302 + i), "M" if case.y[i] else "B", *map(repr, map(float, case.X[i]))])
                             for i in (0, 19)) + "\n")
    page.set_input_files("#wdbc-file", str(uci))
    page.wait_for_selector("#wdbc-batch-status:has-text('wdbc.data: 2 case(s) predicted')", timeout=60_000)
    cells = [[td.inner_text() for td in tr.query_selector_all("td")]
             for tr in page.query_selector_all("#wdbc-batch-table tbody tr")]
    assert [c[:4] for c in cells] == [["1", "842302", "malignant", "malignant"], ["2", "842321", "benign", "benign"]]
    assert errors == [] or all("422" in e for e in errors)  # the refused row's answer is logged
    page.screenshot(path=str(tmp_path / "wdbc_csv.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'wdbc_csv.png'}")
    page.close()


def test_wdbc_form(browser, server, tmp_path):
    page, errors = _open(browser, server)
    page.click("#tab-wdbc")
    page.click("#wdbc-example")
    page.click("#wdbc-submit")
    page.wait_for_selector("#wdbc-result:not([hidden])", timeout=30_000)
    assert page.text_content("#wdbc-label") in ("benign", "malignant")
    assert page.locator("#wdbc-reasons .bar").count() == 5
    page.fill("[data-feature='mean radius']", "abc")
    page.click("#wdbc-submit")
    page.wait_for_selector("#wdbc-error:not([hidden])")
    assert "expected a number, got 'abc'" in page.inner_text("#wdbc-error")
    assert "invalid" in page.get_attribute("[data-feature='mean radius']", "class")
    page.screenshot(path=str(tmp_path / "wdbc.png"), full_page=True)
    # A spreadsheet row pasted into one field (tabs, decimal commas, ID and diagnosis first) fills all 30.
    case = load_wdbc()
    row = "\t".join(["842302", "M", *[repr(float(v)).replace(".", ",") for v in case.X[0]]])
    page.click("#wdbc-clear")
    page.eval_on_selector("[data-feature='worst area']", """(input, text) => {
        const data = new DataTransfer(); data.setData("text/plain", text);
        input.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
    }""", row)
    assert page.input_value("#wdbc-case") == "842302"
    assert page.get_attribute("#wdbc-case", "placeholder") == "optional; shown here only, not recorded"
    assert page.input_value("[data-feature='mean radius']") == "17,99"
    assert page.input_value("[data-feature='worst fractal dimension']") == "0,1189"
    # A line of Kaggle's data.csv ends with a comma (its empty 33rd column): it fills the form too.
    kaggle = ",".join(["842302", "M", *[repr(float(v)) for v in case.X[0]]]) + ","
    page.click("#wdbc-clear")
    page.eval_on_selector("[data-feature='mean texture']", """(input, text) => {
        const data = new DataTransfer(); data.setData("text/plain", text);
        input.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
    }""", kaggle)
    assert page.input_value("#wdbc-case") == "842302" and page.input_value("[data-feature='mean radius']") == "17.99"
    assert page.input_value("[data-feature='worst fractal dimension']") == "0.1189"
    page.click("#wdbc-submit")
    page.wait_for_selector("#wdbc-result:not([hidden])", timeout=30_000)
    assert page.text_content("#wdbc-label") == "malignant"  # WDBC case 842302 (malignant), sent as numbers
    page.click("#tab-record")
    page.locator("#record-table tbody td").nth(1).wait_for()
    assert "wdbc" in page.inner_text("#record-table")
    page.close()


def test_docs_load_with_outside_requests_blocked(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(server):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(server + "/docs")
    page.locator(".swagger-ui .info .title").filter(has_text="breastdx").wait_for(timeout=30_000)
    assert page.locator(".opblock").count() >= 5  # the operations are listed
    assert outside == []
    page.close()


def test_phone_sized_viewport_has_no_horizontal_overflow(browser, server, busi_image):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='true']", timeout=30_000)
    _enter_token(page, _TOKEN["value"])
    page.wait_for_selector("#status.ok", timeout=30_000)
    page.set_input_files("#file-input", str(busi_image))
    page.wait_for_selector("#pred-label:not(:empty)", timeout=60_000)
    page.wait_for_timeout(500)
    width = page.evaluate("document.documentElement.scrollWidth")
    notice = page.locator("#notice").bounding_box()["height"]
    top = page.evaluate("document.getElementById('pred-label').getBoundingClientRect().top")
    print(f"\nphone: page width {width} px, notice {notice:.0f} px, result label top {top:.0f} px")
    assert width <= 390, f"the page is {width} px wide at a 390 px viewport"
    assert notice <= 64
    assert 0 <= top < 844  # the result is brought into view, not two screens below
    page.close()


def test_page_colour_bar_is_the_overlays_colour_map():
    from breastdx.serve.app import STATIC_DIR
    from breastdx.visualize import HEAT_STOPS

    css = (STATIC_DIR / "style.css").read_text()
    assert f"linear-gradient(to right, {', '.join(HEAT_STOPS)})" in css


def shipped_server(task: str, tmp_path_factory):
    """The service of the zoo's ``task`` model alone (the test is skipped when the zoo has none), without API
    tokens (loopback): a context manager giving its base URL."""
    from breastdx.zoo import shipped_models

    model = shipped_models().get(task)
    if model is None:
        pytest.skip(f"the zoo ships no {task} model")
    db = tmp_path_factory.mktemp(f"browser-{task}-db") / "p.sqlite"
    return running_server(create_app(ServeSettings(database_url=f"sqlite:///{db}", model_dirs=(model,), auth=False)))


@pytest.fixture(scope="module")
def nuclei_server(tmp_path_factory):
    """The shipped monuseg model alone (see :func:`shipped_server`)."""
    with shipped_server("monuseg", tmp_path_factory) as url:
        yield url


def test_nuclei_of_an_he_tile(browser, nuclei_server, tmp_path):
    from PIL import Image

    tiles = sorted((Path(os.environ.get("BREASTDX_DATA", "/nonexistent")) / "monuseg_breast" / "test" /
                    "images").glob("*.tif"))
    if not tiles:
        pytest.skip("real data not available: set BREASTDX_DATA to a data root holding monuseg_breast/")
    crop = tmp_path / "tile.png"
    Image.open(tiles[0]).convert("RGB").crop((0, 0, 320, 320)).save(crop)
    page, errors = _open(browser, nuclei_server, token=False)
    assert page.eval_on_selector("#task-select", "s => s.value") == "monuseg"
    assert "nuclei" in page.inner_text("#task-select")
    page.set_input_files("#file-input", str(crop))
    page.wait_for_selector("#pred-label:not(:empty)", timeout=60_000)
    label = page.text_content("#pred-label")
    assert label.endswith(" nuclei") and int(label.split()[0]) > 20
    assert "no diagnosis" in page.inner_text("#pred-rule")
    details = page.inner_text("#pred-details")
    assert "radius (mean / worst)" in details and "µm" in details and "0.25 µm per pixel" in details
    assert page.locator("#prob-bars .bar").count() == 0
    assert page.is_visible("#nuclei-legend") and page.is_hidden("#contour-legend") and page.is_hidden("#heat-legend")
    assert "Nucleus outlines" in page.inner_text("#contour-control")
    sizes = page.evaluate("""() => ['layer-image', 'layer-contour'].map(id => {
        const im = document.getElementById(id);
        return [im.naturalWidth, im.naturalHeight, im.complete];
    })""")
    assert sizes[0] == sizes[1] == [320, 320, True], sizes
    page.click("#contour-toggle")
    assert not page.is_visible("#layer-contour")
    with page.expect_download() as info:  # the tile's nuclei, one row each, as predict monuseg writes them
        page.click("#nuclei-csv")
    assert info.value.suggested_filename == "tile_nuclei.csv"
    nuclei_rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))[:-1]  # less the notice
    assert len(nuclei_rows) == int(label.split()[0]) and nuclei_rows[0]["in_summary"] in ("0", "1")
    assert float(nuclei_rows[0]["radius_um"]) == pytest.approx(0.25 * float(nuclei_rows[0]["radius"]), rel=1e-6)
    page.screenshot(path=str(tmp_path / "nuclei.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'nuclei.png'}")
    # two tiles: the table and its CSV carry the count, the median area and the 30 columns in µm
    other = tmp_path / "tile2.png"
    Image.open(tiles[0]).convert("RGB").crop((320, 320, 576, 576)).save(other)
    page.set_input_files("#file-input", [str(crop), str(other)])
    page.wait_for_selector("#csv-download:enabled", timeout=90_000)
    assert page.inner_text("#area-header") == "Nuclei"
    with page.expect_download() as info:
        page.click("#csv-download")
    records = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))[:2]
    assert [r["file"] for r in records] == ["tile.png", "tile2.png"]
    assert all(r["feature_unit"] == "um" and float(r["radius_mean"]) > 0 and int(r["n_nuclei"]) > 0 for r in records)
    assert records[0]["label"] == label and len([k for k in records[0] if k.endswith(("_mean", "_se", "_worst"))]) == 30
    assert errors == []
    page.close()
    # on a phone the features list wraps inside the page
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto(nuclei_server + "/")
    phone.wait_for_selector("#status.ok", timeout=30_000)
    phone.set_input_files("#file-input", str(crop))
    phone.wait_for_selector("#pred-label:not(:empty)", timeout=60_000)
    phone.wait_for_timeout(300)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.close()
