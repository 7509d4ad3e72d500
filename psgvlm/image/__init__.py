"""Epochs as images: the pure renderer and the feature-ablation attribution core."""
