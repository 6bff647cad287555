"""Build of the vgops C++/CUDA extension (vgops._C).

    pip install --no-build-isolation .        # inside an environment that already has torch

CPU kernels are always built. CUDA kernels are built when torch is a CUDA build and a CUDA
toolkit is found, or when FORCE_CUDA=1; never when VGOPS_NO_CUDA=1. GPU architectures come
from TORCH_CUDA_ARCH_LIST (torch's own default otherwise).
"""
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _toolkit_from_nvcc(nvcc):
    """The CUDA toolkit root behind an `nvcc` that may be a wrapper script outside the toolkit.

    torch guesses CUDA_HOME as dirname(dirname(which nvcc)), which is wrong for a wrapper such as
    /usr/local/bin/nvcc -> exec /usr/local/cuda-X/bin/nvcc. nvcc's dry run prints the folder the
    real driver lives in (_HERE_), whatever launched it.
    """
    real = os.path.realpath(nvcc)
    root = os.path.dirname(os.path.dirname(real))
    if os.path.exists(os.path.join(root, "include", "cuda_runtime.h")):
        return root
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cu")
        open(src, "w").close()
        try:
            out = subprocess.run([nvcc, "--dryrun", "-c", src, "-o", os.path.join(tmp, "p.o")],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
    m = re.search(r"_HERE_=(\S+)", out.stdout + out.stderr)
    if m:
        root = os.path.dirname(os.path.normpath(m.group(1)))
        if os.path.exists(os.path.join(root, "include", "cuda_runtime.h")):
            return root
    return None


def _find_cuda_toolkit():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return home
    nvcc = shutil.which("nvcc")
    if nvcc:
        home = _toolkit_from_nvcc(nvcc)
        if home:
            return home
    for home in ("/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)):
        if os.path.exists(os.path.join(home, "bin", "nvcc")):
            return home
    return None


def _want_cuda(torch):
    if _env_flag("VGOPS_NO_CUDA"):
        return False, None
    torch_has_cuda = torch.version.cuda is not None
    home = _find_cuda_toolkit() if torch_has_cuda or _env_flag("FORCE_CUDA") else None
    if _env_flag("FORCE_CUDA"):
        if not torch_has_cuda:
            sys.exit(f"vgops: FORCE_CUDA=1 but the installed torch {torch.__version__} is a CPU "
                     "build; install a CUDA build of torch or unset FORCE_CUDA.")
        if home is None:
            sys.exit("vgops: FORCE_CUDA=1 but no CUDA toolkit was found (looked at CUDA_HOME, "
                     "CUDA_PATH, nvcc on PATH and /usr/local/cuda*); set CUDA_HOME.")
        return True, home
    return (torch_has_cuda and home is not None), home


def _nvidia_wheel_includes():
    """Header folders of the nvidia-* wheels that CUDA builds of torch from PyPI depend on
    (cuBLAS, cuSPARSE, ... headers live there, not in the toolkit)."""
    packages = {os.path.join(site, "nvidia") for site in (sysconfig.get_paths()["purelib"],
                                                          sysconfig.get_paths()["platlib"])}
    # Wherever `nvidia` is importable from: also a base environment that a virtual environment
    # sees through a .pth file or --system-site-packages (its own site-packages has no nvidia/).
    spec = importlib.util.find_spec("nvidia")
    if spec is not None and spec.submodule_search_locations:
        packages.update(spec.submodule_search_locations)
    dirs = []
    for package in packages:
        dirs += glob.glob(os.path.join(package, "*", "include"))
        dirs += glob.glob(os.path.join(package, "*", "*", "include"))
    return sorted(d for d in set(dirs) if os.path.isdir(d))


def _write_build_info(torch, with_cuda, archs):
    triton = None
    try:
        import triton as _triton  # noqa: F401 - only its version is recorded
        triton = _triton.__version__
    except ImportError:
        pass
    text = (
        "# Written by setup.py at build time; do not edit.\n"
        f"TORCH_VERSION = {torch.__version__!r}\n"
        f"WITH_CUDA = {with_cuda!r}\n"
        f"CUDA_VERSION = {(torch.version.cuda if with_cuda else None)!r}\n"
        f"CUDA_ARCHS = {archs!r}\n"
        f"TRITON_VERSION_AT_BUILD = {triton!r}\n"
    )
    with open(os.path.join(ROOT, "vgops", "_build_info.py"), "w") as f:
        f.write(text)


def _default_arch_list(torch):
    """With no TORCH_CUDA_ARCH_LIST and no visible GPU, torch has nothing to pick the
    architectures from (it fails): build for the architectures torch itself was built for."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST") or torch.cuda.is_available():
        return
    archs = [a[3:] for a in torch._C._cuda_getArchFlags().split() if a.startswith("sm_")]
    os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(f"{a[:-1]}.{a[-1]}" for a in archs)
    print(f"vgops: no GPU visible and TORCH_CUDA_ARCH_LIST unset: building for torch's own "
          f"architectures {os.environ['TORCH_CUDA_ARCH_LIST']}")


def _cuda_archs(cpp_extension):
    """Architectures of the build as "9.0"-style strings, read off torch's nvcc arch flags."""
    flags = " ".join(cpp_extension._get_cuda_arch_flags())
    return sorted({f"{d[:-1]}.{d[-1]}{suffix}" for d, suffix in re.findall(r"code=(?:sm|compute)_(\d+)([af]?)", flags)},
                  key=lambda a: float(a.rstrip("af")))


def extensions():
    try:
        import torch
    except ImportError:
        sys.exit("vgops: torch is not importable. vgops compiles against the torch it will run "
                 "with: install torch first (for example `pip install torch==2.13.0`), then "
                 "`pip install --no-build-isolation .`")

    with_cuda, cuda_home = _want_cuda(torch)
    if with_cuda and not os.environ.get("CUDA_HOME"):
        # torch.utils.cpp_extension reads CUDA_HOME when it is imported: set it first.
        os.environ["CUDA_HOME"] = cuda_home
    from torch.utils import cpp_extension

    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) +
                     glob.glob(os.path.join("csrc", "ops", "*.cpp")) +
                     glob.glob(os.path.join("csrc", "ops", "cpu", "*.cpp")))
    define_macros = []  # Py_LIMITED_API is defined by BuildExtension (py_limited_api=True)
    # -fno-trapping-math lets GCC vectorise loops with floating-point selects (results unchanged:
    # it only stops treating FP exceptions as observable).
    # -fopenmp: at::parallel_for is an inline OpenMP region, serial unless the extension itself is
    # compiled with OpenMP. GOMP symbols resolve to the runtime torch already loaded.
    extra = {"cxx": ["-O3", "-fno-trapping-math", "-fvisibility=hidden", "-fopenmp"]}
    include_dirs = [os.path.join(ROOT, "csrc")]
    extra_link = []
    sanitize = os.environ.get("VGOPS_SANITIZE")  # e.g. "address,undefined": CPU code (CI's sanitizer step)
    if sanitize:
        flags = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
        extra["cxx"] += flags
        extra_link += flags
    archs = []
    if with_cuda:
        sources += sorted(glob.glob(os.path.join("csrc", "ops", "cuda", "*.cu")))
        define_macros.append(("VGOPS_WITH_CUDA", None))
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        include_dirs += _nvidia_wheel_includes()
        _default_arch_list(torch)
        archs = _cuda_archs(cpp_extension)
        ext_cls = cpp_extension.CUDAExtension
    else:
        ext_cls = cpp_extension.CppExtension
    _write_build_info(torch, with_cuda, archs)
    print(f"vgops: building against torch {torch.__version__}; CUDA kernels: "
          f"{'yes, archs ' + ','.join(archs) + ' from ' + cuda_home if with_cuda else 'no'}")
    ext = ext_cls("vgops._C", sources, include_dirs=include_dirs, define_macros=define_macros,
                  extra_compile_args=extra, extra_link_args=extra_link, py_limited_api=True)
    return [ext], cpp_extension.BuildExtension.with_options(use_ninja=True)


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import its helpers
    ext_modules, build_ext = extensions()
    setup(
        ext_modules=ext_modules,
        cmdclass={"build_ext": build_ext},
        options={"bdist_wheel": {"py_limited_api": "cp310"}},
    )
