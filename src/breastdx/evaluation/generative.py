"""How good and how new are generated images: KID, precision / recall, and nearest-real-patch distances.

* :func:`kid`: the kernel inception distance (Binkowski et al. 2018), the unbiased estimate of the squared maximum
  mean discrepancy with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1) ** 3``, averaged over random subsets.
  Unbiased: identical distributions give values around 0 (slightly negative ones happen).
* :func:`precision_recall`: improved precision and recall (Kynkaanniemi et al. 2019): each sample of a set is the
  centre of a ball reaching its k-th nearest neighbour in that set; precision is the share of generated samples
  inside some real ball (fidelity), recall the share of real samples inside some generated ball (diversity).
* :func:`classifier_features`: the feature space of both, the penultimate layer (the input of the last linear
  layer) of a breastdx classifier folder. Published KID / precision / recall use Inception-v3 features; its weights
  cannot be fetched here, so these figures are in **the idc classifier's feature space** and are not comparable to
  published ones. Every report says so.
* :func:`nearest_patch_distance`: memorisation. For each query patch, the mean absolute difference (0..255 scale,
  over pixels and channels) to its nearest reference patch, over the 8 rotations / mirrorings of the query.

References:
    Binkowski, M., Sutherland, D. J., Arbel, M. & Gretton, A. (2018). Demystifying MMD GANs. ICLR, arXiv:1801.01401
    Kynkaanniemi, T., Karras, T., Laine, S., Lehtinen, J. & Aila, T. (2019). Improved precision and recall metric for
    assessing generative models. NeurIPS, arXiv:1904.06991
    Gretton, A. et al. (2012). A kernel two-sample test. JMLR 13:723-773
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _features(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{name} must be features of shape (n, d) with n >= 2; got shape {a.shape}.")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values.")
    return a


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = x.shape[0], y.shape[0]
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid(real: Any, fake: Any, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Kernel inception distance between two feature sets (Binkowski et al. 2018).

    Args:
        real: Real features, float ``(n, d)``, ``n >= 2``.
        fake: Generated features, float ``(m, d)``, ``m >= 2``, same ``d``.
        n_subsets: Random subsets drawn (without replacement within a subset).
        subset_size: Size of each subset, capped at ``min(n, m)``.
        seed: Seed of the subsets.

    Returns:
        ``{"value": mean over subsets, "std": their standard deviation, "n_subsets", "subset_size", "kernel"}``.
        Unitless; 0 for equal distributions (up to noise; may be slightly negative), larger when they differ.

    Raises:
        ValueError: For shapes that are not ``(n, d)`` with ``n >= 2``, unequal ``d``, non-finite values, or
            ``n_subsets < 1``.

    References:
        Binkowski et al. (2018), arXiv:1801.01401, section 3 and appendix D.
    """
    x, y = _features(real, "real"), _features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real and fake features must have the same length d; got {x.shape[1]} and {y.shape[1]}.")
    if int(n_subsets) < 1:
        raise ValueError(f"n_subsets must be at least 1, got {n_subsets}.")
    size = int(min(subset_size, x.shape[0], y.shape[0]))
    rng = np.random.default_rng(seed)
    values = np.array([_mmd2_unbiased(x[rng.choice(x.shape[0], size, replace=False)],
                                      y[rng.choice(y.shape[0], size, replace=False)]) for _ in range(int(n_subsets))])
    return {"value": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "n_subsets": int(n_subsets), "subset_size": size, "kernel": "(x . y / d + 1) ** 3"}


def _kth_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = _pairwise(x, x)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def precision_recall(real: Any, fake: Any, k: int = 3) -> dict[str, Any]:
    """Improved precision and recall of generated against real features (Kynkaanniemi et al. 2019).

    Each set's manifold is the union of balls centred on its samples with radius the Euclidean distance to the
    sample's ``k``-th nearest neighbour in the same set. Precision: share of ``fake`` inside the real manifold.
    Recall: share of ``real`` inside the fake manifold. A point on a ball's surface counts as inside.

    Args:
        real: Real features, float ``(n, d)``, ``n > k``.
        fake: Generated features, float ``(m, d)``, ``m > k``.
        k: Neighbour that sets the radius (the paper uses 3).

    Returns:
        ``{"precision": float in [0, 1], "recall": float in [0, 1], "k": k}``.

    Raises:
        ValueError: For shapes that are not ``(n, d)``, unequal ``d``, non-finite values, or ``k`` not in
            ``[1, min(n, m) - 1]``.

    References:
        Kynkaanniemi et al. (2019), arXiv:1904.06991, equations 1-3.
    """
    x, y = _features(real, "real"), _features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real and fake features must have the same length d; got {x.shape[1]} and {y.shape[1]}.")
    if not 1 <= int(k) < min(x.shape[0], y.shape[0]):
        raise ValueError(f"k must be in [1, {min(x.shape[0], y.shape[0]) - 1}] for {x.shape[0]} real and "
                         f"{y.shape[0]} fake samples; got {k}.")
    r_real, r_fake = _kth_radius(x, int(k)), _kth_radius(y, int(k))
    d = _pairwise(y, x)  # (m, n)
    eps = 1e-9
    precision = float(np.mean((d <= r_real[None, :] + eps).any(axis=1)))
    recall = float(np.mean((d.T <= r_fake[None, :] + eps).any(axis=1)))
    return {"precision": precision, "recall": recall, "k": int(k)}


def dihedral_views(images: np.ndarray) -> np.ndarray:
    """The 8 rotations and mirrorings of each image.

    Shape:
        ``(n, S, S, C)`` -> ``(8, n, S, S, C)``: rotations by 0, 1, 2, 3 quarter turns, then the same mirrored.
    """
    rots = [np.rot90(images, j, axes=(1, 2)) for j in range(4)]
    return np.stack(rots + [r[:, :, ::-1] for r in rots])


def nearest_patch_distance(queries: Any, references: Any, symmetries: bool = True, candidates: int | None = None,
                           chunk: int = 64) -> dict[str, np.ndarray]:
    """Mean absolute difference of each query patch to its nearest reference patch, on the 0..255 scale.

    ``MAD(q, r) = mean over pixels and channels of |q - r|``; each query is compared in its 8 rotations and
    mirrorings when ``symmetries`` is set (a generator trained on turned patches could return a turned copy).

    Exact by default. With ``candidates = c``, only the ``c`` references nearest by Euclidean distance (one matrix
    product) are scored exactly, which is much faster and can only overestimate the nearest MAD when the
    nearest by MAD is not among them.

    Args:
        queries: uint8 ``(n, S, S, 3)`` (or ``(n, S, S)``).
        references: uint8 of the same trailing shape ``(m, ...)``.
        symmetries: Compare the 8 dihedral views of each query.
        candidates: Score only this many Euclidean-nearest references per view (None: all).
        chunk: Queries per block (memory).

    Returns:
        ``{"distance": float64 (n,) in [0, 255], "index": int64 (n,) the nearest reference, "view": int64 (n,) the
        query's view (0 = as is)}``.

    Raises:
        ValueError: If the arrays are not uint8 with equal trailing shapes, a set is empty, or the patches are not
            square with ``symmetries``.
    """
    q = np.asarray(queries)
    r = np.asarray(references)
    if q.dtype != np.uint8 or r.dtype != np.uint8 or q.shape[1:] != r.shape[1:] or q.ndim < 3:
        raise ValueError(f"queries and references must be uint8 patches of one shape (n, S, S[, C]); got {q.dtype} "
                         f"{q.shape} and {r.dtype} {r.shape}.")
    if q.shape[0] == 0 or r.shape[0] == 0:
        raise ValueError(f"queries and references must not be empty; got {q.shape[0]} and {r.shape[0]}.")
    if symmetries and q.shape[1] != q.shape[2]:
        raise ValueError(f"symmetries=True turns each patch by quarter turns, which needs square patches; got "
                         f"{q.shape[1]} x {q.shape[2]} (pass symmetries=False).")
    views = dihedral_views(q) if symmetries else q[None]
    n_views = views.shape[0]
    d = int(np.prod(q.shape[1:]))
    rf = r.reshape(r.shape[0], d)
    r16 = rf.astype(np.int16)
    rsq = None
    if candidates is not None:
        rff = rf.astype(np.float32)
        rsq = (rff * rff).sum(1)
    best = np.full(q.shape[0], np.inf)
    best_idx = np.zeros(q.shape[0], np.int64)
    best_view = np.zeros(q.shape[0], np.int64)
    for v in range(n_views):
        vf = views[v].reshape(q.shape[0], d)
        for start in range(0, q.shape[0], chunk):
            block = vf[start:start + chunk]
            if candidates is not None:
                bf = block.astype(np.float32)
                sq = (bf * bf).sum(1)[:, None] + rsq[None, :] - 2.0 * bf @ rff.T
                c = int(min(candidates, rf.shape[0]))
                cand = np.argpartition(sq, c - 1, axis=1)[:, :c]
            for i, row in enumerate(block.astype(np.int16)):
                idx = cand[i] if candidates is not None else slice(None)
                mad = np.abs(r16[idx] - row).sum(1) / d
                j = int(np.argmin(mad))
                if mad[j] < best[start + i]:
                    best[start + i] = float(mad[j])
                    best_idx[start + i] = int(cand[i][j]) if candidates is not None else j
                    best_view[start + i] = v
    return {"distance": best, "index": best_idx, "view": best_view}


def classifier_features(model_dir: str | Path, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Penultimate-layer features of a breastdx image classifier (the input of its last linear layer).

    The images are prepared exactly as the classifier's ``predict`` prepares them (padding, resizing, intensity
    scaling of its ``meta.json``), and the network runs in float32 eager mode, in eval mode.

    Args:
        model_dir: A classifier folder (e.g. ``src/breastdx/zoo/idc``).
        images: uint8 ``(n, H, W, 3)`` RGB.
        batch_size: Images per forward pass.

    Returns:
        float64 ``(n, d)`` (``d = 256`` for the idc compact CNN).

    Raises:
        ModelFolderError: If the folder is not a classifier folder.
        ValueError: If the network has no linear layer.
    """
    import torch

    from breastdx.inference.classifier import ClassificationPredictor

    predictor = ClassificationPredictor.from_dir(model_dir, dtype="float32", backend="torch")
    net = predictor.network.eval()
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"{model_dir}: the network has no linear layer to take features before.")
    taken: list[torch.Tensor] = []
    handle = linears[-1].register_forward_pre_hook(lambda _m, args: taken.append(args[0].detach().float().cpu()))
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = [predictor.prepare(im) for im in images[start:start + batch_size]]
                net(predictor.preprocessing.to_tensor(np.stack(batch)).to(predictor.device).float())
    finally:
        handle.remove()
    return torch.cat(taken).reshape(len(images), -1).numpy().astype(np.float64)
