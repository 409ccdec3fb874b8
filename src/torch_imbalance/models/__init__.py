"""Models by name: timm classifiers with a linear or cosine head."""

from torch_imbalance.models.classifier import HEADS, ImageClassifier, build_classifier, default_head

__all__ = ["HEADS", "ImageClassifier", "build_classifier", "default_head"]
