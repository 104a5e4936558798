"""breastdx: breast-cancer diagnosis with machine learning.

Cytology (WDBC), histopathology and ultrasound tasks: data loading, leak-free splits, training,
evaluation with confidence intervals, calibration, explanations and prediction.

RESEARCH USE ONLY. Not a medical device; not for clinical diagnosis.
"""

__version__ = "0.1.0"

RESEARCH_USE_ONLY = (
    "Research use only. breastdx is not a medical device and must not be used for clinical diagnosis "
    "or treatment decisions."
)

__all__ = ["__version__", "RESEARCH_USE_ONLY"]
