#pragma once
// Batched matrix products whose CPU result does not depend on the thread count (issue: ATen's
// CPU bmm/matmul may block the batch differently with other thread counts, which was measured
// to change the low bits of the co-attention gradients between 2 and 3 threads). On the CPU
// every product is one GEMM called inside at::parallel_for, where ATen runs it single-threaded:
// each output matrix is computed the same way whichever thread takes it. Other devices use
// at::matmul.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <c10/util/accumulate.h>

#include <vector>

namespace vgops {

// a [..., n, k] @ b [..., k, m] with equal leading dims (no broadcasting) -> [..., n, m].
inline at::Tensor matmul_fixed(const at::Tensor& a, const at::Tensor& b) {
  if (!a.device().is_cpu()) return at::matmul(a, b);
  TORCH_CHECK(a.dim() >= 2 && a.dim() == b.dim() && a.sizes().slice(0, a.dim() - 2) == b.sizes().slice(0, b.dim() - 2),
              "matmul_fixed: leading dims differ: ", a.sizes(), " and ", b.sizes());
  const int64_t n = a.size(-2), k = a.size(-1), m = b.size(-1);
  std::vector<int64_t> sizes(a.sizes().begin(), a.sizes().end());
  sizes.back() = m;
  const int64_t batch = c10::multiply_integers(a.sizes().slice(0, a.dim() - 2));
  if (batch * n * m == 0 || k == 0) return at::zeros(sizes, a.options());
  const at::Tensor a3 = a.reshape({batch, n, k}), b3 = b.reshape({batch, k, m});
  at::Tensor out = at::empty({batch, n, m}, a.options());
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(n * k + k * m, 1));
  at::parallel_for(0, a3.size(0), grain, [&](int64_t lo, int64_t hi) {
    // The drivers run below autograd (their gradients are registered ops); mm_out must not see
    // autograd either (it refuses the out= form for inputs that require grad). Set on each
    // worker thread: dispatch guards are thread-local.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t i = lo; i < hi; ++i) {
      at::Tensor o = out.select(0, i);
      at::mm_out(o, a3.select(0, i), b3.select(0, i));
    }
  });
  return out.view(sizes);
}

}  // namespace vgops
