#pragma once
// VGOPS_CPU_CLONES: compile a hot float loop three times, for x86-64-v4 (AVX-512), x86-64-v3
// (AVX2 + FMA) and the baseline, and let the loader pick by the running CPU (GCC target_clones; ATen does the same
// with its own CPU_CAPABILITY builds). Elsewhere (clang, other architectures, or
// -DVGOPS_NO_CPU_CLONES) it is empty and the baseline build runs. AVX-512 is what torch.compile's
// CPU code uses where present: with only the AVX2 build the elementwise gates ran 2x slower than
// Inductor's fused loop on the (AVX-512) development machine.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(VGOPS_NO_CPU_CLONES)
#define VGOPS_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VGOPS_CPU_CLONES
#endif
