#pragma once
// Shared by host (C++) and device (CUDA) code: per-element math marked VGOPS_HOST_DEVICE is
// compiled once for the CPU kernels and once for the GPU kernels, so CPU tests check GPU math.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define VGOPS_HOST_DEVICE __host__ __device__
#else
#define VGOPS_HOST_DEVICE
#endif
