"""Nucleus predictor: seamless sliding windows, and the watershed that splits touching nuclei."""

import numpy as np
import pytest
import torch

from breastdx.inference.nuclei import InstancePostprocessing, NucleusPredictor, Windows


def _two_touching_discs(shape=(41, 63)):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    d1 = np.hypot(yy - 20, xx - 22)
    d2 = np.hypot(yy - 20, xx - 39)
    fg = (d1 <= 10) | (d2 <= 10)
    interior = np.clip(1 - np.minimum(d1, d2) / 7, 0, 1) * fg  # peaks at the centres, low where they touch
    prob = np.stack([1.0 - fg, interior * 0.9, fg * (1 - interior * 0.9)]).astype(np.float32)
    return prob, fg


def test_watershed_splits_touching_nuclei():
    prob, fg = _two_touching_discs()
    labels = InstancePostprocessing().apply(prob)
    assert labels.dtype == np.int32 and labels.max() == 2
    assert labels[20, 22] != labels[20, 39] and labels[20, 22] > 0
    assert ((labels > 0) == fg).all()  # the foreground is shared out, nothing lost
    # a foreground blob without a marker becomes a nucleus; specks below min_size go
    prob[:, 2:8, 2:8] = np.array([0.0, 0.0, 1.0])[:, None, None]
    prob[:, 36:38, 60:62] = np.array([0.0, 0.0, 1.0])[:, None, None]
    labels = InstancePostprocessing(min_size=20).apply(prob)
    assert labels.max() == 3 and labels[5, 5] > 0 and labels[37, 61] == 0



def test_instance_filters_drop_unseeded_and_faint_regions():
    prob, fg = _two_touching_discs()
    prob[:, 2:8, 2:8] = np.array([0.0, 0.0, 1.0])[:, None, None]  # a 36 px blob without a marker
    assert InstancePostprocessing(unseeded="drop").apply(prob).max() == 2  # the blob goes, the discs stay
    # a faint disc: foreground 0.55 everywhere, so its mean is below 0.7; the strong disc's mean is 1.0
    prob, fg = _two_touching_discs()
    left = np.hypot(*np.mgrid[:41, :63] - np.array([20, 22])[:, None, None]) <= 10
    prob[0][left] = 0.45
    prob[1][left] = np.minimum(prob[1][left], 0.55)
    prob[2][left] = 0.55 - prob[1][left]
    kept = InstancePostprocessing(seed_threshold=0.3, min_mean_foreground=0.7).apply(prob)
    assert kept.max() == 1 and kept[20, 22] == 0 and kept[20, 39] == 1
    assert InstancePostprocessing(seed_threshold=0.3).apply(prob).max() == 2  # the default keeps both
    with pytest.raises(ValueError, match="seed_split"):
        InstancePostprocessing(seed_split=-1)
    with pytest.raises(ValueError, match="unseeded"):
        InstancePostprocessing(unseeded="maybe")
    with pytest.raises(ValueError, match="min_mean_foreground"):
        InstancePostprocessing(min_mean_foreground=1.5)
    for bad in ({"foreground_threshold": -0.1}, {"seed_threshold": float("nan")}, {"seed_threshold": 1.2},
                {"min_seed": -1}, {"min_size": -5}, {"seed_split": float("nan")}):  # e.g. a hand-edited meta.json
        with pytest.raises(ValueError, match=f"postprocessing: {next(iter(bad))} must be"):
            InstancePostprocessing(**bad)

def test_seed_split_separates_nuclei_whose_interiors_join():
    yy, xx = np.mgrid[:41, :61]
    fg = (np.hypot(yy - 20, xx - 22) <= 10) | (np.hypot(yy - 20, xx - 38) <= 10)  # 16 px apart: a 12 px neck
    prob = np.stack([1.0 - fg, 0.9 * fg, 0.1 * fg]).astype(np.float32)  # one flat interior: one marker
    assert InstancePostprocessing().apply(prob).max() == 1
    labels = InstancePostprocessing(seed_split=2).apply(prob)  # centre depth 10 px, neck 7 px: two markers
    assert labels.max() == 2 and labels[20, 22] != labels[20, 38] and ((labels > 0) == fg).all()
    assert InstancePostprocessing(seed_split=5).apply(prob).max() == 1  # deeper than the 3 px dynamic: one


def test_seed_split_never_takes_the_marker_of_a_seed_away():
    """Splitting markers at necks (h-maxima) removed every seed whose depth was under ``seed_split``: a small
    nucleus touching a larger one was merged into it, and an isolated one was dropped with ``unseeded="drop"``; a
    seed that has no deep enough maximum is now one marker, as without splitting."""
    yy, xx = np.mgrid[:41, :81]
    big, big_seed = np.hypot(yy - 20, xx - 25) <= 12, np.hypot(yy - 20, xx - 25) <= 8
    small, small_seed = np.hypot(yy - 20, xx - 44) <= 6, (abs(yy - 20) <= 2) & (abs(xx - 45) <= 2)  # depth 3 px
    fg, seeds = big | small, big_seed | small_seed
    prob = np.stack([1.0 - fg, 0.9 * seeds, fg * (1 - 0.9 * seeds)]).astype(np.float32)
    assert InstancePostprocessing().apply(prob).max() == 2
    for h in (3, 4):
        labels = InstancePostprocessing(seed_split=h).apply(prob)
        assert labels.max() == 2 and labels[20, 25] != labels[20, 45] > 0 and ((labels > 0) == fg).all()
    alone, alone_seed = np.hypot(yy - 20, xx - 65) <= 6, (abs(yy - 20) <= 2) & (abs(xx - 65) <= 2)
    fg, seeds = big | alone, big_seed | alone_seed
    prob = np.stack([1.0 - fg, 0.9 * seeds, fg * (1 - 0.9 * seeds)]).astype(np.float32)
    labels = InstancePostprocessing(seed_split=4, unseeded="drop").apply(prob)
    assert labels.max() == 2 and labels[20, 65] > 0


def test_markers_from_the_distance_output_split_what_the_interior_joins():
    yy, xx = np.mgrid[:41, :61]
    d1, d2 = np.hypot(yy - 20, xx - 22), np.hypot(yy - 20, xx - 38)
    fg = (d1 <= 10) | (d2 <= 10)
    prob = np.stack([1.0 - fg, 0.9 * fg, 0.1 * fg]).astype(np.float32)  # one flat interior: one marker
    distance = (np.clip(1 - np.minimum(d1, d2) / 10, 0, 1) * fg).astype(np.float32)  # a peak per nucleus
    with_distance = np.concatenate([prob, distance[None]])
    assert InstancePostprocessing().apply(with_distance).max() == 1  # interior markers ignore the fourth channel
    labels = InstancePostprocessing(markers="distance").apply(with_distance)
    assert labels.max() == 2 and labels[20, 22] != labels[20, 38] and ((labels > 0) == fg).all()
    assert (labels[:, :30] != labels[20, 38]).all()  # cut at the valley, column 30
    with pytest.raises(ValueError, match="distance output"):
        InstancePostprocessing(markers="distance").apply(prob)
    with pytest.raises(ValueError, match="markers"):
        InstancePostprocessing(markers="boundary")


class _Local(torch.nn.Module):
    """A network whose output at a pixel depends on a 3 x 3 neighbourhood: windows must stitch exactly."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_sliding_windows_stitch_without_seams():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (101, 133, 3), dtype=np.uint8)
    net = _Local()
    meta = {"inference": {"windows": {"roi_size": 48, "overlap": 0.25}}}
    predictor = NucleusPredictor(net, meta)
    assert predictor.windows == Windows(roi_size=48, overlap=0.25)
    tiled = predictor.probabilities(image)
    with torch.no_grad():
        x = torch.from_numpy(image.transpose(2, 0, 1)).float()[None] / 255
        whole = torch.softmax(net(x), 1)[0].numpy()
    assert tiled.shape == (3, 101, 133)
    # Every pixel agrees with the whole image's prediction, also where a window's zero-padded edge falls and near
    # the tile's corners (MONAI's clamped Gaussian map gives errors of 0.07 there).
    assert np.abs(tiled - whole).max() < 1e-3
    labels, prob = predictor.predict(image)
    assert labels.shape == (101, 133) and prob.shape == (3, 101, 133)


def test_from_dir_refuses_another_task(tmp_path):
    from breastdx.models.saved import ModelFolderError

    (tmp_path / "meta.json").write_text('{"schema_version": 1, "task": "busi-seg", "architecture": "unet", '
                                        '"class_names": ["a", "b"], "weights_file": "model.safetensors"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFolderError, match="not 'monuseg'"):
        NucleusPredictor.from_dir(tmp_path)


def test_dihedral_inverse_and_tta_average():
    from breastdx.inference.nuclei import TTA_TRANSFORMS, dihedral

    x = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
    images = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(images) == 8  # eight distinct symmetries
    for k in range(8):
        assert np.array_equal(dihedral(dihedral(x, k), k, inverse=True), x)
    assert np.array_equal(dihedral(x, 1), torch.rot90(torch.from_numpy(x), 1, dims=(-2, -1)).numpy())
    assert TTA_TRANSFORMS["flip"] == (0, 2, 4, 6)
    # TTA is the mean of the network's maps on the turned tile, each turned back: by hand for 'flip'
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    net = _Local()
    meta = {"inference": {"windows": {"roi_size": 32, "overlap": 0.25}, "tta": "flip"}}
    predictor = NucleusPredictor(net, meta)
    assert predictor.tta == "flip"
    plain = NucleusPredictor(net, meta, tta="none")
    flipped = [plain.probabilities(image[:, ::-1].copy())[:, :, ::-1], plain.probabilities(image[::-1].copy())[:, ::-1],
               plain.probabilities(image[::-1, ::-1].copy())[:, ::-1, ::-1], plain.probabilities(image)]
    assert np.abs(predictor.probabilities(image) - np.mean(flipped, axis=0)).max() < 1e-5
    assert not np.allclose(predictor.probabilities(image), plain.probabilities(image), atol=1e-3)
    with pytest.raises(ValueError, match="expected one of none, flip, d8"):
        NucleusPredictor(net, meta, tta="rot")


@pytest.mark.parametrize("shape, roi, overlap, batch", [((101, 133), 48, 0.25, 1), ((101, 133), 48, 0.125, 3),
                                                         ((48, 48), 48, 0.25, 2), ((30, 70), 48, 0.25, 1),
                                                         ((97, 50), 32, 0.5, 4)])
def test_sliding_window_is_monai_sliding_window_inference(shape, roi, overlap, batch):
    """The windows, reflection padding and Gaussian blending are MONAI's (issue 17: written here only so that a
    cold predict does not import MONAI)."""
    from monai.inferers import sliding_window_inference

    from breastdx.inference.nuclei import gaussian_weights, sliding_window, window_starts

    torch.manual_seed(3)
    x = torch.rand(1, 3, *shape)
    net = _Local()
    predict = lambda t: torch.softmax(net(t), 1)  # noqa: E731
    w = gaussian_weights(roi)
    assert w.dtype == np.float32 and w.shape == (roi, roi)
    with torch.no_grad():
        ours = sliding_window(x.numpy(), roi, overlap, batch, lambda a: predict(torch.from_numpy(a)).numpy(), w)
        theirs = sliding_window_inference(x, (roi, roi), batch, predict, overlap=overlap,
                                          roi_weight_map=torch.from_numpy(w), padding_mode="reflect")
    assert ours.shape == (1, 3, *shape) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, torch.as_tensor(theirs).numpy(), atol=1e-6, rtol=1e-5)
    assert window_starts(100, 48, 0.25) == [0, 36, 52] and window_starts(48, 48, 0.25) == [0]
    with pytest.raises(ValueError, match="one image"):
        sliding_window(np.zeros((2, 3, 50, 50), np.float32), 48, 0.25, 1, predict, w)


def test_model_folder_runs_on_onnx_runtime_without_importing_monai_or_torch(tmp_path):
    """Once its graph is cached, a model folder runs on ONNX Runtime (float32, CPU), its maps those of PyTorch, and
    the process imports neither MONAI (about 2 s of start-up) nor PyTorch (about 1.3 s), Macenko stain normalisation
    (as the shipped model has) included."""
    from breastdx.data.stain import MacenkoNormalizer

    import json
    import subprocess
    import sys

    from breastdx.models.networks import build_network
    from breastdx.models.saved import save_weights, write_meta

    target = np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    target[..., 0] //= 2  # a bluish-purple "stain": red absorbed most
    stain = MacenkoNormalizer().fit(target)
    torch.manual_seed(0)
    args = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1, "norm": "batch"}
    net, args = build_network("unet", 3, 3, **args)
    save_weights(net, tmp_path / "model.safetensors")
    write_meta(tmp_path, {"task": "monuseg", "kind": "nucleus_instances", "architecture": "unet",
                          "architecture_args": args, "in_channels": 3, "weights_file": "model.safetensors",
                          "class_names": ["background", "interior", "boundary"],
                          "inference": {"windows": {"roi_size": 32, "overlap": 0.125}, "tta": "flip",
                                        "validated_dtypes": ["float32"]},
                          "stain_normalisation": {"method": "macenko", **stain.reference()}})
    image = np.random.default_rng(4).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    np.save(tmp_path / "image.npy", image)
    NucleusPredictor.from_dir(tmp_path, onnx_dir=tmp_path / "onnx")  # exports the graph once, with PyTorch
    code = f"""
import sys, json, numpy as np
from breastdx.inference.nuclei import NucleusPredictor
p = NucleusPredictor.from_dir({str(tmp_path)!r}, onnx_dir={str(tmp_path / "onnx")!r})  # the cached graph
prob = p.probabilities(np.load({str(tmp_path / "image.npy")!r}))
np.save({str(tmp_path / "onnx.npy")!r}, prob)
print(json.dumps({{"backend": p.runner.backend, "monai": "monai" in sys.modules, "torch": "torch" in sys.modules,
                  "stain": p.normalizer is not None and p.normalizer.fitted}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts == {"backend": "onnxruntime", "monai": False, "torch": False, "stain": True}
    torch_prob = NucleusPredictor.from_dir(tmp_path, backend="torch").probabilities(image)
    np.testing.assert_allclose(np.load(tmp_path / "onnx.npy"), torch_prob, atol=1e-4)


def test_a_distance_output_gets_a_sigmoid_beside_the_class_softmax(tmp_path):
    """A model folder with ``extra_outputs``: a fourth logit, its sigmoid, the same on PyTorch and ONNX Runtime."""
    from breastdx.inference.onnx_graphs import graph_path
    from breastdx.models.networks import build_network
    from breastdx.models.saved import save_weights, write_meta

    torch.manual_seed(0)
    net, args = build_network("unet", 3, 4, channels=[4, 8], strides=[2], num_res_units=1, norm="batch")
    save_weights(net, tmp_path / "model.safetensors")
    meta = {"task": "monuseg", "kind": "nucleus_instances", "architecture": "unet", "architecture_args": args,
            "in_channels": 3, "weights_file": "model.safetensors", "extra_outputs": ["distance"],
            "class_names": ["background", "interior", "boundary"],
            "inference": {"windows": {"roi_size": 32, "overlap": 0.125}, "validated_dtypes": ["float32"]}}
    write_meta(tmp_path, meta)
    image = np.random.default_rng(4).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    p = NucleusPredictor.from_dir(tmp_path, backend="torch")
    prob = p.probabilities(image)
    assert prob.shape == (4, 40, 50)
    np.testing.assert_allclose(prob[:3].sum(0), 1.0, atol=1e-5)
    x = torch.from_numpy(image.transpose(2, 0, 1)[None, :, :32, :32].astype(np.float32) / 255)
    with torch.inference_mode():
        want = torch.sigmoid(net.eval()(x)[0, 3]).numpy()
    got = NucleusPredictor(net, meta, windows=Windows(roi_size=32)).probabilities(image[:32, :32])[3]
    np.testing.assert_allclose(got, want, atol=1e-5)
    onnx = NucleusPredictor.from_dir(tmp_path, backend="onnxruntime", onnx_dir=tmp_path / "onnx")
    np.testing.assert_allclose(onnx.probabilities(image), prob, atol=1e-4)
    view = {**meta, "preprocessing": {"image_size": 32}}
    plain = {k: v for k, v in view.items() if k != "extra_outputs"}
    assert graph_path(tmp_path, tmp_path, view) != graph_path(tmp_path, tmp_path, plain)  # not the same graph
