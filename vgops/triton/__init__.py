"""Triton kernels (GPU only; run on the CPU under TRITON_INTERPRET=1). None yet."""
