"""Explanations (Grad-CAM)."""
