"""Inference: Predictors that rebuild a model from its folder alone, predict new cases and draw overlays."""
