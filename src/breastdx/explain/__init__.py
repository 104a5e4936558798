"""Explanations: SHAP for tabular models, Grad-CAM for networks."""
