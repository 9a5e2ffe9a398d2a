"""Accuracy evaluation: verification and identification metrics, calibration, plots."""
