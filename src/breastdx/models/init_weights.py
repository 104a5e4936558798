"""Initialising a network from saved weights: a safetensors file, published weights, or the busi-seg encoder.

Three ways, all reading safetensors only (nothing is unpickled):

* :func:`init_from_file` (``--init PATH``): a state dict in a ``.safetensors`` file. Key prefixes
  are matched automatically (``network.``, ``model.``, ``module.``, ``unet.``, a backbone's own prefix...):
  of the candidate mappings, the one that matches most tensors by name and shape wins. Tensors whose
  shape differs (a classification layer with another number of classes) are skipped. The result is an
  :class:`InitReport` of matched, missing, unexpected and shape-mismatched keys.
* :func:`init_pretrained` (``--pretrained``): published weights by architecture from
  :data:`PRETRAINED_WEIGHTS`, downloaded once into a cache folder, checked by SHA-256 and loaded as above.
  **No published 2-D weights in safetensors exist for breastdx's networks**: MONAI's 2-D DenseNet121
  and EfficientNetBN fetch ImageNet weights through torchvision / torch.hub as pickled ``.pth`` files,
  and MONAI's pretrained ResNets (MedicalNet) are 3-D only. The table is therefore empty and
  ``--pretrained`` needs ``--pretrained-url`` (any ``https://`` or ``file://`` address of a safetensors
  file, e.g. weights converted once from a ``.pth`` on a trusted machine). The path is the same for a
  future table entry.
* :func:`init_from_busi_seg`: the encoder (or the whole U-Net) of a ``busi-seg`` model folder, by default
  the shipped one, into the multi-task U-Net (:mod:`breastdx.models.multitask`). The busi-seg model must
  have been trained on the same grouped split: a case of the classification's validation or test split
  in busi-seg's training split would leak, and is refused (:func:`check_no_leak`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)

PRETRAINED_WEIGHTS: dict[str, dict[str, str]] = {}
"""Published weights by architecture: ``{"url", "sha256", "source", "licence"}``. Empty: see the module docstring."""

STRIP_PREFIXES = ("", "network.", "model.", "module.", "state_dict.", "net.", "backbone.", "encoder.", "unet.")
"""Prefixes removed from a file's keys when looking for the best match."""

ALLOWED_SCHEMES = ("https", "http", "file")

WEIGHTS_CACHE_ENV = "BREASTDX_WEIGHTS_CACHE"


class InitWeightsError(ValueError):
    """Weights that cannot be used to initialise a network; the message names the file and the problem."""


@dataclass
class InitReport:
    """What an initialisation loaded.

    Attributes:
        source: The file (or URL) read.
        mapping: ``(prefix removed from the file's keys, prefix added)``.
        matched: Network keys loaded from the file.
        missing: Network keys not found in the file (left as initialised).
        unexpected: File keys with no network key of that name.
        shape_mismatch: ``(network key, network shape, file shape)`` for names that matched but not in shape.
    """

    source: str
    mapping: tuple[str, str] = ("", "")
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, list[int], list[int]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``meta.json`` and reports (key lists cut to 20 names, counts complete)."""
        return {"source": self.source, "mapping": {"strip": self.mapping[0], "add": self.mapping[1]},
                "n_matched": len(self.matched), "n_missing": len(self.missing),
                "n_unexpected": len(self.unexpected), "n_shape_mismatch": len(self.shape_mismatch),
                "missing": self.missing[:20], "unexpected": self.unexpected[:20],
                "shape_mismatch": [list(m) for m in self.shape_mismatch[:20]]}

    def summary(self) -> str:
        """One line for the log and the report."""
        return (f"{self.source}: {len(self.matched)} tensors loaded, {len(self.missing)} missing (left as "
                f"initialised), {len(self.unexpected)} unexpected, {len(self.shape_mismatch)} of another shape"
                + (f"; keys mapped '{self.mapping[0]}' -> '{self.mapping[1]}'" if self.mapping != ("", "") else ""))


def read_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file, or from a breastdx model folder's ``model.safetensors``.

    Raises:
        InitWeightsError: If the file (or the folder's weights file) is missing, is a pickle (``.pt``, ``.pth``,
            ``.ckpt``, ``.bin``) or is not a valid safetensors file.
    """
    from safetensors.torch import load_file

    from breastdx.models.saved import WEIGHTS_FILE

    path = Path(path)
    if path.is_dir():  # a model folder: its weights file
        if not (path / WEIGHTS_FILE).is_file():
            raise InitWeightsError(f"{path}: a folder without {WEIGHTS_FILE}; give a safetensors file or a breastdx "
                                   f"model folder.")
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise InitWeightsError(f"{path}: no such weights file.")
    if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle"):
        raise InitWeightsError(f"{path}: breastdx reads weights from safetensors files only, never pickles "
                               f"({path.suffix}). Convert it on a trusted machine: "
                               f"safetensors.torch.save_file(torch.load(f, weights_only=True), 'weights.safetensors').")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises SafetensorError / OSError for a bad file
        raise InitWeightsError(f"{path}: not a valid safetensors file ({type(e).__name__}: {e}).") from None


def _candidates(file_keys: Iterable[str], net_keys: Iterable[str]) -> list[tuple[str, str]]:
    file_top = {k.split(".", 1)[0] + "." for k in file_keys if "." in k}
    net_top = {k.split(".", 1)[0] + "." for k in net_keys if "." in k}
    strips = sorted(set(STRIP_PREFIXES) | file_top)
    adds = sorted({""} | net_top | {"unet."})
    return [(s, a) for s in strips for a in adds]


def _map_keys(state: dict[str, torch.Tensor], strip: str, add: str) -> dict[str, tuple[str, torch.Tensor]]:
    out = {}
    for k, v in state.items():
        if strip and not k.startswith(strip):
            continue
        out[add + k[len(strip):]] = (k, v)
    return out


def load_state_dict_into(network: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict",
                         include: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> InitReport:
    """Copy the tensors of ``state`` that fit ``network`` into it, finding the key prefixes automatically.

    Every ``(strip, add)`` pair of prefixes (a file prefix removed, a network prefix added) is tried; the
    pair that matches the most tensors by name and shape is used. Tensors of another shape are skipped. Every
    network tensor to load (``include``, ``exclude``) that is not loaded is named in a warning.

    Args:
        network: The network, changed in place.
        state: Name to tensor.
        source: Where ``state`` came from (for the report).
        include: When given, only network keys starting with one of these prefixes are loaded (e.g. the
            encoder's); others count as missing.
        exclude: Network key prefixes never loaded (e.g. ``("fc.",)`` to keep a new classification layer).

    Returns:
        The :class:`InitReport`.

    Raises:
        InitWeightsError: If no tensor of ``state`` fits the network, or several mappings that put different file
            tensors into the network fit the most tensors (weights of another architecture, where one prefix
            renamed into another, ``bn1.`` into ``_bn0.`` say, fits a tensor or two by chance).
    """
    net_state = network.state_dict()

    def allowed(key: str) -> bool:
        if any(key.startswith(p) for p in exclude):
            return False
        return include is None or any(key.startswith(p) for p in include)

    best: tuple[int, tuple[str, str], dict[str, tuple[str, torch.Tensor]]] | None = None
    rivals: dict[frozenset, tuple[str, str]] = {}  # the different assignments that fit as many tensors as the best
    for strip, add in _candidates(state, net_state):
        mapped = _map_keys(state, strip, add)
        fits = frozenset((k, orig) for k, (orig, v) in mapped.items()
                         if k in net_state and allowed(k) and tuple(v.shape) == tuple(net_state[k].shape))
        if best is None or len(fits) > best[0]:
            best, rivals = (len(fits), (strip, add), mapped), {}
        if len(fits) == best[0]:
            rivals.setdefault(fits, (strip, add))
    if best is None or best[0] == 0:
        sample = ", ".join(list(state)[:3]) or "(empty)"
        raise InitWeightsError(f"{source}: no tensor fits the network (file keys such as {sample}; network keys "
                               f"such as {', '.join(list(net_state)[:3])}).")
    if len(rivals) > 1:  # which one was taken would follow the sort order of the prefixes, not the weights
        tied = "; ".join(f"'{s}' -> '{a}'" for s, a in list(rivals.values())[:4])
        raise InitWeightsError(f"{source}: {len(rivals)} different key mappings fit {best[0]} tensor(s) each "
                               f"({tied}), so which file tensor belongs to which layer is ambiguous; these weights "
                               f"were probably made for another architecture.")
    _, mapping, mapped = best
    report = InitReport(source=source, mapping=mapping)
    new_state = {}
    for key, (orig, tensor) in mapped.items():
        if key not in net_state:
            report.unexpected.append(orig)
        elif not allowed(key):
            continue
        elif tuple(tensor.shape) != tuple(net_state[key].shape):
            report.shape_mismatch.append((key, list(net_state[key].shape), list(tensor.shape)))
        else:
            new_state[key] = tensor.to(dtype=net_state[key].dtype)
            report.matched.append(key)
    report.unexpected.extend(k for k in state if k not in {o for o, _ in mapped.values()})
    report.missing = [k for k in net_state if k not in new_state]
    network.load_state_dict(new_state, strict=False)
    log.info("initialised weights: %s", report.summary())
    wanted = [k for k in net_state if allowed(k)]
    left = [k for k in wanted if k not in new_state]
    if left:  # said whatever their number: batch-norm statistics left out of a file count as much as a layer
        log.warning("%s: %d of the %d network tensors to load were not loaded and keep their initial values (%s%s)%s",
                    source, len(left), len(wanted), ", ".join(left[:5]), ", ..." if len(left) > 5 else "",
                    "; were these weights made for another architecture?" if len(left) > len(wanted) / 2 else "")
    return report


def init_from_file(network: nn.Module, path: str | Path, include: Sequence[str] | None = None,
                   exclude: Sequence[str] = ()) -> InitReport:
    """``--init PATH``: load a safetensors state dict into ``network`` (see :func:`load_state_dict_into`).

    Raises:
        InitWeightsError: If the file is not a safetensors file or nothing in it fits.
    """
    from breastdx.models.saved import WEIGHTS_FILE

    state = read_state_file(path)
    if Path(path).is_dir():  # name the file read in the report
        path = Path(path) / WEIGHTS_FILE
    return load_state_dict_into(network, state, str(path), include=include, exclude=exclude)


def weights_cache_dir() -> Path:
    """Where downloaded weights are kept: ``$BREASTDX_WEIGHTS_CACHE``, else ``<user cache>/breastdx/weights``."""
    env = os.environ.get(WEIGHTS_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from breastdx.config import user_cache_dir

    return user_cache_dir() / "weights"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_weights(url: str, sha256: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Download a safetensors file once into the cache and return its path.

    The file is stored as ``<cache>/<sha256 or URL hash>.safetensors``; a cached file is reused when its
    SHA-256 matches (or when none is given). The download goes to a temporary file that is renamed only
    after the check.

    Args:
        url: ``https://``, ``http://`` or ``file://`` address.
        sha256: Expected SHA-256 of the file (64 hexadecimal digits, either case), or None.
        cache_dir: Cache folder; default :func:`weights_cache_dir`.

    Raises:
        InitWeightsError: For another URL scheme, an expected SHA-256 that is not 64 hexadecimal digits, a failed
            download (the machine may be offline), or a checksum mismatch (expected and actual given).
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ALLOWED_SCHEMES:
        raise InitWeightsError(f"{url}: unsupported address; expected one of {', '.join(s + '://' for s in ALLOWED_SCHEMES)}.")
    if sha256 is not None:  # hex digits in either case (PowerShell's Get-FileHash writes capitals)
        if len(sha256.strip()) != 64 or any(c not in "0123456789abcdef" for c in sha256.strip().lower()):
            raise InitWeightsError(f"{url}: the expected SHA-256 must be 64 hexadecimal digits, got {sha256!r}.")
        sha256 = sha256.strip().lower()
    cache = Path(cache_dir) if cache_dir is not None else weights_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    name = sha256 or hashlib.sha256(url.encode()).hexdigest()
    target = cache / f"{name}.safetensors"
    if target.is_file() and (sha256 is None or _sha256(target) == sha256):
        return target
    fd, tmp_name = tempfile.mkstemp(dir=cache, suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:  # noqa: S310
                shutil.copyfileobj(response, out, 1 << 20)
        except (urllib.error.URLError, OSError) as e:
            raise InitWeightsError(f"{url}: download failed ({e}); the machine may be offline. Pass a local file "
                                   f"with --init PATH, or a file:// URL.") from None
        actual = _sha256(tmp)
        if sha256 is not None and actual != sha256:
            raise InitWeightsError(f"{url}: SHA-256 {actual} differs from the expected {sha256}.")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def init_pretrained(network: nn.Module, architecture: str, url: str | None = None, sha256: str | None = None,
                    cache_dir: str | Path | None = None, exclude: Sequence[str] = ()) -> InitReport:
    """``--pretrained``: published weights of ``architecture`` (or those at ``url``), cached and loaded.

    Args:
        network: The network, changed in place.
        architecture: Registry name of the network (looked up in :data:`PRETRAINED_WEIGHTS`).
        url: Address of a safetensors file, overriding the table (``file://`` works offline).
        sha256: Expected SHA-256 when ``url`` is given.
        cache_dir: Cache folder; default :func:`weights_cache_dir`.
        exclude: Network key prefixes not loaded (e.g. the classification layer).

    Raises:
        InitWeightsError: If no weights are published for ``architecture`` and no ``url`` is given, or the
            download, checksum or loading fails.
    """
    if url is None:
        entry = PRETRAINED_WEIGHTS.get(architecture)
        if entry is None:
            raise InitWeightsError(
                f"No published safetensors weights are known for {architecture!r}: MONAI's 2-D networks get "
                f"ImageNet weights through torchvision or torch.hub as pickled .pth files, which breastdx does not "
                f"load. Pass --pretrained-url with the address of a safetensors file (file:// works offline), or "
                f"--init PATH.")
        url, sha256 = entry["url"], entry.get("sha256")
    path = fetch_weights(url, sha256=sha256, cache_dir=cache_dir)
    report = load_state_dict_into(network, read_state_file(path), url, exclude=exclude)
    return report


def check_no_leak(source_split: Any, target_split: Any, source_name: str) -> None:
    """Refuse initial weights trained on cases of the target's validation or test split.

    Args:
        source_split: :class:`breastdx.data.splits.SplitFile` the weights were trained with.
        target_split: The split of the new training.
        source_name: Where the weights come from (for the message).

    Raises:
        InitWeightsError: If a validation or test case of ``target_split`` is in ``source_split``'s training
            split, or a test case in its validation split (used to pick its epoch); the message counts them
            and names a few.
    """
    leaked = sorted(((set(target_split.val) | set(target_split.test)) & set(source_split.train))
                    | (set(target_split.test) & set(source_split.val)))
    if leaked:
        raise InitWeightsError(
            f"{source_name}: trained on {len(leaked)} case(s) of this run's validation or test split (e.g. "
            f"{', '.join(leaked[:4])}); initialising from it would leak. Train with the same split file "
            f"(--split-file {getattr(source_split, 'path', None) or '<its split.json>'}).")


def busi_seg_model_dir(model_dir: str | Path | None = None) -> Path:
    """The busi-seg model folder: ``model_dir``, or the shipped ``zoo/busi-seg``.

    Raises:
        InitWeightsError: If ``model_dir`` is None and no busi-seg model is shipped.
    """
    if model_dir is not None and str(model_dir) not in ("", "shipped"):
        return Path(model_dir)
    from breastdx.zoo import shipped_models

    models = shipped_models()
    if "busi-seg" not in models:
        raise InitWeightsError("No shipped busi-seg model (src/breastdx/zoo/busi-seg) yet; pass the model folder of "
                               "a busi-seg training run instead.")
    return models["busi-seg"]


def _check_unet_args(network: Any, saved: dict[str, Any], folder: Path) -> None:
    """Refuse a busi-seg U-Net built with other ``channels``, ``strides``, ``num_res_units`` or ``norm`` than the
    multi-task U-Net's (``network.unet``, MONAI ``UNet``): the tensors whose names and shapes happen to agree would
    load, the rest stay random (say, batch-norm convolutions without their statistics).

    Raises:
        InitWeightsError: Naming each differing argument with both values.
    """
    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value.lower() if isinstance(value, str) else value

    differ = [f"{name} {saved[name]} (the network's: {plain(getattr(network.unet, name))})"
              for name in ("channels", "strides", "num_res_units", "norm")
              if name in saved and plain(saved[name]) != plain(getattr(network.unet, name))]
    if differ:
        raise InitWeightsError(f"{folder}: its U-Net's arguments differ from the multi-task U-Net's: "
                               f"{'; '.join(differ)}. Build unet_multitask with the same ones (--arch-args).")


def init_from_busi_seg(network: nn.Module, model_dir: str | Path | None = None, encoder_only: bool = True,
                       target_split: Any = None) -> InitReport:
    """Load a busi-seg U-Net's weights into a :class:`breastdx.models.multitask.MultiTaskUNet`.

    Args:
        network: A multi-task U-Net built with the busi-seg network's arguments (``channels``, ``strides``,
            ``num_res_units``, ``norm``).
        model_dir: A busi-seg model folder; None or ``"shipped"`` for the shipped one.
        encoder_only: Load the encoder (down blocks and bottom) only; else the decoder too.
        target_split: The classification run's split; when given, checked with :func:`check_no_leak`
            against the busi-seg folder's ``split.json``.

    Raises:
        InitWeightsError: If the network is not a multi-task U-Net, the folder is not a busi-seg U-Net
            model, its split would leak, or its arguments differ from the network's.
    """
    from breastdx.models.multitask import MultiTaskUNet
    from breastdx.models.saved import ModelFolderError, read_meta

    if not isinstance(network, MultiTaskUNet):
        raise InitWeightsError(f"The busi-seg encoder fits only the multi-task U-Net ('unet_multitask'), not "
                               f"{type(network).__name__}.")
    folder = busi_seg_model_dir(model_dir)
    try:
        meta = read_meta(folder, task="busi-seg")
    except ModelFolderError as e:
        raise InitWeightsError(str(e)) from None
    if meta.get("architecture") != "unet":
        raise InitWeightsError(f"{folder}: a busi-seg {meta.get('architecture')!r} model; only 'unet' shares the "
                               f"multi-task U-Net's encoder.")
    _check_unet_args(network, meta.get("architecture_args") or {}, folder)
    if target_split is not None:
        from breastdx.data.splits import SplitFile

        split_path = folder / str(meta.get("split_file", "split.json"))
        if not split_path.is_file():
            raise InitWeightsError(f"{folder}: no {split_path.name}; cannot check that its training cases are "
                                   f"outside this run's validation and test splits.")
        check_no_leak(SplitFile.from_json(split_path), target_split, str(folder))
    include = network.encoder_parameter_names() if encoder_only else None
    state = read_state_file(folder / meta["weights_file"])
    return load_state_dict_into(network, state, str(folder / meta["weights_file"]), include=include)
