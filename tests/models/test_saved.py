"""Model folders: the model card names the positive class that meta.json gives."""

from breastdx.models.saved import write_meta, write_model_card


def test_model_card_names_the_positive_class_of_meta(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    meta = write_meta(tmp_path, {"task": "idc", "architecture": "compact_cnn", "weights_file": "model.safetensors",
                                 "class_names": ["idc", "non_idc"], "positive_class": "idc"})
    write_model_card(tmp_path, meta, title="t", summary="s", data="d", evaluation="e", limitations=["l"])
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "positive class: idc" in card and "positive class: non_idc" not in card


def test_metrics_table_says_when_there_is_no_interval():
    from breastdx.models.saved import metrics_table

    table = metrics_table({"dice": {"value": 0.7723, "ci95": None}, "auroc": {"value": 0.9, "ci95": [0.85, 0.95]},
                           "auroc_adenosis": {"value": float("nan"), "ci95": [float("nan"), float("nan")]}})
    assert table.splitlines()[2:] == ["| dice | 0.772 | none |", "| auroc | 0.900 | 0.850 – 0.950 |",
                                      "| auroc_adenosis | n/a | none |"]


def test_model_card_counts_the_nearest_training_images_in_words_that_read(tmp_path):
    """A small bank's k of 1, 2 or 3 read "the 1th nearest of ... training images" in the card's out-of-scope
    section (the predictions' note was fixed, the card was not)."""
    (tmp_path / "model.safetensors").write_bytes(b"")
    for k, said in [(1, "1st"), (2, "2nd"), (3, "3rd"), (12, "12th")]:
        meta = write_meta(tmp_path, {"task": "idc", "architecture": "compact_cnn", "weights_file": "model.safetensors",
                                     "class_names": ["idc", "non_idc"],
                                     "ood": {"k": k, "n_bank": 40, "bank_file": "ood_bank.safetensors",
                                             "threshold": 0.1, "quantile": 0.95, "n_calibration": 10}})
        write_model_card(tmp_path, meta, title="t", summary="s", data="d", evaluation="e", limitations=["l"])
        card = (tmp_path / "MODEL_CARD.md").read_text(encoding="utf-8")
        assert f"to the {said} nearest of 40 training images" in card


def test_ordinal_names_the_neighbour_in_english_for_the_card_and_the_scope_note():
    import numpy as np

    from breastdx.inference.ood import OodScorer
    from breastdx.models.saved import ordinal

    assert [ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 40, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "40th", "101st", "111th"]
    scorer = OodScorer({"k": 2, "threshold": 0.1}, np.eye(3, dtype=np.float32))
    assert "to the 2nd nearest training image" in scorer.note(0.5) and scorer.note(0.05) == ""


def test_a_calibration_updates_the_card_threshold_and_says_the_figures_are_from_before(tmp_path):
    """``breastdx calibrate`` rewrote meta.json but not MODEL_CARD.md: the card kept the old decision threshold and
    gave its test figures as if measured at the new one."""
    from breastdx.models.saved import CALIBRATION_SECTION, note_calibration

    (tmp_path / "model.safetensors").write_bytes(b"")
    meta = write_meta(tmp_path, {"task": "idc", "architecture": "compact_cnn", "weights_file": "model.safetensors",
                                 "class_names": ["normal", "tumour"], "threshold": 0.41, "temperature": 1.2,
                                 "metrics": {"sensitivity": {"value": 0.8, "ci95": [0.7, 0.9]}}})
    write_model_card(tmp_path, meta, title="t", summary="s", data="d", evaluation="e", limitations=["l"])
    assert note_calibration(tmp_path / "none", meta, {}) is False  # no card, nothing written
    for run, threshold in enumerate((0.25, 0.3)):
        meta.update(threshold=threshold, temperature=0.9, threshold_rule="Youden's J on validation")
        record = {"fitted": ["temperature", "conformal"], "when": f"2026-12-0{run + 1}T00:00:00Z",
                  "split": "val split of split.json (n = 20)", "threshold_before": 0.41 if run == 0 else 0.25,
                  "temperature_before": 1.2}
        assert note_calibration(tmp_path, meta, record) is True
    card = (tmp_path / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "- Decision threshold: 0.3" in card.splitlines() and "0.41\n" not in card
    assert card.count(CALIBRATION_SECTION) == 1 and card.index(CALIBRATION_SECTION) > card.index("## Limitations")
    section = card[card.index(CALIBRATION_SECTION):]
    assert "2026-12-02T00:00:00Z: `breastdx calibrate --fit temperature,conformal` on val split of split.json" in section
    assert "decision threshold 0.300 (before: 0.250)" in section and "measured before this calibration" in section
    assert "2026-12-01" not in card and "| sensitivity | 0.800 |" in card  # the figures stay, said to be from before
