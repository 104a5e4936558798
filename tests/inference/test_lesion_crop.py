"""Lesion-aware busi-cls (inference/lesion_crop.py): the three networks of a fusion run as the command asked."""

from pathlib import Path

import numpy as np
import pytest

from breastdx.inference.base import load_predictor
from breastdx.inference.lesion_crop import LESION_MODEL_FOLDER, LesionFusion

BUSI_CLS = Path(__file__).resolve().parents[2] / "src" / "breastdx" / "zoo" / "busi-cls"


@pytest.mark.parametrize("options", [{"backend": "torch"}, {"backend": "onnxruntime", "dtype": "float32"}])
def test_the_segmenter_that_finds_the_crop_runs_with_the_options_asked_for(options):
    """--backend and --dtype reach the busi-seg segmenter of the lesion crops, not only the two classifiers (its
    backend stayed 'auto' whatever was asked)."""
    if not (BUSI_CLS / LESION_MODEL_FOLDER / "meta.json").is_file():
        pytest.skip("no shipped busi-cls lesion-crop model")
    whole = load_predictor(BUSI_CLS, task="busi-cls", batch_size=2, **options)
    fusion = LesionFusion.for_whole_model(whole, BUSI_CLS, batch_size=2, **options)
    segmenter = fusion.cropper.segmenter
    assert (whole.backend, fusion.crop_model.backend, segmenter.backend) == (options["backend"],) * 3
    assert segmenter.batch_size == 2 and segmenter.dtype == "float32"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (70 + 9 * i, 83), dtype=np.uint8) for i in range(2)]
    prob = fusion(images, whole.predict_proba(images))
    assert prob.shape == (2, 3) and np.allclose(prob.sum(axis=1), 1.0)
