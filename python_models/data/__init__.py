"""Datasets (synthetic, annotation readers + pre-extracted features) and batching."""
from .collate import collate
from .synthetic import SyntheticGrounding

__all__ = ["collate", "SyntheticGrounding"]
