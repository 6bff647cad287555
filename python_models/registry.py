"""Model registry: name -> "module:Class", imported on first use.

Lazy imports keep the CLI usable for every model even when one model's module (or an op it
needs) is unavailable: only that model fails, with a message naming it.
"""
import importlib

MODELS = {
    "drn": "python_models.drn:DRN",
    "fsan": "python_models.fsan:FSAN",
    "ianet": "python_models.ianet:IANet",
    "glf": "python_models.glf:GLF",
    "fsm": "python_models.fsm:FSM",
}


def model_class(name):
    """The class registered under `name` (imports its module)."""
    if name not in MODELS:
        raise ValueError(f"model name must be one of {sorted(MODELS)}, got {name!r}")
    module, cls = MODELS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"model {name!r}: cannot import {module} ({e})") from e
    return getattr(mod, cls)


def build_model(name, meta=None, **overrides):
    """Build model `name`. With a dataset's `meta` dict the model reads its sizes from it
    (``cls.from_dataset(meta, **overrides)``); without, the class is called with `overrides`."""
    cls = model_class(name)
    if meta is not None:
        return cls.from_dataset(meta, **overrides)
    return cls(**overrides)
