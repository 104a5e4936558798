"""The web page as a clinician uses it, in a real browser (launched as in test_browser.py): a new upload replacing
one still running, what the page says before the API token is entered, how probabilities, the threshold and
missing measurements read. The tiny test models serve (the shipped monuseg model for the nuclei)."""

from __future__ import annotations

from pathlib import Path

import pytest

from breastdx.serve import ServeSettings, create_app, running_server

from .conftest import png_bytes, training_scan
from .test_browser import browser, nuclei_server, shipped_server  # noqa: F401  (chromium, the shipped models)


def _serve(model_dirs, registry, tmp_path_factory, auth: bool):
    db = tmp_path_factory.mktemp("review-db") / "p.sqlite"
    app = create_app(ServeSettings(database_url=f"sqlite:///{db}", model_dirs=tuple(model_dirs.values()), auth=auth),
                     registry=registry)
    return running_server(app)


@pytest.fixture(scope="module")
def open_server(model_dirs, registry, tmp_path_factory):
    """The tiny models, without API tokens."""
    with _serve(model_dirs, registry, tmp_path_factory, auth=False) as url:
        yield url


@pytest.fixture(scope="module")
def token_server(model_dirs, registry, tmp_path_factory):
    """The tiny models, behind API tokens (none is entered in these tests)."""
    with _serve(model_dirs, registry, tmp_path_factory, auth=True) as url:
        yield url


@pytest.fixture(scope="module")
def breastmnist_server(tmp_path_factory):
    """The shipped breastmnist model alone (its class normal_or_benign), without API tokens."""
    with shipped_server("breastmnist", tmp_path_factory) as url:
        yield url


def _open(browser, url: str, ready: str = "#status.ok"):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector(ready, timeout=30_000)
    return page, errors


def _scan(path: Path) -> str:
    """A small grey 'scan' (not the tiny model's training image) saved as PNG at ``path``."""
    path.write_bytes(png_bytes(255 - training_scan()))
    return str(path)


def _hold_first_prediction(page, path: str) -> tuple[list[str], list]:
    """Route ``path`` so that its first request is held (in the second list) and the others go on; the first list
    gets every request's URL."""
    sent, held = [], []

    def route(r):
        sent.append(r.request.url)
        if len(sent) == 1:
            held.append(r)
        else:
            r.continue_()

    page.route(path, route)
    return sent, held


def _wait_held(page, held: list) -> None:
    for _ in range(200):
        if held:
            return
        page.wait_for_timeout(50)
    raise AssertionError("the first request was not sent")


def test_a_new_upload_stops_the_batch_it_replaces(browser, open_server, tmp_path):  # noqa: F811
    """Three images are sent, and while the first is predicted the clinician picks another image: the page shows
    that image's result alone, and the replaced batch sends no more files nor writes rows into the new table."""
    page, errors = _open(browser, open_server)
    sent, held = _hold_first_prediction(page, "**/v1/predict/**")
    page.set_input_files("#file-input", [_scan(tmp_path / f"batch{i}.png") for i in range(3)])
    _wait_held(page, held)
    page.set_input_files("#file-input", _scan(tmp_path / "single.png"))
    page.wait_for_selector("#pred-label:not(:empty)", timeout=60_000)
    held[0].continue_()  # the replaced batch's first answer comes back late
    page.wait_for_timeout(2000)
    assert len(sent) == 2, sent  # the first batch's other two files are not sent
    assert page.inner_text("#result-file") == "single.png" and page.is_hidden("#batch")
    assert page.locator("#batch-table tbody tr").count() == 1 and page.is_hidden("#image-error")
    assert errors == []
    page.close()


def test_a_new_wdbc_csv_stops_the_one_it_replaces(browser, open_server, tmp_path):  # noqa: F811
    """A CSV of three WDBC cases, replaced by a CSV of one while its first case is predicted: the table and its
    download hold the new file's case alone, and the replaced file sends no more cases."""
    from breastdx.data.wdbc import load_wdbc

    case = load_wdbc()
    files = []
    for name, ids in (("first.data", (1, 2, 3)), ("second.data", (9,))):
        files.append(tmp_path / name)
        files[-1].write_text("".join(",".join([str(i), "B", *map(repr, map(float, case.X[i]))]) + "\n" for i in ids))
    page, errors = _open(browser, open_server)
    page.click("#tab-wdbc")
    sent, held = _hold_first_prediction(page, "**/v1/predict/wdbc")
    page.set_input_files("#wdbc-file", str(files[0]))
    _wait_held(page, held)
    page.set_input_files("#wdbc-file", str(files[1]))
    page.wait_for_selector("#wdbc-batch-status:has-text('second.data: 1 case(s) predicted')", timeout=30_000)
    held[0].continue_()
    page.wait_for_timeout(2000)
    assert len(sent) == 2, sent
    rows = [tr.inner_text().split("\t")[:2] for tr in page.query_selector_all("#wdbc-batch-table tbody tr")]
    assert rows == [["1", "9"]], rows
    assert "second.data: 1 case(s) predicted" in page.inner_text("#wdbc-batch-status") and errors == []
    page.close()


def test_before_the_token_is_entered_the_page_asks_for_it(browser, token_server, tmp_path):  # noqa: F811
    """An image, or a CSV of WDBC cases, given before the API token is entered: the page says to enter the token,
    not that no model is served, nor a script error."""
    page, errors = _open(browser, token_server, ready="body[data-ready='true']")
    assert page.is_visible("#token-form")
    page.set_input_files("#file-input", _scan(tmp_path / "scan.png"))
    page.wait_for_selector("#image-error:not([hidden])", timeout=30_000)
    assert "Enter the API token above first" in page.inner_text("#image-error")
    page.click("#tab-wdbc")
    cases = tmp_path / "wdbc.data"
    cases.write_text("1,M," + ",".join(["1.0"] * 30) + "\n")
    page.set_input_files("#wdbc-file", str(cases))
    page.wait_for_selector("#wdbc-error:not([hidden])", timeout=30_000)
    assert "Enter the API token above first" in page.inner_text("#wdbc-error")
    assert page.is_hidden("#wdbc-batch") and errors == []
    page.close()


def test_probabilities_and_the_threshold_are_shown_as_percentages(browser, open_server):  # noqa: F811
    """The tiny WDBC model gives the example case P(malignant) ~ 1: shown as "> 99.9%" and "< 0.1%", not as a
    certainty (100.0%, 0.0%); the threshold is on the bars' scale (30.0%, not 0.300)."""
    page, errors = _open(browser, open_server)
    page.click("#tab-wdbc")
    page.click("#wdbc-example")
    page.click("#wdbc-submit")
    page.wait_for_selector("#wdbc-result:not([hidden])", timeout=30_000)
    values = {page.get_attribute(f"#wdbc-bars .bar:nth-child({k}) ", "data-class"):
              page.inner_text(f"#wdbc-bars .bar:nth-child({k}) .bar-value") for k in (1, 2)}
    assert values == {"benign": "< 0.1%", "malignant": "> 99.9%"}, values
    rule = page.inner_text("#wdbc-rule")
    assert "P(malignant) ≥ 30.0%" in rule and "0.300" not in rule, rule
    assert page.get_attribute("#wdbc-bars .bar-threshold", "title") == "operating threshold 30.0%"
    assert errors == []
    page.close()


def test_segmentation_alone_does_not_say_no_classifier_is_served(browser, open_server, tmp_path):  # noqa: F811
    """busi-seg chosen where busi-cls is served too: the result says this model gives no class, not that no
    classifier is served."""
    page, errors = _open(browser, open_server)
    page.select_option("#task-select", "busi-seg")
    page.set_input_files("#file-input", _scan(tmp_path / "scan.png"))
    page.wait_for_selector("#image-result:not([hidden])", timeout=60_000)
    rule = page.inner_text("#pred-rule")
    assert "this model gives no class" in rule and "no classifier is served" not in rule, rule
    assert page.locator("#prob-bars .bar").count() == 0 and page.is_hidden("#heat-legend") and errors == []
    page.close()


def test_a_tile_without_nuclei_shows_no_unit_after_n_a(browser, nuclei_server, tmp_path):  # noqa: F811
    """A blank tile: no nucleus is measured, and each feature reads 'n/a (no nucleus measured)', not 'n/a / n/a µm'."""
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (256, 256), (235, 225, 235)).save(blank)
    page, errors = _open(browser, nuclei_server)
    page.set_input_files("#file-input", str(blank))
    page.wait_for_selector("#image-result:not([hidden])", timeout=60_000)
    assert page.inner_text("#pred-label") == "0 nuclei"
    details = page.inner_text("#pred-details")
    assert "n/a (no nucleus measured)" in details and "n/a µm" not in details, details
    assert errors == []
    page.close()


def test_the_batch_table_names_classes_as_the_result_does(browser, breastmnist_server, tmp_path):  # noqa: F811
    """Two images to breastmnist: the table's probabilities name 'normal or benign' as the label and bars do, not
    the API's 'normal_or_benign'."""
    page, errors = _open(browser, breastmnist_server)
    page.set_input_files("#file-input", [_scan(tmp_path / "a.png"), _scan(tmp_path / "b.png")])
    page.wait_for_selector("#csv-download:enabled", timeout=60_000)
    probabilities = page.inner_text("#batch-table tbody tr:first-child td:nth-child(3)")
    assert probabilities.startswith("normal or benign ") and "_" not in probabilities, probabilities
    assert errors == []
    page.close()


def test_a_proxys_503_reads_as_unavailable_and_a_new_result_is_announced(browser, open_server, tmp_path):  # noqa: F811
    """A 503 without a JSON body (a proxy's, a restart) read only 'The service answered 503.'; and a screen reader
    heard no new result, since #pred-label was no live region."""
    page, errors = _open(browser, open_server)
    assert page.get_attribute("#pred-label", "aria-live") == "polite"
    page.route("**/v1/predict/**", lambda r: r.fulfill(status=503, body="Service Unavailable",
                                                      content_type="text/plain"))
    page.set_input_files("#file-input", _scan(tmp_path / "scan.png"))
    page.wait_for_selector("#image-error:not([hidden])", timeout=60_000)
    assert "The service is unavailable just now (503); try again in a moment." in page.inner_text("#image-error")
    assert errors == []
    page.close()


def test_the_tabs_follow_the_keyboard(browser, open_server):  # noqa: F811
    """The tab list is one tab stop; arrow keys move between its tabs (wrapping), Home and End to the ends, and the
    tab moved to is shown (WAI-ARIA Authoring Practices, tabs pattern); only Tab and Enter worked."""
    page, errors = _open(browser, open_server)
    assert [page.get_attribute(f"#tab-{t}", "tabindex") for t in ("image", "wdbc", "record")] == ["0", "-1", "-1"]
    page.focus("#tab-image")
    for key, shown in (("ArrowRight", "wdbc"), ("ArrowRight", "record"), ("ArrowRight", "image"),
                       ("ArrowLeft", "record"), ("Home", "image"), ("End", "record")):
        page.keyboard.press(key)
        assert page.evaluate("document.activeElement.id") == f"tab-{shown}", key
        assert page.get_attribute(f"#tab-{shown}", "aria-selected") == "true"
        assert page.is_visible(f"#panel-{shown}") and page.get_attribute(f"#tab-{shown}", "tabindex") == "0"
    assert errors == []
    page.close()
