"""Review 31 of training and networks: defects found and the tests that keep them fixed."""

import copy
import os

import pytest
import torch

from breastdx.training import trainer as trainer_mod


def test_two_processes_relocating_one_checkpoint_do_not_trip_over_each_other(tmp_path, monkeypatch):
    """Every process of a resumed distributed run (another node's, or a torchrun / SLURM rank) reads last.ckpt and,
    when the folder moved, writes it back: all of them through one 'last.ckpt.part', so a second writer's file was
    renamed away under the first (FileNotFoundError) or a half-written file renamed into place. Each writer now
    has a file of its own; the checkpoint left is whole and names the new folder."""
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    old = "/elsewhere/run/checkpoints"
    ckpt = {"epoch": 3, "callbacks": {"ModelCheckpoint{'monitor': 'val_dice'}": {
        "dirpath": old, "best_model_path": old + "/best.ckpt", "best_k_models": {old + "/best.ckpt": 0.5}}}}
    path = folder / "last.ckpt"
    torch.save(ckpt, path)
    real_replace = os.replace
    other_ran = []

    def replace(src, dst):  # the other process relocates the same file while this one is about to rename its own
        if not other_ran:
            other_ran.append(True)
            trainer_mod._relocate(path, copy.deepcopy(ckpt))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    trainer_mod._relocate(path, copy.deepcopy(ckpt))
    state = torch.load(path, map_location="cpu", weights_only=True)["callbacks"]
    (record,) = state.values()
    here = os.path.realpath(folder)
    assert record["dirpath"] == here and record["best_model_path"] == here + "/best.ckpt"
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # no temporary file left behind


def test_validation_under_ddp_scores_each_image_once(monkeypatch):
    """Under DDP Lightning splits the validation images with a DistributedSampler, which repeats the first ones so
    that every process gets as many: 10 images on 4 processes were scored as 12, two of them twice, so the metric
    that picks the best epoch was not that of the validation split. The gathered logits are now put back in the
    dataset's order and the repeats dropped."""
    from types import SimpleNamespace

    from torch.utils.data import DistributedSampler

    from breastdx.evaluation.calibration import nll
    from breastdx.training.classification import ClassificationModule

    n, world, k = 10, 4, 3
    torch.manual_seed(0)
    logits, labels = torch.randn(n, k), torch.arange(n) % k
    dataset = list(range(n))
    samplers = [DistributedSampler(dataset, num_replicas=world, rank=r, shuffle=False) for r in range(world)]
    per_rank = [list(s) for s in samplers]  # rank r: images r, r + 4, ... with 0 and 1 again at the end
    assert sum(map(len, per_rank)) == 12

    module = ClassificationModule(torch.nn.Linear(2, k), k)
    module._trainer = SimpleNamespace(world_size=world, val_dataloaders=SimpleNamespace(sampler=samplers[0]))
    module._val_logits, module._val_labels = [logits[per_rank[0]]], [labels[per_rank[0]]]

    def all_gather(t):  # what every process gets: (world, m, ...) stacked by rank
        source = logits if t.is_floating_point() else labels
        return torch.stack([source[idx] for idx in per_rank])

    logged = {}
    monkeypatch.setattr(module, "all_gather", all_gather)
    monkeypatch.setattr(module, "log", lambda name, value, **kw: logged.__setitem__(name, float(value)))
    module.on_validation_epoch_end()
    assert logged["val_nll"] == pytest.approx(nll(labels.numpy(), logits.double().numpy()))


def _as_rank_zero_of(module, world, sampler, monkeypatch, rows_of_rank):
    """Run ``module``'s validation epoch end as rank 0 of ``world`` processes whose validation steps saw the images
    ``rows_of_rank(r)`` gives, collecting what it logs."""
    from types import SimpleNamespace

    module._trainer = SimpleNamespace(world_size=world, val_dataloaders=SimpleNamespace(sampler=sampler))

    def all_gather(t):  # every process's tensor of the same kind, stacked by rank
        return torch.stack([rows_of_rank(r) for r in range(world)])

    logged = {}
    monkeypatch.setattr(module, "all_gather", all_gather)
    monkeypatch.setattr(module, "log", lambda name, value, **kw: logged.__setitem__(name, float(value)))
    module.on_validation_epoch_end()
    return logged


def test_segmentation_validation_under_ddp_scores_each_image_once(monkeypatch):
    """The module docstring said val_dice and val_normal_fp do not depend on the device count; under DDP the
    DistributedSampler's repeated images were summed in too (7 images on 3 GPUs counted as 9). Per-image rows are
    now gathered, put back in order and each image counted once (nuclei's pixel Dice too)."""
    from types import SimpleNamespace

    from torch.utils.data import DistributedSampler

    from breastdx.evaluation.segmentation import dice_per_case
    from breastdx.training.nuclei import NucleusModule
    from breastdx.training.segmentation import SegmentationModule

    n, world = 7, 3
    torch.manual_seed(0)
    logits = torch.randn(n, 2, 8, 8)
    masks = (torch.rand(n, 1, 8, 8) > 0.6).float()
    masks[[1, 4]] = 0.0  # lesion-free images
    has = masks.flatten(1).any(1)
    dataset = list(range(n))
    samplers = [DistributedSampler(dataset, num_replicas=world, rank=r, shuffle=False) for r in range(world)]
    per_rank = [list(s) for s in samplers]
    assert sum(map(len, per_rank)) == 9

    def validate(module, r):  # rank r's validation steps, one batch
        module.on_validation_epoch_start()
        module.eval_network = lambda: (lambda x: logits[per_rank[r]])
        batch = {"image": torch.zeros(len(per_rank[r]), 1, 8, 8), "mask": masks[per_rank[r]].long(),
                 "has_lesion": has[per_rank[r]], "distance": torch.zeros(len(per_rank[r]), 1, 8, 8)}
        module.log = lambda *a, **k: None
        module.validation_step(batch, 0)
        del module.log
        return module

    class Gathered(Exception):
        pass

    def rows(module_class):  # what each rank's module hands to all_gather at its epoch end
        handed = []
        for r in range(world):
            module = validate(module_class(torch.nn.Conv2d(1, 2, 1)), r)
            module._trainer = SimpleNamespace(world_size=world, val_dataloaders=SimpleNamespace(sampler=samplers[r]))
            module.all_gather = lambda t: (handed.append(t), (_ for _ in ()).throw(Gathered()))[1]
            with pytest.raises(Gathered):
                module.on_validation_epoch_end()
        return lambda r: handed[r]

    pred = logits.argmax(1) == 1
    dice = dice_per_case(pred, masks[:, 0] > 0.5)
    module = validate(SegmentationModule(torch.nn.Conv2d(1, 2, 1)), 0)
    logged = _as_rank_zero_of(module, world, samplers[0], monkeypatch, rows(SegmentationModule))
    assert logged["val_dice"] == pytest.approx(float(dice[has].mean()))
    assert logged["val_normal_fp"] == pytest.approx(float(pred.flatten(1).any(1)[~has].float().mean()))

    fg, ref = logits[:, :2].argmax(1) > 0, masks[:, 0] > 0
    nuclei = validate(NucleusModule(torch.nn.Conv2d(1, 2, 1)), 0)
    logged = _as_rank_zero_of(nuclei, world, samplers[0], monkeypatch, rows(NucleusModule))
    assert logged["val_dice"] == pytest.approx(float(2 * (fg & ref).sum() / (fg.sum() + ref.sum())))
