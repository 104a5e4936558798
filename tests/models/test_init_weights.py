"""Initial weights from safetensors files: prefix matching, shape checks, reports, the pretrained path, busi-seg."""

import json

import pytest
import torch
from safetensors.torch import save_file

from breastdx.models.init_weights import (PRETRAINED_WEIGHTS, InitWeightsError, check_no_leak, fetch_weights,
                                          init_from_busi_seg, init_from_file, init_pretrained, load_state_dict_into)
from breastdx.models.multitask import MultiTaskUNet
from breastdx.models.networks import build_network


def _save(state, path):
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_same_network_all_keys_match(tmp_path):
    torch.manual_seed(0)
    src, _ = build_network("resnet18", 1, 3)
    dst, _ = build_network("resnet18", 1, 3)
    report = init_from_file(dst, _save(src.state_dict(), tmp_path / "w.safetensors"))
    assert len(report.matched) == len(src.state_dict()) and not report.missing and not report.unexpected
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_prefix_and_head_of_another_size(tmp_path):
    """A Lightning-style ``network.`` prefix is stripped; a 2-class head does not fit a 3-class one."""
    src, _ = build_network("resnet18", 1, 2)
    state = {f"network.{k}": v for k, v in src.state_dict().items()}
    state["network.extra.weight"] = torch.zeros(3)
    dst, _ = build_network("resnet18", 1, 3)
    report = init_from_file(dst, _save(state, tmp_path / "w.safetensors"))
    assert report.mapping == ("network.", "")
    assert sorted(k for k, _, _ in report.shape_mismatch) == ["fc.bias", "fc.weight"]
    assert report.missing == ["fc.weight", "fc.bias"]
    assert report.unexpected == ["network.extra.weight"]
    torch.testing.assert_close(dst.conv1.weight, src.conv1.weight)
    d = report.to_dict()
    assert d["n_matched"] == len(src.state_dict()) - 2 and d["n_shape_mismatch"] == 2
    assert "loaded" in report.summary()


def test_unet_weights_into_the_multitask_encoder(tmp_path):
    seg, _ = build_network("unet", 1, 2)
    net = MultiTaskUNet(1, 3)
    f = _save(seg.state_dict(), tmp_path / "unet.safetensors")
    report = init_from_file(net, f, include=net.encoder_parameter_names())
    assert report.mapping == ("", "unet.") and set(report.matched) == set(net.encoder_parameter_names())
    assert "head.1.weight" in report.missing
    name = net.encoder_parameter_names()[0]
    torch.testing.assert_close(net.state_dict()[name], seg.state_dict()[name[len("unet."):]])


def test_exclude_and_nothing_fits(tmp_path):
    src, _ = build_network("resnet18", 1, 3)
    dst, _ = build_network("resnet18", 1, 3)
    report = load_state_dict_into(dst, src.state_dict(), exclude=("fc.",))
    assert "fc.weight" in report.missing and "fc.weight" not in report.matched
    with pytest.raises(InitWeightsError, match="no tensor fits the network"):
        load_state_dict_into(dst, {"a.b": torch.zeros(2)}, "x.safetensors")


def test_only_safetensors_are_read(tmp_path):
    net, _ = build_network("resnet18", 1, 3)
    pickle = tmp_path / "w.pth"
    torch.save(net.state_dict(), pickle)
    with pytest.raises(InitWeightsError, match="safetensors files only, never pickles"):
        init_from_file(net, pickle)
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InitWeightsError, match="not a valid safetensors file"):
        init_from_file(net, bad)
    with pytest.raises(InitWeightsError, match="no such weights file"):
        init_from_file(net, tmp_path / "missing.safetensors")


def test_pretrained_needs_a_url_and_works_with_file_urls(tmp_path):
    """No published 2-D safetensors weights exist: the table is empty; a file:// URL goes the download path."""
    import hashlib

    assert PRETRAINED_WEIGHTS == {}
    net, _ = build_network("resnet18", 1, 3)
    with pytest.raises(InitWeightsError, match="No published safetensors weights"):
        init_pretrained(net, "resnet18", cache_dir=tmp_path / "cache")
    torch.manual_seed(1)
    src, _ = build_network("resnet18", 1, 3)
    f = _save(src.state_dict(), tmp_path / "published.safetensors")
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    report = init_pretrained(net, "resnet18", url=f.as_uri(), sha256=sha, cache_dir=tmp_path / "cache")
    assert report.source == f.as_uri() and not report.missing
    assert (tmp_path / "cache" / f"{sha}.safetensors").is_file()  # cached
    f.unlink()
    assert fetch_weights(f.as_uri(), sha256=sha, cache_dir=tmp_path / "cache").is_file()  # from the cache
    with pytest.raises(InitWeightsError, match="SHA-256 .* differs"):
        fetch_weights((tmp_path / "cache" / f"{sha}.safetensors").as_uri(), sha256="0" * 64,
                      cache_dir=tmp_path / "other")
    with pytest.raises(InitWeightsError, match="download failed"):
        fetch_weights((tmp_path / "nothing.safetensors").as_uri(), cache_dir=tmp_path / "other")
    with pytest.raises(InitWeightsError, match="unsupported address"):
        fetch_weights("ftp://example.invalid/w.safetensors", cache_dir=tmp_path / "other")


class _Split:
    def __init__(self, train, val, test):
        self.train, self.val, self.test, self.path = train, val, test, None


def test_leak_check():
    check_no_leak(_Split(["a", "b"], ["c"], ["d"]), _Split(["a"], ["c"], ["d"]), "seg")
    with pytest.raises(InitWeightsError, match="1 case\\(s\\) of this run's validation or test split"):
        check_no_leak(_Split(["a", "d"], ["c"], []), _Split(["a"], ["c"], ["d"]), "seg")


def _busi_seg_folder(tmp_path, split):
    from breastdx.inference.predictor import save_weights

    folder = tmp_path / "busi-seg-model"
    folder.mkdir()
    seg, args = build_network("unet", 1, 2)
    save_weights(seg, folder / "model.safetensors")
    (folder / "meta.json").write_text(json.dumps({
        "schema_version": 1, "task": "busi-seg", "architecture": "unet", "architecture_args": args,
        "class_names": ["background", "lesion"], "weights_file": "model.safetensors", "split_file": "split.json"}))
    (folder / "split.json").write_text(json.dumps({
        "schema_version": 1, "dataset": "busi", "data_checksum": "x", "seed": 0, "ratios": [0.7, 0.1, 0.2],
        "train": split.train, "val": split.val, "test": split.test}))
    return folder, seg


def test_init_from_a_busi_seg_folder(tmp_path):
    target = _Split(["a"], ["c"], ["d"])
    folder, seg = _busi_seg_folder(tmp_path, _Split(["a", "b"], ["c"], ["d"]))
    net = MultiTaskUNet(1, 3)
    report = init_from_busi_seg(net, folder, encoder_only=True, target_split=target)
    assert set(report.matched) == set(net.encoder_parameter_names())
    report = init_from_busi_seg(net, folder, encoder_only=False, target_split=target)
    assert len(report.matched) == len(seg.state_dict())
    (tmp_path / "leaky").mkdir()
    leaky, _ = _busi_seg_folder(tmp_path / "leaky", _Split(["a", "d"], ["c"], []))
    with pytest.raises(InitWeightsError, match="would leak"):
        init_from_busi_seg(net, leaky, target_split=target)
    resnet, _ = build_network("resnet18", 1, 3)
    with pytest.raises(InitWeightsError, match="fits only the multi-task U-Net"):
        init_from_busi_seg(resnet, folder)


@pytest.mark.parametrize("args, named", [({"num_res_units": 1}, "num_res_units"), ({"norm": "batch"}, "norm"),
                                         ({"channels": (16, 32, 64, 128, 512)}, "channels")])
def test_a_busi_seg_unet_built_otherwise_is_refused_not_half_loaded(tmp_path, args, named):
    """A busi-seg U-Net with other arguments than the multi-task U-Net's loaded the tensors whose names and shapes
    happened to agree (the batch-norm U-Net's convolutions without their statistics, a deeper bottom's shallower
    levels) with no error and, in two of these cases, no warning; its docstring promised an InitWeightsError."""
    from breastdx.inference.predictor import save_weights

    folder = tmp_path / "busi-seg-model"
    folder.mkdir()
    seg, resolved = build_network("unet", 1, 2, **args)
    save_weights(seg, folder / "model.safetensors")
    (folder / "meta.json").write_text(json.dumps({
        "schema_version": 1, "task": "busi-seg", "architecture": "unet", "architecture_args": resolved,
        "class_names": ["background", "lesion"], "weights_file": "model.safetensors"}), encoding="utf-8")
    net = MultiTaskUNet(1, 3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InitWeightsError, match=f"arguments differ .*{named}"):
        init_from_busi_seg(net, folder)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # nothing half loaded
    same = MultiTaskUNet(1, 3, **{k: v for k, v in resolved.items() if k != "dropout"})
    assert init_from_busi_seg(same, folder).matched  # built with the folder's arguments, it loads


def test_weights_of_another_architecture_that_fit_two_ways_are_refused(tmp_path):
    """A resnet18 file given to efficientnet_b0 (one --init for every --archs) fitted one tensor through three key
    mappings (bn1. -> _bn0., bn1. -> _bn1., fc. -> _fc.); the first in sort order was loaded: ResNet's first batch
    norm as EfficientNet's stem one, by chance of the names."""
    src, _ = build_network("resnet18", 1, 3)
    dst, _ = build_network("efficientnet_b0", 1, 3)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(InitWeightsError, match="3 different key mappings fit 1 tensor.*ambiguous"):
        init_from_file(dst, _save(src.state_dict(), tmp_path / "resnet18.safetensors"))
    assert all(torch.equal(v, before[k]) for k, v in dst.state_dict().items())
    same, _ = build_network("resnet18", 1, 3)  # one mapping written two ways ('' -> '', 'network.' -> '') is no tie
    report = load_state_dict_into(same, {f"network.{k}": v for k, v in src.state_dict().items()})
    assert len(report.matched) == len(src.state_dict())


def test_a_partial_load_names_what_it_left_out(tmp_path, caplog):
    """Weights saved without their buffers (named_parameters) loaded every convolution and left the batch-norm
    statistics at 0 and 1: more than half of the tensors fitted, so nothing was said."""
    src, _ = build_network("resnet18", 1, 3)
    dst, _ = build_network("resnet18", 1, 3)
    params = {k: v.detach() for k, v in src.named_parameters()}
    with caplog.at_level("WARNING", logger="breastdx.models.init_weights"):
        report = init_from_file(dst, _save(params, tmp_path / "params.safetensors"))
    assert len(report.matched) == len(params) > len(dst.state_dict()) / 2
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "bn1.running_mean" in said[0]
    assert f"{len(dst.state_dict()) - len(params)} of the {len(dst.state_dict())} network tensors" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="breastdx.models.init_weights"):
        init_from_file(dst, _save(src.state_dict(), tmp_path / "all.safetensors"))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_an_expected_sha256_in_capitals_is_the_same_checksum(tmp_path):
    """A checksum written in capitals (PowerShell's Get-FileHash) never matched: every download was refused."""
    import hashlib

    src, _ = build_network("resnet18", 1, 3)
    f = _save(src.state_dict(), tmp_path / "published.safetensors")
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    path = fetch_weights(f.as_uri(), sha256=sha.upper(), cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / f"{sha}.safetensors" and path.is_file()
    with pytest.raises(InitWeightsError, match="64 hexadecimal digits"):
        fetch_weights(f.as_uri(), sha256="not-a-checksum", cache_dir=tmp_path / "cache")
