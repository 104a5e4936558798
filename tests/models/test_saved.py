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
