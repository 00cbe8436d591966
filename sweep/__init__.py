"""Fusion Steering (Chang & Yasin, 2025) as a distributed per-prompt sweep on Ray Tune, Optuna and MLflow."""

__version__ = "0.1.0"
