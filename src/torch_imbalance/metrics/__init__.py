"""Balanced metrics (torchmetrics), reports and plots."""

from torch_imbalance.metrics.classification import (
    PRIMARY_METRIC,
    build_classification_metrics,
    summarise_classification,
)

__all__ = ["PRIMARY_METRIC", "build_classification_metrics", "summarise_classification"]
