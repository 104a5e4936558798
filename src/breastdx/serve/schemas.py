"""Request and answer bodies of the REST API (pydantic), as published in its OpenAPI schema.

Images in answers are PNG data URLs (``data:image/png;base64,...``) that a page can stack: the image at the
display size, the lesion mask and contour overlay (an RGBA layer, transparent off the line) at the same size,
the Grad-CAM overlay (an RGBA layer whose opacity follows the map; smooth, so sent small, to be stretched over
the image); with ``?composites=true`` also the overlays already blended into the image, at the display size.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from breastdx import RESEARCH_USE_ONLY
from breastdx.data.wdbc import EXAMPLE_CASE
from breastdx.serve.db import PredictionEntry


class _Base(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class ErrorDetail(_Base):
    """What was wrong with a request."""

    code: str = Field(description="Short machine-readable code, e.g. 'not_an_image', 'upload_too_large'.")
    message: str = Field(description="What was wrong and what was expected.")
    problems: list[str] = Field(default_factory=list, description="Every problem found, one per line.")


class ErrorResponse(_Base):
    """The body of every 4xx (and 5xx) answer."""

    error: ErrorDetail
    research_use_only: str = RESEARCH_USE_ONLY


class ModelRef(_Base):
    """A model and its version."""

    name: str
    version: str = Field(description="meta.json's 'version', else the first 12 hex digits of the weights' SHA-256.")


class Health(_Base):
    """``GET /healthz``."""

    status: str = Field(description="'ok', or 'degraded' when no model could be loaded.")
    version: str = Field(description="breastdx version.")
    tasks: list[str] = Field(description="Tasks answered by POST /v1/predict/{task}.")
    models: list[ModelRef]
    auth: bool = Field(description="Whether /v1/... needs 'Authorization: Bearer TOKEN'.")
    record_names: bool = Field(False, description="Whether the record keeps uploads' file names and WDBC case ids "
                                                  "(serve --record-names); by default it keeps neither.")
    research_use_only: str = RESEARCH_USE_ONLY


class ModelInfo(_Base):
    """One served model: its metadata, metrics, model card and the input it takes."""

    model_config = ConfigDict(protected_namespaces=(), extra="allow")

    name: str
    task: str
    kind: str = Field(description="'tabular', 'segmentation', 'classification' or 'nucleus_instances' (monuseg).")
    version: str
    architecture: str | None = None
    title: str | None = None
    class_names: list[str]
    positive_class: str | None = None
    threshold: float | None = Field(None, description="Operating threshold on P(positive class) (pixel "
                                                      "threshold for segmentation).")
    threshold_rule: str | None = None
    temperature: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, description="{name: {value, ci95, n}} on metrics_split.")
    metrics_split: str | None = None
    created: str | None = None
    intended_use: str = RESEARCH_USE_ONLY
    model_card: str = Field("", description="MODEL_CARD.md (Markdown).")
    input: dict[str, Any] = Field(description="'features' (names, units, an example) or 'image' (formats, mode).")


class UnavailableModel(_Base):
    """A model that was found but is not served, and why."""

    name: str
    reason: str
    by_design: bool = Field(False, description="True when left out on purpose (a generator; a second model of a "
                                               "task already served); false when it failed to load or run.")


class ModelsResponse(_Base):
    """``GET /v1/models``."""

    models: list[ModelInfo]
    tasks: list[str]
    unavailable: list[UnavailableModel]
    research_use_only: str = RESEARCH_USE_ONLY


class WDBCRequest(_Base):
    """``POST /v1/predict/wdbc``: one case's 30 features."""

    model_config = ConfigDict(protected_namespaces=(), extra="forbid", json_schema_extra={"examples": [{
        "case_id": "842302",
        "features": dict(EXAMPLE_CASE),  # all 30: the example must be a request the server accepts
    }]})

    features: dict[str, Any] = Field(description="The 30 features by name: scikit-learn's ('mean radius') or "
                                                 "UCI/Kaggle's ('radius_mean'); each a finite number >= 0.")
    case_id: str | None = Field(None, max_length=255, description="Your identifier of the case: a string, or a whole "
                                "number (taken as its digits, 17 as '17'); recorded only when the service runs with "
                                "--record-names.",
                                json_schema_extra={"anyOf": [{"type": "string", "maxLength": 255},
                                                             {"type": "integer"}, {"type": "null"}]})
    n_reasons: int | None = Field(None, ge=0, le=30, description="SHAP contributions to report; default 5.")

    @field_validator("case_id", mode="before")
    @classmethod
    def _case_id_as_text(cls, value: Any) -> Any:
        """A whole number (a spreadsheet's ids often are numbers) as its digits; a string or None as it is.

        Raises:
            PydanticCustomError: For anything else (a fraction, true or false, an array, an object): an id taken
                from those would not be the one the client holds.
        """
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise PydanticCustomError("case_id_type", "Input should be a string or a whole number")

    @field_validator("n_reasons", mode="before")
    @classmethod
    def _n_reasons_not_a_flag(cls, value: Any) -> Any:
        """Refuse true and false, which pydantic would read as 1 and 0 reasons.

        Raises:
            PydanticCustomError: For a boolean.
        """
        if isinstance(value, bool):
            raise PydanticCustomError("n_reasons_type", "Input should be a whole number from 0 to 30, not true or "
                                                        "false")
        return value


class Contribution(_Base):
    """One SHAP contribution to P(malignant)."""

    feature: str
    value: float = Field(description="Signed SHAP value, in probability units.")
    input_value: float = Field(description="The case's value of the feature.")


class ClassificationResult(_Base):
    """Class probabilities and the label at the model's operating point."""

    model: ModelRef
    class_names: list[str]
    probabilities: dict[str, float] = Field(description="After temperature scaling (image classifiers).")
    group_probabilities: dict[str, float] | None = Field(None, description="For classes named '<group>/<subtype>' "
                                                         "(BreakHis subtypes): each group's probability, the sum over "
                                                         "its classes (P(malignant)).")
    label: str = Field(description="The label at the operating point: the positive class when its probability "
                                   "reaches the threshold, else the most probable other class.")
    label_argmax: str = Field(description="The most probable class.")
    prediction_set: list[str] | None = Field(None, description="Conformal prediction set (split conformal, adaptive "
                                             "prediction sets): the classes that together hold the true class with "
                                             "probability prediction_set_level on cases like the calibration split. "
                                             "More than one class: the model is uncertain between them.")
    prediction_set_level: float | None = Field(None, description="Coverage level of prediction_set, e.g. 0.9.")
    ood_distance: float | None = Field(None, description="Cosine distance of the image's penultimate features to the "
                                       "k-th nearest training image (deep nearest neighbours, Sun et al. 2022); over "
                                       "the model's threshold (99th percentile of its validation images) the image "
                                       "is out of scope. Null for a model without that record.")
    threshold: float | None = None
    positive_class: str | None = None
    temperature: float | None = None
    gradcam_method: str | None = None
    gradcam_overlay_png: str | None = Field(None, description="Grad-CAM map of the label as an RGBA layer to "
                                                              "stretch over image_png: viridis colours, opacity = the "
                                                              "map; same aspect ratio, at most 160 px per side "
                                                              "(the map is smooth).")
    gradcam_composite_png: str | None = Field(None, description="The map already blended into the image "
                                                                "(only with ?composites=true).")
    lesion_aware: bool | None = Field(None, description="busi-cls served with --lesion-aware: the probabilities "
                                      "fuse the whole image's with those of the lesion crop that busi-seg finds "
                                      "(weight and threshold chosen by cross-validation; the Grad-CAM map is the "
                                      "whole-image model's). Null for other models.")
    top_contributions: list[Contribution] | None = Field(None, description="WDBC: the largest SHAP contributions.")


class SegmentationResult(_Base):
    """The lesion mask, its contour and its area."""

    model: ModelRef
    threshold: float = Field(description="Pixel threshold on the lesion probability.")
    lesion_found: bool
    lesion_area_px: int = Field(description="Lesion area in pixels of the original image.")
    lesion_area_mm2: float | None = Field(None, description="Lesion area in mm², when the DICOM pixel spacing is "
                                                            "known.")
    lesion_max_diameter_px: float = Field(0.0, description="Longest diameter (maximum Feret diameter) of the largest "
                                                           "lesion region, in pixels of the original image.")
    lesion_max_diameter_mm: float | None = Field(None, description="The same in mm, when the DICOM pixel spacing is "
                                                                   "known (measured per axis).")
    lesion_fraction: float = Field(description="Lesion area over image area, in [0, 1].")
    n_components: int = Field(description="Connected lesion regions.")
    max_prob: float = Field(description="Largest lesion probability in the image.")
    mask_png: str = Field(description="Mask, gray PNG {0, 255}.")
    contour_overlay_png: str = Field(description="Lesion contour as an RGBA layer to lay over image_png (red line, "
                                                 "transparent elsewhere).")
    contour_composite_png: str | None = Field(None, description="The contour drawn on the image (only with "
                                                                "?composites=true).")


class NucleiResult(_Base):
    """Nuclei of an H&E tile (``monuseg``) and their morphometry (Street, Wolberg & Mangasarian 1993)."""

    model: ModelRef
    n_nuclei: int = Field(description="Nucleus instances found.")
    n_in_summary: int = Field(description="Those the features summarise: 1.9 to 1,000 µm² (30 to "
                                          "16,000 px at 0.25 µm per pixel), not touching the tile's edge.")
    microns_per_pixel: float | None = Field(description="The resolution the nuclei are measured at: a DICOM tile's "
                                                        "pixel spacing, else the model's (0.25: 40x); or null.")
    resolution_source: str = Field(description="Where microns_per_pixel comes from: 'file', 'model' or 'unknown' "
                                               "(then a note after '; ' when the file's spacing was not used).")
    median_area_px: float | None = Field(description="Median area of the summarised nuclei, pixels; null when none.")
    median_area_um2: float | None = Field(description="The same in µm² at microns_per_pixel.")
    features_px: dict[str, float | None] = Field(description="The 30 cytology columns (radius_mean ... "
                                                             "fractal_dimension_worst), lengths in pixels; null "
                                                             "where no nucleus gives a value.")
    features_um: dict[str, float | None] | None = Field(description="The same with lengths in µm (areas µm²).")
    outline_overlay_png: str = Field(description="The nuclei's outlines as an RGBA layer to lay over image_png "
                                                 "(yellow, transparent elsewhere).")
    outline_composite_png: str | None = Field(None, description="The outlines drawn on the image (only with "
                                                                "?composites=true).")
    per_nucleus: list[dict[str, float | int | bool | None]] | None = Field(
        None, description="With ?per_nucleus=true: one row per nucleus (label, centroid in pixels, touches_edge, "
                          "in_summary, the ten features in pixels, and radius_um ... area_um2); not recorded.")
    cytology_note: str = Field(description="Why these tissue features carry no diagnosis.")


class ImageInfo(_Base):
    """The uploaded image as decoded."""

    filename: str | None = Field(description="The client's file name when the service keeps names "
                                             "(--record-names), never a DICOM's; else null (de-identified).")
    width: int
    height: int
    format: str = Field(description="From the file's bytes: PNG, JPEG, TIFF or DICOM.")
    mode: str = Field(description="Stored pixel layout (Pillow mode or DICOM PhotometricInterpretation).")
    spacing_mm: list[float] | None = Field(None, description="DICOM pixel spacing (row, column) in mm: the "
                                                             "ultrasound region's calibration, else PixelSpacing.")
    spacing_note: str = Field("", description="Why a DICOM calibration gives no spacing (ultrasound regions that "
                                              "disagree); empty otherwise.")
    frame: list[int] | None = Field(None, description="For a multi-frame DICOM (cine loop): [frame read, frames], "
                                                      "1-based (the first frame is read); null for a single image.")
    in_scope: bool = Field(True, description="False when the image is unlike what the models were trained on "
                                             "(colour for a grey-ultrasound model, grey for an H&E model, too small, "
                                             "or far from every training image in the classifier's feature space).")
    scope_note: str = Field("", description="Why the image is out of scope; empty when in scope.")
    seen_in_training: str | None = Field(None, description="'yes' when a served model was trained on this image "
                                         "(the same pixels), 'near-duplicate' when on a near-duplicate of it (another "
                                         "frame of the lesion, a re-saved or re-cropped copy; ultrasound models), "
                                         "'no', or null when no served model keeps its training images' hashes. "
                                         "A result on a training image is not that of a new case.")
    display_width: int
    display_height: int
    image_png: str = Field(description="The image at the display size.")


class PredictionResponse(_Base):
    """``POST /v1/predict/{task}``."""

    prediction_id: int = Field(description="The record's id (GET /v1/predictions/{id}).")
    created_at: datetime
    task: str
    models: list[ModelRef]
    input_sha256: str = Field(description="SHA-256 of the uploaded bytes, or of the 30 features as float64.")
    elapsed_ms: float = Field(description="Server time from the received input to the answer.")
    timings_ms: dict[str, float] = Field(default_factory=dict)
    image: ImageInfo | None = None
    classification: ClassificationResult | None = None
    segmentation: SegmentationResult | None = None
    nuclei: NucleiResult | None = None
    disagreement: str | None = Field(None, description="When both models ran (ultrasound): what the classifier and "
                                                       "the segmenter contradict each other on (normal with a lesion "
                                                       "outlined, or a lesion class with none found), else null.")
    notes: list[str] = Field(default_factory=list)
    research_use_only: str = RESEARCH_USE_ONLY


class PredictionEntryOut(PredictionEntry):
    """One recorded prediction (:class:`breastdx.serve.db.PredictionEntry`) with the research-use notice."""

    research_use_only: str = RESEARCH_USE_ONLY


class PredictionList(_Base):
    """``GET /v1/predictions``: newest first."""

    total: int
    limit: int
    offset: int
    items: list[PredictionEntryOut]
    research_use_only: str = RESEARCH_USE_ONLY
