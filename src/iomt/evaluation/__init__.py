"""Metrics, confidence intervals and operating thresholds (``metrics``)."""
