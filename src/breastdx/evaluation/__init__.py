"""Evaluation: metrics with confidence intervals, calibration, operating points, plots and reports."""
