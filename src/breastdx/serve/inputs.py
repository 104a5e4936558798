"""What the service accepts: uploaded image bytes decoded in memory, and the 30 WDBC features as JSON.

No upload is written to disk. Every refusal is a :class:`ServeInputError` with its HTTP status and a short
machine-readable code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "DICOM")
"""Image formats an upload may have (recognised from its bytes)."""

MAX_LISTED_NAMES = 30
"""Names that are not WDBC features listed one by one in a refusal; any more are counted, so that a body of many
names is not answered with a longer list of them."""


def quote_input(value: Any) -> str:
    """``repr(value)`` of a client's value for a message, its ends only past 40 characters: an error answer does not
    echo a long text back in full."""
    text = repr(value)
    if len(text) <= 40:
        return text
    return f"{text[:20]}...{text[-8:]} ({len(value) if isinstance(value, str) else len(text)} characters)"


class ServeInputError(ValueError):
    """A request the service cannot answer; carries the HTTP status and a short machine-readable code.

    Attributes:
        status: HTTP status code (4xx).
        code: Short error code, e.g. ``"not_an_image"``.
        problems: Every problem found, one line each.
    """

    def __init__(self, status: int, code: str, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.problems = list(problems or [])


def read_upload(data: bytes, filename: str, mode: str, max_pixels: int, decoder: Any = None,
                max_side: int | None = None, frame: int | None = None) -> Any:
    """Decode an uploaded image in memory (:func:`breastdx.data.images.read_image_bytes`): no upload is written
    to disk.

    The format comes from the bytes, never from the name. With a ``decoder``, the bytes are decoded in one of
    its worker processes, under its time and memory limits, so that a decoder that loops or crashes on a
    malformed file costs one refused request, not the service.

    Args:
        data: The uploaded bytes.
        filename: The name the client gave (for messages only).
        mode: ``"gray"`` or ``"rgb"``.
        max_pixels: Largest accepted width x height.
        decoder: A :class:`breastdx.data.decode_worker.DecoderPool`, or None to decode in this process.
        max_side: Longest side to decode to (a larger image is decoded reduced; ``full_shape`` of the record
            then gives its stored size), or None for the full size.
        frame: The frame of a multi-frame DICOM (1-based), or None for the first; refused for another image.

    Returns:
        An :class:`~breastdx.data.images.ImageRecord` (its ``path`` is the client's file name).

    Raises:
        ServeInputError: 422 ``empty_upload``; 415 ``not_an_image`` (not PNG, JPEG, TIFF or DICOM bytes);
            413 ``image_too_large`` (over ``max_pixels``); 422 ``unreadable_image`` (truncated, corrupt,
            a multi-page TIFF, unsupported pixel layout, or undecodable within the decoder's time and memory
            limits).
    """
    from breastdx.data.images import ImageReadError, not_an_image, read_image_bytes, sniff_bytes

    if not data:
        raise ServeInputError(422, "empty_upload", f"{filename}: the upload is empty (0 bytes); expected a PNG, "
                              f"JPEG, TIFF or DICOM image.")
    if sniff_bytes(data[:132]) is None:
        raise ServeInputError(415, "not_an_image", not_an_image(filename, data[:8]))
    try:
        if decoder is not None:
            return decoder.read_image_bytes(data, filename, mode=mode, max_pixels=max_pixels, max_side=max_side,
                                            frame=frame)
        return read_image_bytes(data, filename, mode=mode, max_pixels=max_pixels, max_side=max_side, frame=frame)
    except ImageReadError as e:
        message = str(e)
        too_large = "over the limit" in message or "decompression-bomb" in message
        raise ServeInputError(413 if too_large else 422, "image_too_large" if too_large else "unreadable_image",
                              message) from None


class RepeatedKeyError(ValueError):
    """A JSON object names a key twice (``json.loads`` would keep the last value without a word)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of ``json.loads`` that refuses a repeated key, naming it."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKeyError(quote_input(key))
        out[key] = value
    return out


def parse_json_body(body: bytes) -> Any:
    """The JSON value of a request body (``POST /v1/predict/wdbc``).

    Raises:
        ServeInputError: 422 ``invalid_json`` for a body that is not JSON, nests too deeply, or names a key twice
            in one object (which value was meant cannot be told).
    """
    import json

    try:
        return json.loads(body, object_pairs_hook=_unique_keys)
    except RepeatedKeyError as e:
        raise ServeInputError(422, "invalid_json", f"The body gives {e} more than once; a value may be given once "
                              f"(which one was meant?).") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ServeInputError(422, "invalid_json", f"The body is not valid JSON ({e}); expected "
                              f"{{\"features\": {{name: value, ...}}}}.") from None
    except RecursionError:
        raise ServeInputError(422, "invalid_json", "The body nests arrays or objects too deeply to be read; "
                              "expected {\"features\": {name: value, ...}}.") from None


def parse_wdbc_features(features: Any) -> np.ndarray:
    """The 30 WDBC features of a JSON object, checked by the rules of the CSV reader.

    Names may be scikit-learn's (``mean radius``) or UCI/Kaggle's (``radius_mean``); values must be numbers
    (or numeric strings) in the feature's physical range, ``0 <= value <=``
    :data:`breastdx.data.wdbc.FEATURE_MAX` (:func:`breastdx.data.wdbc.check_feature_value`). Every problem is
    reported at once.

    Args:
        features: ``{name: value}`` for the 30 features.

    Returns:
        float64 ``(1, 30)`` in :data:`breastdx.data.wdbc.FEATURE_NAMES` order.

    Raises:
        ServeInputError: 422 ``invalid_features`` listing missing, unknown or repeated names and
            non-numeric, non-finite, negative or out-of-range values (each named with its feature).
    """
    from breastdx.data.wdbc import COLUMN_ALIASES, FEATURE_NAMES, check_feature_value

    if not isinstance(features, dict):
        raise ServeInputError(422, "invalid_features", f"'features' must be a JSON object mapping the 30 WDBC "
                              f"feature names to numbers, got {type(features).__name__}.")
    problems: list[str] = []
    values: dict[str, float] = {}
    seen: dict[str, str] = {}
    unknown = 0
    for key, raw in features.items():
        canonical = COLUMN_ALIASES.get(str(key).strip())
        if canonical is None:
            unknown += 1
            if unknown <= MAX_LISTED_NAMES:
                problems.append(f"{quote_input(key)}: not a WDBC feature; expected names such as "
                                f"{FEATURE_NAMES[0]!r} or 'radius_mean'")
            continue
        if canonical in seen:
            problems.append(f"{key!r}: feature {canonical!r} is already given as {seen[canonical]!r}")
            continue
        seen[canonical] = str(key)
        values[canonical], problem = check_feature_value(canonical, raw)
        if problem is not None:
            problems.append(f"{key!r}: {problem}")
    missing = [f for f in FEATURE_NAMES if f not in seen]
    if missing:
        problems.append(f"missing feature(s): {', '.join(repr(m) for m in missing)}")
    count = len(problems) + max(0, unknown - MAX_LISTED_NAMES)
    if unknown > MAX_LISTED_NAMES:
        problems.append(f"... and {unknown - MAX_LISTED_NAMES:,} more name(s) that are not WDBC features")
    if problems:
        raise ServeInputError(422, "invalid_features", f"Invalid WDBC features ({count:,} problem(s)); expected the "
                              f"30 features, each a number in its physical range.", problems)
    return np.array([[values[f] for f in FEATURE_NAMES]], dtype=np.float64)


def features_sha256(X: np.ndarray) -> str:
    """SHA-256 of the features as recorded: :func:`breastdx.data.checksum.sha256_arrays` of the ``(1, 30)`` array."""
    from breastdx.data.checksum import sha256_arrays

    return sha256_arrays(np.ascontiguousarray(X, dtype=np.float64))


def bytes_sha256(data: bytes) -> str:
    """SHA-256 of uploaded bytes, hexadecimal."""
    return hashlib.sha256(data).hexdigest()
