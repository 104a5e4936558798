"""What the page tells a clinician about an answer, in a real browser (launched as in test_browser.py): an answer
still coming, the warnings of each image of a batch (out of scope, seen in training, uncertain), and how the
probabilities and the threshold were obtained. The tiny test models serve (the shipped breastmnist for a model
that states how its threshold was chosen); the servers and helpers are test_page_review's."""

from __future__ import annotations

from .test_browser import browser  # noqa: F401  (chromium)
from .test_page_review import _open, _scan, open_server  # noqa: F401  (the servers)


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
