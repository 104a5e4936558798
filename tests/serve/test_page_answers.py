"""What the page tells a clinician about an answer, in a real browser (launched as in test_browser.py): an answer
still coming, the warnings of each image of a batch (out of scope, seen in training, uncertain), and how the
probabilities and the threshold were obtained. The tiny test models serve (the shipped breastmnist for a model
that states how its threshold was chosen); the servers and helpers are test_page_review's."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .conftest import png_bytes, training_scan
from .test_browser import browser  # noqa: F401  (chromium)
from .test_page_review import _open, _scan, breastmnist_server, open_server  # noqa: F401  (the servers)


def test_an_answer_still_coming_is_shown_as_such(browser, open_server, tmp_path):  # noqa: F811
    """One image whose answer is slow (a large H&E tile takes 20 s): the page said nothing at all until the answer
    came, as if the upload had been lost (the batch table, which says 'waiting', is shown for several files only)."""
    page, errors = _open(browser, open_server)
    held = []
    page.route("**/v1/predict/**", lambda r: held.append(r))
    page.set_input_files("#file-input", _scan(tmp_path / "slow.png"))
    page.wait_for_selector("#image-progress:not([hidden])", timeout=10_000)
    assert "Predicting slow.png" in page.inner_text("#image-progress")
    page.wait_for_timeout(1500)
    assert " s" in page.inner_text("#image-progress")  # the seconds waited so far
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    held[0].continue_()
    page.wait_for_selector("#pred-label:not(:empty)", timeout=60_000)
    assert page.is_hidden("#image-progress") and errors == []
    page.close()


def test_the_batch_table_and_its_csv_carry_each_images_warnings(browser, open_server, tmp_path):  # noqa: F811
    """Three images in one batch: the tiny classifier's own training image, a colour photograph (out of scope for
    a grey-ultrasound model) and a new scan. The table showed each label and probabilities alone, and its CSV had no
    column for the warnings, which the page showed only for the image opened."""
    from PIL import Image

    seen = tmp_path / "seen.png"
    seen.write_bytes(png_bytes(training_scan()))
    colour = tmp_path / "photo.png"
    rgb = np.zeros((80, 100, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 40
    rgb[20:60, 30:70, 1] = 180
    Image.fromarray(rgb).save(colour)
    new = _scan(tmp_path / "new.png")
    page, errors = _open(browser, open_server)
    page.set_input_files("#file-input", [str(seen), str(colour), new])
    page.wait_for_selector("#csv-download:enabled", timeout=90_000)
    rows = [page.inner_text(f"#batch-table tbody tr:nth-child({k})") for k in (1, 2, 3)]
    assert "trained on this image" in rows[0] and "out of scope" not in rows[0], rows[0]
    assert "out of scope" in rows[1], rows[1]
    with page.expect_download() as info:
        page.click("#csv-download")
    records = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))[:3]
    assert [r["in_scope"] for r in records] == ["true", "false", "true"], records
    assert records[1]["scope_note"].startswith("a colour image") and records[0]["scope_note"] == ""
    assert [r["seen_in_training"] for r in records] == ["yes", "no", "no"]
    sets = [r["prediction_set"] for r in records]
    assert all(s for s in sets) and all(set(s.split("|")) <= {"normal", "benign", "malignant"} for s in sets), sets
    for row, s in zip(rows, sets):  # a set of several classes reads as uncertain in the table as in the result
        assert ("uncertain" in row) == ("|" in s), (row, s)
    assert errors == []
    page.close()


def test_the_rule_says_the_probabilities_are_calibrated(browser, open_server, tmp_path):  # noqa: F811
    """The tiny classifier was temperature-scaled (T = 1.5): the result said nothing of how its probabilities were
    obtained. The tiny WDBC model states no calibration, and nothing is claimed for it."""
    page, errors = _open(browser, open_server)
    page.select_option("#task-select", "busi-cls")
    page.set_input_files("#file-input", _scan(tmp_path / "scan.png"))
    page.wait_for_selector("#pred-label:not(:empty)", timeout=60_000)
    rule = page.inner_text("#pred-rule")
    assert "calibrated by temperature scaling (T = 1.50)" in rule, rule
    page.click("#tab-wdbc")
    page.click("#wdbc-example")
    page.click("#wdbc-submit")
    page.wait_for_selector("#wdbc-result:not([hidden])", timeout=30_000)
    assert "calibrated" not in page.inner_text("#wdbc-rule")
    assert errors == []
    page.close()


def test_the_rule_says_how_the_threshold_was_chosen(browser, breastmnist_server, tmp_path):  # noqa: F811
    """The shipped breastmnist model's threshold was chosen for a sensitivity of at least 0.9 on the validation
    split (meta.json threshold_rule, listed by GET /v1/models): the result stated the threshold but not that."""
    page, errors = _open(browser, breastmnist_server)
    page.set_input_files("#file-input", _scan(tmp_path / "scan.png"))
    page.wait_for_selector("#pred-label:not(:empty)", timeout=60_000)
    rule = page.inner_text("#pred-rule")
    assert "How the threshold was chosen: highest threshold with sensitivity >= 0.9 on the validation split" in rule, rule
    assert "calibrated by temperature scaling (T = 0.85)" in rule, rule
    assert errors == []
    page.close()


def test_the_record_tab_says_it_shows_the_newest_50_and_times_in_utc(browser, open_server, wdbc_features):  # noqa: F811
    """With more than 50 predictions recorded the tab listed the newest 50 without a word of the others, and each
    time read '2026-01-02 03:04:05+00:00' under 'Time (UTC)' (the offset was meant to be cut, as a 'Z' was)."""
    import httpx

    for _ in range(51):
        assert httpx.post(open_server + "/v1/predict/wdbc", json={"features": wdbc_features()}).status_code == 200
    total = httpx.get(open_server + "/v1/predictions?limit=1").json()["total"]
    page, errors = _open(browser, open_server)
    page.click("#tab-record")
    page.wait_for_selector("#record-table tbody tr:nth-child(50)", timeout=30_000)
    assert page.inner_text("#record-count").startswith(f"The newest 50 of {total} recorded predictions")
    time = page.inner_text("#record-table tbody tr:first-child td:nth-child(2)")
    assert len(time) == 19 and time[10] == " " and "+" not in time, time
    assert errors == []
    page.close()


def test_an_answer_that_never_comes_is_said_after_the_timeout(browser, open_server, tmp_path):  # noqa: F811
    """A service that hangs: the page counted "Predicting… N s" for ever. After its timeout (300 s; 2 s here) it says
    there is no answer, and stops counting."""
    page, errors = _open(browser, open_server)
    page.evaluate("window.BREASTDX_ANSWER_TIMEOUT_S = 2")
    page.route("**/v1/predict/**", lambda route: None)  # held: never answered
    page.set_input_files("#file-input", _scan(tmp_path / "hung.png"))
    page.wait_for_selector("#image-error:not(:empty)", timeout=20_000)
    said = page.inner_text("#image-error")
    assert said.startswith("hung.png: No answer after 2 s: the service may be overloaded or stopped"), said
    assert page.is_hidden("#image-progress") and errors == []
    page.close()
