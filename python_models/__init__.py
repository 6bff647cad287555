"""Thin, trainable video-grounding models (GLF, DRN, FSAN, IA-Net, FSM) on the public vgops API,
with data loaders, a trainer, an evaluator and a CLI (``python -m python_models``).

Models are imported lazily through :mod:`python_models.registry`, so importing this package is
cheap and a model whose module is missing does not break the others.
"""
from .registry import MODELS, build_model, model_class

__all__ = ["MODELS", "build_model", "model_class"]
