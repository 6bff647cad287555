#pragma once
// VGOPS_CPU_CLONES: compile a hot float loop twice, for x86-64-v3 (AVX2 + FMA) and for the
// baseline, and let the loader pick by the running CPU (GCC target_clones; ATen does the same
// with its own CPU_CAPABILITY builds). Elsewhere (clang, other architectures, or
// -DVGOPS_NO_CPU_CLONES) it is empty and the baseline build runs.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(VGOPS_NO_CPU_CLONES)
#define VGOPS_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VGOPS_CPU_CLONES
#endif
