#pragma once
// Shared by host (C++) and device (CUDA) code: per-element math marked VGOPS_HOST_DEVICE is
// compiled once for the CPU kernels and once for the GPU kernels, so CPU tests check GPU math.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define VGOPS_HOST_DEVICE __host__ __device__
#else
#define VGOPS_HOST_DEVICE
#endif

// VGOPS_FORCE_INLINE: small per-element functions called from vectorised loops. GCC does not
// always inline a plain inline function into a target_clones build (cpu/cpu_clones.h), and an
// out-of-line call per element stops the loop from vectorising.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define VGOPS_FORCE_INLINE __forceinline__
#elif defined(__GNUC__)
#define VGOPS_FORCE_INLINE inline __attribute__((always_inline))
#else
#define VGOPS_FORCE_INLINE inline
#endif
