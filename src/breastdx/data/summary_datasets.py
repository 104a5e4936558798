"""``breastdx data summary NAME``: a dataset found below the data root by name, summarised.

The image-set summary (class balance, quality, duplicates, sample grids) is :func:`breastdx.data.summary.summarize`;
data with patient ids add :func:`breastdx.data.summary_patients.summarize_patients`; the nucleus tiles of MoNuSeg
have a summary of their own (:mod:`breastdx.data.summary_nuclei`), as does the WDBC cytology table
(:mod:`breastdx.data.summary_tabular`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any


DEFAULT_MAX_ITEMS = 5000
"""Images a summary analyses at most unless told (a seeded sample above it); every item is counted."""


def summarize_dataset(name: str, data_root: str | Path, out_dir: str | Path, split: str | None = None,
                      max_items: int | None = None, seed: int = 0,
                      data_file: str | Path | None = None) -> dict[str, Any]:
    """Summarise a dataset found below the data root by name (see :func:`breastdx.data.summary.summarize`).

    Args:
        name: ``busi`` (ultrasound, gray; labels normal/benign/malignant), ``breastmnist`` (the official MedMNIST
            file, 28 x 28 gray; normal_or_benign/malignant; ``splits`` in the result gives the counts per official
            split), a patch dataset (``pcam``, ``idc``, ``breakhis``) or ``monuseg`` (nucleus tiles: a record per
            tile, :func:`breastdx.data.summary_nuclei.summarize_nuclei_tiles`, instead of the image-set summary) or
            ``wdbc`` (the cytology table, :func:`breastdx.data.summary_tabular.summarize_wdbc`).
        data_root: The data root.
        out_dir: Output folder.
        split: For datasets with their own split (PCam: train, valid, test; BreastMNIST: train, val, test); None
            for all.
        max_items: Largest number of images analysed (a seeded sample above it; None: 5,000). Refused for
            ``wdbc`` and ``monuseg``, which are summarised whole (569 cases; 8 tiles).
        seed: Seed of the sample.
        data_file: ``wdbc`` only: a ``wdbc.data`` or CSV in place of scikit-learn's copy.

    Raises:
        UnknownNameError: For another name (the message lists the datasets that have a summary).
        DataError: If the data are missing or invalid.
        ValueError: For a split the dataset does not have.
    """
    from breastdx.data.patches import patch_dataset_names
    from breastdx.data.summary import summarize

    names = ["busi", "breastmnist", "monuseg", "wdbc", *patch_dataset_names()]
    if name not in names:
        from breastdx.registry import unknown_name

        raise unknown_name("dataset for a summary", name, names)
    if data_file is not None and name != "wdbc":
        raise ValueError(f"--data-file is for wdbc; {name} is read below the data root (--data-dir).")
    if max_items is not None and name in ("wdbc", "monuseg"):
        raise ValueError(f"--max-items is for the image datasets; {name} is summarised whole (every "
                         f"{'case' if name == 'wdbc' else 'tile'}).")
    max_items = DEFAULT_MAX_ITEMS if max_items is None else max_items
    if name == "wdbc":
        from breastdx.data.summary_tabular import summarize_wdbc

        if split:
            raise ValueError("wdbc has no --split for a summary: every case is summarised.")
        return summarize_wdbc(out_dir, data_file)
    if name == "monuseg":
        from breastdx.data.summary_nuclei import summarize_nuclei_tiles

        if split:
            raise ValueError("monuseg has no --split for a summary: every tile is summarised, with its part.")
        return summarize_nuclei_tiles(data_root, out_dir)
    if name == "breastmnist":
        from breastdx.data.breastmnist import CLASS_NAMES, SPLITS, load_breastmnist

        bm = load_breastmnist(Path(data_root))
        parts = [bm.split(split)] if split else [bm.split(s) for s in SPLITS]
        items = [(im, int(y)) for part in parts for im, y in zip(part.images, part.labels)]
        result = summarize(items, out_dir, max_items=max_items, seed=seed, class_names=CLASS_NAMES,
                           name="breastmnist" + (f" ({split})" if split else ""))
        return {**result, "splits": bm.summary()}
    if name == "busi":
        from breastdx.data.busi import BUSI_CLASSES, find_busi_root, scan_busi

        if split:
            raise _no_official_split(name)
        cases = scan_busi(find_busi_root(Path(data_root)))  # every case counted, only the sample read
        items = [(partial(_busi_image, c), BUSI_CLASSES.index(c.label)) for c in cases]
        return summarize(items, out_dir, max_items=max_items, seed=seed, class_names=BUSI_CLASSES, name="busi",
                         ids=[c.name for c in cases])
    from breastdx.data.patches import load_patch_dataset
    from breastdx.data.summary_patients import summarize_patients

    if split and name != "pcam":  # idc, breakhis: a training splits them by patient, into its split.json
        raise _no_official_split(name)
    source = load_patch_dataset(name, data_root, split)
    result = summarize(source, out_dir, max_items=max_items, seed=seed)
    if source.groups is not None:  # per patient: every patch is read (the class counts are not a sample either)
        expected, note = ((50, 50), "The reader pads them with white (255) on the bottom and right, where the slide "
                          "ended, to 50 x 50; none is dropped.") if name == "idc" else (None, "")
        result["patients"] = summarize_patients(source, out_dir, expected, reader_note=note)
        result["files"] += ["patients.json", "patients.html", "patients_share_and_stain.png"]
    return result


def summary_table(name: str, result: dict[str, Any],
                  run_dir: Path) -> tuple[str, list[str], list[list[str]], list[str]]:
    """What ``breastdx data summary`` prints of a summary: a title, column names, rows of text, and lines after.

    Args:
        name: The dataset's name.
        result: What :func:`summarize_dataset` returned.
        run_dir: The summary's folder.
    """
    report = f"Report: {run_dir / 'report.html'}"
    if result.get("dataset") == "wdbc":  # the cytology table: one row per feature, the most separating first
        notes = [", ".join(f"{n} {c}" for c, n in result["class_counts"].items()) + f"; exact duplicate cases: "
                 f"{len(result['duplicates'])}; feature pairs with |r| >= 0.95: {len(result['correlated_pairs'])}",
                 report]
        return (f"{name}: {result['n_items']} cases ({result['source']}), the 10 features that separate the classes "
                f"most", ["feature", "benign mean", "malignant mean", "Cohen's d", "AUROC alone"],
                [[f["feature"], f"{f['mean_benign']:.4g}", f"{f['mean_malignant']:.4g}", f"{f['cohens_d']:.2f}",
                  f"{f['auroc']:.3f}"] for f in result["features"][:10]], notes)
    if "tiles" in result:  # nucleus tiles (monuseg): one row per tile
        return (f"{name}: {result['n_tiles']} tiles",
                ["tile", "part", "site", "preparation", "nuclei", "median area (µm²)", "nucleus share"],
                [[t["name"], t["part"], t["site"], t["preparation"], str(t["n_nuclei"]), f"{t['area_um2'][1]:.1f}",
                  f"{t['nucleus_share']:.3f}"] for t in result["tiles"]], [report])
    exact, near = result["exact_duplicates"], result["near_duplicates"]
    notes = [f"exact duplicates: {exact.get('groups', 0)} groups; near duplicates: {near.get('groups', 0)} groups; "
             f"unreadable: {len(result.get('failures', []))}"
             + (f" in the sample, {len(result['patients']['unreadable'])} of all images"
                if (result.get("patients") or {}).get("unreadable") else "")]
    if result.get("patients"):
        pp = result["patients"]
        notes.append(f"{pp['n_patients']} patients ({pp['patches_per_patient']['min']}-"
                     f"{pp['patches_per_patient']['max']} images each); {pp['positive_class']} share per patient: mean "
                     f"{pp['positive_share']['mean']:.3f}; blank background: {pp['blank']['n']} images"
                     + (f"; size defects: {pp['size_defects']['n']}" if "size_defects" in pp else "")
                     + f". Per patient: {run_dir / 'patients.html'}")
    return (f"{name}: {result['n_items']} images ({result['n_analysed']} analysed)", ["class", "images"],
            [[str(c), str(n)] for c, n in result["class_counts"].items()], [*notes, report])


def _no_official_split(name: str) -> ValueError:
    """The refusal of ``--split`` for a dataset whose release has no split (busi, idc, breakhis)."""
    return ValueError(f"{name} has no --split for a summary (the release has no official split; a training's "
                      f"grouped split is in its run folder's split.json): every image is summarised.")


def _busi_image(case: Any) -> Any:
    """A BUSI case's gray image, ``uint8`` ``(H, W)`` (:func:`breastdx.data.busi.load_case`)."""
    from breastdx.data.busi import load_case

    return load_case(case)[0]
