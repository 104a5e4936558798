"""Review 31 of training and networks: defects found and the tests that keep them fixed."""

import copy
import os

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
