"""Loads the compiled extension vgops._C after checking it was built against this torch."""
import importlib

import torch

_REBUILD = ("rebuild vgops against the installed torch: "
            "pip install --no-build-isolation --no-deps --force-reinstall <path to the vgops source>")


def _load():
    try:
        info = importlib.import_module("vgops._build_info")
    except ImportError:
        return None
    if info.TORCH_VERSION != torch.__version__:
        raise ImportError(
            f"vgops was compiled against torch {info.TORCH_VERSION} but torch {torch.__version__} "
            f"is installed; torch's C++ ABI differs between releases, so {_REBUILD}")
    try:
        importlib.import_module("vgops._C")
    except ImportError as e:
        raise ImportError(f"vgops: the compiled extension vgops._C failed to load ({e}); {_REBUILD}") from e
    return info


# None when vgops runs from an unbuilt source tree: then only the reference backend serves.
BUILD_INFO = _load()
HAS_EXTENSION = BUILD_INFO is not None


def build_info():
    """What this vgops was compiled with.

    Returns:
        dict: ``torch_version`` (built against), ``extension`` (the C++ ops loaded),
        ``cuda`` (CUDA kernels compiled), ``cuda_version``, ``cuda_archs`` (e.g. ``["9.0"]``),
        ``triton`` (Triton importable now, so the Triton kernels can run), ``triton_version``.
    """
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "torch_version": BUILD_INFO.TORCH_VERSION if BUILD_INFO else None,
        "extension": HAS_EXTENSION,
        "cuda": bool(BUILD_INFO and BUILD_INFO.WITH_CUDA),
        "cuda_version": BUILD_INFO.CUDA_VERSION if BUILD_INFO else None,
        "cuda_archs": list(BUILD_INFO.CUDA_ARCHS) if BUILD_INFO else [],
        "triton": triton_version is not None,
        "triton_version": triton_version,
    }
