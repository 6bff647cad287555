"""The build: what was compiled, the torch-version guard, the abi3 module and the CUDA toolkit
search behind a wrapper nvcc."""
import glob
import importlib
import importlib.util
import os
import shutil
import stat

import pytest
import torch

import vgops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_setup_module():
    spec = importlib.util.spec_from_file_location("vgops_setup_under_test", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # not __main__: defines the helpers, builds nothing
    return mod


def test_build_info():
    info = vgops.build_info()
    assert info["torch_version"] == torch.__version__
    assert info["extension"] is True
    if os.environ.get("VGOPS_EXPECT_CUDA") == "1":  # set by CI's CUDA step: the .cu files were built
        assert info["cuda"] is True and info["cuda_version"] == torch.version.cuda
    if torch.version.cuda is None:  # a CPU build of torch never gets CUDA kernels
        assert info["cuda"] is False and info["cuda_archs"] == []
    if info["cuda"]:
        assert info["cuda_archs"], "a CUDA build records its architectures"
        expected = os.environ.get("TORCH_CUDA_ARCH_LIST")
        if expected:
            assert info["cuda_archs"] == sorted(expected.replace(";", " ").split())
    assert isinstance(info["triton"], bool)
    assert set(info) == {"torch_version", "extension", "cuda", "cuda_version", "cuda_archs", "triton", "triton_version"}


def test_cuda_kernels_registered_iff_built():
    has_cuda_kernel = torch._C._dispatch_has_kernel_for_dispatch_key("vgops::temporal_nms", "CUDA")
    assert has_cuda_kernel == vgops.build_info()["cuda"]
    for op in ("temporal_iou", "_temporal_iou_backward", "temporal_nms", "batched_temporal_nms"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"vgops::{op}", "CPU"), op


def test_extension_is_abi3():
    so = glob.glob(os.path.join(os.path.dirname(vgops.__file__), "_C*.so"))
    assert so and all(".abi3." in os.path.basename(p) for p in so), so


def test_torch_version_mismatch_is_a_clear_error(monkeypatch):
    from vgops import _build_info, _loader

    monkeypatch.setattr(_build_info, "TORCH_VERSION", "2.0.0+fake")
    with pytest.raises(ImportError) as err:
        _loader._load()
    msg = str(err.value)
    assert "compiled against torch 2.0.0+fake" in msg and f"torch {torch.__version__} is installed" in msg
    assert "pip install --no-build-isolation" in msg


@pytest.mark.skipif(shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"),
                    reason="no CUDA toolkit on this machine")
def test_toolkit_found_behind_wrapper_nvcc(tmp_path, monkeypatch):
    setup_mod = load_setup_module()
    real = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    toolkit = setup_mod._toolkit_from_nvcc(real)
    assert toolkit and os.path.exists(os.path.join(toolkit, "include", "cuda_runtime.h"))
    # A wrapper script outside the toolkit, first on PATH (torch would guess CUDA_HOME = tmp_path).
    wrapper = tmp_path / "bin" / "nvcc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {os.path.join(toolkit, "bin", "nvcc")} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    assert setup_mod._toolkit_from_nvcc(str(wrapper)) == toolkit
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    assert setup_mod._find_cuda_toolkit() == toolkit


def test_nvidia_wheel_include_dirs_are_folders():
    setup_mod = load_setup_module()
    dirs = setup_mod._nvidia_wheel_includes()
    assert all(os.path.isdir(d) and d.endswith("include") for d in dirs)
    if torch.version.cuda is not None and importlib.util.find_spec("nvidia") is not None:
        assert dirs, "a CUDA build of torch from PyPI brings nvidia-* header folders"
