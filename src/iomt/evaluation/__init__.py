"""Metrics, confidence intervals, operating thresholds, plots and reports (compute, then draw)."""
