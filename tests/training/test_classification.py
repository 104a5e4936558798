"""The classification LightningModule and training loop on tiny synthetic data."""

import numpy as np
import pytest
import torch

from breastdx.data.classification import ClassificationDataset
from breastdx.data.transforms import Preprocessing
from breastdx.models.multitask import MultiTaskUNet
from breastdx.training.classification import (ClassificationModule, ClassifierOptim, FitSettings, check_architectures,
                                              fit_classifier, parse_arch_args, predict_logits, run_architecture)

NAMES = ("normal", "benign", "malignant")


def _dataset(n=24, size=32, seed=0, masks=True):
    """Bright squares whose size encodes the class: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
    m = np.zeros((n, size, size), bool)
    for i, k in enumerate(labels):
        if k:
            r = 4 * k
            m[i, 16 - r:16 + r, 16 - r:16 + r] = True
            images[i][m[i]] = 220
    return ClassificationDataset(images, labels, Preprocessing(image_size=size), NAMES, m if masks else None)


def test_module_losses_and_multitask_step():
    net = MultiTaskUNet(1, 3, channels=(8, 16, 32), strides=(2, 2))
    module = ClassificationModule(net, 3, torch.tensor([1.0, 2.0, 1.0]), ClassifierOptim(seg_weight=0.5))
    assert module.multitask
    ds = _dataset()
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ("image", "label", "mask")}
    loss = module.training_step(batch, 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    without = ClassificationModule(MultiTaskUNet(1, 3, channels=(8, 16, 32), strides=(2, 2)), 3,
                                   optim=ClassifierOptim(seg_weight=0.0))
    assert not without.multitask
    assert not ClassificationModule(MultiTaskUNet(1, 3, decoder=False), 3).multitask


def test_fit_and_predict_logits(tmp_path):
    train, val = _dataset(seed=0), _dataset(n=12, seed=1, masks=False)
    net = MultiTaskUNet(1, 3, channels=(8, 16, 32), strides=(2, 2))
    settings = FitSettings(epochs=2, batch_size=8, progress_bar=False, seed=0)
    result = fit_classifier(net, train, val, tmp_path / "arch", settings, ClassifierOptim(lr=3e-3))
    assert result.is_global_zero and result.epochs_run == 2 and result.best_epoch in (0, 1)
    assert not (tmp_path / "arch" / "checkpoints").exists()  # no Lightning file is kept
    assert (tmp_path / "arch" / "training_log" / "metrics.csv").is_file()
    assert result.info["class_weights"] == [1.0, 1.0, 1.0] and result.info["seg_weight"] == 1.0
    z = predict_logits(result.network, val)
    assert z.shape == (12, 3) and np.isfinite(z).all()
    z_tta = predict_logits(result.network, val, tta="hflip")
    assert z_tta.shape == (12, 3)
    with pytest.raises(ValueError, match="tta must be one of"):
        predict_logits(result.network, val, tta="rot90")


def test_weight_averaging_validates_and_exports_the_average(tmp_path):
    """With ``ema_decay`` the exported weights are the ones validated (their val_nll is the best score), and they
    are not the trained weights of the same run without the average."""
    from breastdx.evaluation.calibration import nll

    train, val = _dataset(seed=0), _dataset(n=12, seed=1, masks=False)
    settings = FitSettings(epochs=2, batch_size=8, progress_bar=False, seed=0, monitor="val_nll")

    def run(name, decay):
        torch.manual_seed(0)
        net = MultiTaskUNet(1, 3, channels=(8, 16, 32), strides=(2, 2))
        return fit_classifier(net, train, val, tmp_path / name, settings, ClassifierOptim(lr=3e-3, ema_decay=decay))

    ema, raw = run("ema", 0.5), run("raw", 0.0)
    assert ema.info["ema_decay"] == 0.5 and raw.info["ema_decay"] == 0.0
    assert nll(val.labels, predict_logits(ema.network, val)) == pytest.approx(ema.best_score, rel=1e-4)
    assert nll(val.labels, predict_logits(raw.network, val)) == pytest.approx(raw.best_score, rel=1e-4)
    assert any(not torch.equal(a, b) for a, b in zip(ema.network.state_dict().values(),
                                                       raw.network.state_dict().values()))
    with pytest.raises(ValueError, match="ema_decay"):
        ClassificationModule(ema.network, 3, optim=ClassifierOptim(ema_decay=1.5))


def test_run_architecture_is_seeded(tmp_path):
    train, val, test = _dataset(seed=0), _dataset(n=12, seed=1, masks=False), _dataset(n=12, seed=2, masks=False)
    settings = FitSettings(epochs=1, batch_size=8, progress_bar=False, seed=3, imbalance="sampler")
    args = {"channels": [8, 16, 32], "strides": [2, 2]}
    runs = [run_architecture("unet_multitask", args, 1, train, val, test, tmp_path / f"r{i}", settings,
                             ClassifierOptim(), n_boot=50) for i in range(2)]
    np.testing.assert_allclose(runs[0].test_logits, runs[1].test_logits)
    assert runs[0].test["metrics"] == runs[1].test["metrics"]
    assert runs[0].calibration["temperature"] > 0 and 0 <= runs[0].calibration["threshold"] <= 1


def test_option_parsing():
    assert parse_arch_args("", ("resnet18",)) == {"resnet18": {}}
    assert parse_arch_args('{"unet_multitask": {"head_levels": 1}}', ("unet_multitask", "resnet18")) == {
        "unet_multitask": {"head_levels": 1}, "resnet18": {}}
    with pytest.raises(ValueError, match="not among --archs"):
        parse_arch_args('{"densenet121": {}}', ("resnet18",))
    with pytest.raises(ValueError, match="JSON object"):
        parse_arch_args("{oops", ("resnet18",))
    with pytest.raises(ValueError, match="segmentation network"):
        check_architectures(("unet",), {}, 1, 3)
    with pytest.raises(ValueError, match="has no argument"):
        check_architectures(("resnet18",), {"resnet18": {"depth": 3}}, 1, 3)
    with pytest.raises(ValueError, match=r"Option --arch-args: MultiTaskUNet: strides must have one entry fewer"):
        check_architectures(("unet_multitask",), {"unet_multitask": {"channels": [4, 8, 16]}}, 1, 3)  # a bad value


def test_a_network_without_a_gradcam_layer_is_refused_before_training(monkeypatch):
    """The saved model explains itself with Grad-CAM: an architecture without a target layer in its registry
    entry fails at the option check, not after training (it used to train fully, then fail while saving)."""
    import dataclasses

    from breastdx.models.networks import NETWORKS

    check_architectures(("resnet18", "unet_multitask"), {}, 1, 3)  # known layers pass
    entry = NETWORKS.get("resnet18")
    monkeypatch.setitem(NETWORKS._entries, "resnet18", dataclasses.replace(entry, gradcam_layer=None))
    with pytest.raises(ValueError, match="'resnet18' has no Grad-CAM target layer"):
        check_architectures(("resnet18",), {}, 1, 3)


def test_an_image_size_the_network_cannot_take_is_refused():
    check_architectures(("densenet121",), {}, 1, 2, image_size=32)
    with pytest.raises(ValueError, match="at least 29"):
        check_architectures(("densenet121",), {}, 1, 2, image_size=16)


def test_mixup_mixes_images_and_both_losses():
    """Mixup (``mixup_alpha``): the step sees ``lam x + (1 - lam) x[perm]`` and its class and mask losses are
    ``lam L(y) + (1 - lam) L(y[perm])``, computed here by hand from the same draws of the seeded generator."""
    ds = _dataset()
    batch = {k: torch.stack([ds[i][k] for i in range(6)]) for k in ("image", "label", "mask")}
    torch.manual_seed(0)
    net = MultiTaskUNet(1, 3, channels=(8, 16, 32), strides=(2, 2))
    module = ClassificationModule(net, 3, optim=ClassifierOptim(seg_weight=0.5, mixup_alpha=0.4))
    torch.manual_seed(7)
    loss = module.training_step(batch, 0)
    torch.manual_seed(7)
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    perm = torch.randperm(6)
    assert 0 < lam < 1 and not torch.equal(perm, torch.arange(6))
    x = lam * batch["image"] + (1 - lam) * batch["image"][perm]
    logits, seg = net.forward_multitask(x)
    ce = torch.nn.functional.cross_entropy
    y, m = batch["label"], batch["mask"]
    expected = (lam * ce(logits, y) + (1 - lam) * ce(logits, y[perm])
                + 0.5 * (lam * module.seg_loss(seg, m) + (1 - lam) * module.seg_loss(seg, m[perm])))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    off = ClassificationModule(net, 3, optim=ClassifierOptim(seg_weight=0.5))
    torch.manual_seed(7)  # the same dropout draws
    logits, seg = net.forward_multitask(batch["image"])
    plain = ce(logits, y) + 0.5 * module.seg_loss(seg, m)
    torch.manual_seed(7)
    assert off.training_step(batch, 0).item() == pytest.approx(plain.item(), rel=1e-5)
    assert abs(plain.item() - loss.item()) > 1e-3
    with pytest.raises(ValueError, match="mixup_alpha"):
        ClassificationModule(net, 3, optim=ClassifierOptim(mixup_alpha=-1.0))
