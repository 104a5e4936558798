"""Near-duplicates of training images: what ``predict`` flags with the perceptual hashes of the shipped ultrasound
models, and (with ``--write``) adding those hashes to their folders.

A model folder's ``training_hashes.json`` lists the SHA-256 of each training image's pixels, so ``predict`` flags an
exact copy (``seen_in_training: yes``). BUSI holds several frames of many lesions, re-cropped and re-saved copies,
and every BreastMNIST image is the central square of a BUSI image (:mod:`breastdx.data.breastmnist_masks`), so the
same case reaches a model under other pixels. The ultrasound models also keep each training image's 64-bit pHash
(of the central square for BreastMNIST's models) and flag an input within 8 bits of one (``near-duplicate``;
:data:`breastdx.data.duplicates.FLAG_HASH_THRESHOLD` says why not the 10 of BUSI's grouped split).

For each shipped ultrasound model this prints how many images of each set are flagged: ``yes`` (same pixels),
``near-duplicate``, and the smallest distance of the others. The sets: BUSI's grouped split (busi-seg, busi-cls),
BreastMNIST's official splits and the full BUSI file of each BreastMNIST image (breastmnist models), and the two
external samples (which no model trained on: every flag there would be false). No training, no network.

``--write`` recomputes the perceptual hashes of each folder's training images (the split's ``train`` cases of
BUSI; BreastMNIST's ``train_images``), after checking that their SHA-256 hashes are exactly the folder's, and adds
them to its ``training_hashes.json``.

Usage::

    python benchmarks/zoo_near_duplicates.py [--write] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

ULTRASOUND = ("busi-seg", "busi-cls", "breastmnist", "breastmnist-single")
EXTERNAL = ("breast_lesions_usg_sample", "bus_uclm_sample")


def _busi(root: Path) -> dict[str, np.ndarray]:
    from breastdx.data.busi import find_busi_root, scan_busi
    from breastdx.data.images import read_image

    return {c.name: read_image(c.image, mode="gray").array for c in scan_busi(find_busi_root(root))}


def _external(root: Path, name: str) -> list[np.ndarray]:
    from breastdx.data.external import read_external
    from breastdx.data.images import read_image

    return [read_image(f, mode="gray").array for f in read_external(root / name).images]


def training_images(model: str, folder: Path, root: Path, busi: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The images a shipped ultrasound model was trained on, as ``predict`` reads them."""
    if model.startswith("breastmnist"):
        from breastdx.data.breastmnist import load_breastmnist

        return list(load_breastmnist(root).split("train").images)
    return [busi[n] for n in json.loads((folder / "split.json").read_text())["train"]]


def add_perceptual_hashes(folder: Path, images: list[np.ndarray], source_crop: str | None) -> int:
    """Add the perceptual record to ``folder``'s training hashes, after checking the images are its training
    images (the same SHA-256 set). Returns the number of distinct perceptual hashes."""
    from breastdx.data.checksum import image_hash
    from breastdx.data.duplicates import model_view_hash
    from breastdx.models.saved import read_training_hashes, write_training_hashes

    shas = [image_hash(im) for im in images]
    if set(shas) != read_training_hashes(folder):
        raise SystemExit(f"{folder}: these are not its training images (SHA-256 sets differ); nothing written.")
    phashes = [model_view_hash(im, source_crop) for im in images]
    saved = json.loads((folder / "training_hashes.json").read_text())
    write_training_hashes(folder, shas, phashes, source_crop)
    new = json.loads((folder / "training_hashes.json").read_text())
    new["n_images"] = saved["n_images"]  # as counted at training
    (folder / "training_hashes.json").write_text(json.dumps(new, indent=2) + "\n")
    return len(set(phashes))


def flags(folder: Path, images: list[np.ndarray]) -> dict:
    """How ``predict`` flags each image: counts of yes / near-duplicate / no, and the smallest distance of the 'no'."""
    from breastdx.data.checksum import image_hash
    from breastdx.models.saved import read_near_duplicate_index, read_training_hashes

    known, index = read_training_hashes(folder), read_near_duplicate_index(folder)
    out = {"n": len(images), "yes": 0, "near-duplicate": 0, "no": 0}
    rest = []
    for im in images:
        if image_hash(im) in known:
            out["yes"] += 1
            continue
        d = index.distance(im)
        if d <= index.threshold:
            out["near-duplicate"] += 1
        else:
            out["no"] += 1
            rest.append(d)
    out["smallest_distance_of_no"] = int(min(rest)) if rest else None
    return out


def main(argv: list[str] | None = None) -> int:
    from breastdx.data.breastmnist import load_breastmnist
    from breastdx.data.breastmnist_masks import _busi_index, match_splits
    from breastdx.models.saved import read_meta
    from breastdx.zoo import shipped_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="add the perceptual hashes to the shipped folders")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    root = Path(os.environ.get("BREASTDX_DATA", "../shared/data"))
    busi = _busi(root)
    zoo = shipped_models()
    if args.write:
        for model in ULTRASOUND:
            crop = read_meta(zoo[model])["preprocessing"].get("source_crop")
            n = add_perceptual_hashes(zoo[model], training_images(model, zoo[model], root, busi), crop)
            print(f"{model}: {n} distinct perceptual hashes written (source_crop {crop})")
    sets: dict[str, list[np.ndarray]] = {e: _external(root, e) for e in EXTERNAL}
    split = json.loads((zoo["busi-seg"] / "split.json").read_text())
    for s in ("train", "val", "test"):
        sets[f"BUSI {s}"] = [busi[n] for n in split[s]]
    bm = load_breastmnist(root)
    cases, thumbs, _ = _busi_index(root, masks=False)
    for s, matches in match_splits(bm, thumbs, cases).items():
        sets[f"BreastMNIST {s}"] = list(bm.split(s).images)
        sets[f"BUSI files of BreastMNIST {s}"] = [busi[m.case] for m in matches]
    figures: dict[str, dict] = {}
    print("model | set | n | yes | near-duplicate | no | smallest distance of the 'no'")
    for model in ULTRASOUND:
        names = [n for n in sets if n.startswith(("BreastMNIST", "BUSI files")) == model.startswith("breastmnist")
                 or n in EXTERNAL]
        for name in names:
            f = figures.setdefault(model, {})[name] = flags(zoo[model], sets[name])
            print(f"{model} | {name} | {f['n']} | {f['yes']} | {f['near-duplicate']} | {f['no']} | "
                  f"{f['smallest_distance_of_no']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
