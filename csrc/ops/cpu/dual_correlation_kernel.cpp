// CPU kernels of kv_attention (FSM gated correlation) and its backward; shared math in
// ../dual_correlation.h. Flash-style in memory: per (chunk of groups, tile of query rows) the
// scores live in a [groups, rows, Nk] buffer of the thread (GEMMs through ATen/BLAS on views,
// softmax by branch-free loops), never a [G, Nq, Nk] tensor; the backward recomputes the weights
// from the saved per-row log-sum-exp. A backward task owns whole groups and visits their query
// tiles in order, so d k sums in a fixed order: deterministic.
#include <ATen/ATen.h>
#include <algorithm>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include "../checks.h"
#include "../dual_correlation.h"
#include "cpu_clones.h"

namespace vgops {
namespace {

// Query rows per tile: a [rows, Nk] score buffer of about 16K elements (64 KiB in float), at
// least 128 rows so few keys (FSM's 30 words) still make GEMMs tall enough to run efficiently.
inline int64_t tile_rows(int64_t Nk) { return std::clamp<int64_t>(16384 / std::max<int64_t>(Nk, 1), 128, 1024); }

// The GEMMs run on at::parallel_for's worker threads, which do not inherit the caller's dispatch
// state: keep them below autograd (the op's backward is its own op) and out of autocast (the op
// runs in its inputs' dtype).
struct PlainGemmGuard {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  c10::impl::ExcludeDispatchKeyGuard no_autocast{c10::autocast_dispatch_keyset};
};

at::Tensor mask_or_ones(const std::optional<at::Tensor>& mask, const at::Tensor& k) {
  if (mask.has_value() && mask->defined()) return mask->contiguous();
  return at::ones({k.size(0), k.size(1)}, k.options().dtype(at::kBool));
}

// Reductions below keep kLanes partial results written out in a fixed order, so the loops
// vectorise without reassociation and every result is the same whatever the thread count.
constexpr int kLanes = 16;

// Turns the raw scores s[0..n) of one query row into softmax weights over the valid keys (in
// place) and returns the row's log-sum-exp (-inf and all-zero weights when no key is valid).
template <typename T>
__attribute__((always_inline)) inline T softmax_row_impl(T* __restrict__ s, const bool* __restrict__ valid, int64_t n,
                                                         T scale) {
  const T ninf = kv_attention::neg_inf<T>();
  T part_max[kLanes];
  for (int l = 0; l < kLanes; ++l) part_max[l] = ninf;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const T v = valid[j + l] ? s[j + l] * scale : ninf;
      s[j + l] = v;
      part_max[l] = v > part_max[l] ? v : part_max[l];
    }
  for (; j < n; ++j) {
    const T v = valid[j] ? s[j] * scale : ninf;
    s[j] = v;
    part_max[j % kLanes] = v > part_max[j % kLanes] ? v : part_max[j % kLanes];
  }
  T mx = ninf;
  for (int l = 0; l < kLanes; ++l) mx = part_max[l] > mx ? part_max[l] : mx;
  const T base = mx > ninf ? mx : T(0);
  T part[kLanes] = {};
  for (j = 0; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const T p = valid[j + l] ? gates::exp_(s[j + l] - base) : T(0);
      s[j + l] = p;
      part[l] += p;
    }
  for (; j < n; ++j) {
    const T p = valid[j] ? gates::exp_(s[j] - base) : T(0);
    s[j] = p;
    part[j % kLanes] += p;
  }
  T sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += part[l];
  const T inv = sum > T(0) ? T(1) / sum : T(0);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) s[i] *= inv;
  return kv_attention::row_lse(mx, sum);
}

// Backward of one query row: D = dO . O, then in place s (raw scores) -> weights p and
// ds (dO K^T) -> d scores = p (dp - D) * scale.
template <typename T>
__attribute__((always_inline)) inline void backward_row_impl(const T* __restrict__ go, const T* __restrict__ oo,
                                                             int64_t d, T lse, T* __restrict__ s,
                                                             T* __restrict__ ds, const bool* __restrict__ valid,
                                                             int64_t n, T scale) {
  T part[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= d; c += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += go[c + l] * oo[c + l];
  for (; c < d; ++c) part[c % kLanes] += go[c] * oo[c];
  T d_row = 0;
  for (int l = 0; l < kLanes; ++l) d_row += part[l];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T p = valid[j] ? kv_attention::weight_from_lse<T>(s[j] * scale, lse) : T(0);
    s[j] = p;
    ds[j] = kv_attention::score_grad<T>(p, ds[j], d_row) * scale;
  }
}

// float: AVX-512 / AVX2 / baseline builds picked at load time (cpu_clones.h); the overloads
// below send float to them (exact match) and double to the plain template.
VGOPS_CPU_CLONES float softmax_row_float(float* s, const bool* valid, int64_t n, float scale) {
  return softmax_row_impl(s, valid, n, scale);
}
VGOPS_CPU_CLONES void backward_row_float(const float* go, const float* oo, int64_t d, float lse, float* s, float* ds,
                                         const bool* valid, int64_t n, float scale) {
  backward_row_impl(go, oo, d, lse, s, ds, valid, n, scale);
}
template <typename T>
T softmax_row(T* s, const bool* valid, int64_t n, T scale) {
  return softmax_row_impl(s, valid, n, scale);
}
inline float softmax_row(float* s, const bool* valid, int64_t n, float scale) {
  return softmax_row_float(s, valid, n, scale);
}
template <typename T>
void backward_row(const T* go, const T* oo, int64_t d, T lse, T* s, T* ds, const bool* valid, int64_t n, T scale) {
  backward_row_impl(go, oo, d, lse, s, ds, valid, n, scale);
}
inline void backward_row(const float* go, const float* oo, int64_t d, float lse, float* s, float* ds,
                         const bool* valid, int64_t n, float scale) {
  backward_row_float(go, oo, d, lse, s, ds, valid, n, scale);
}

// Work split: a task is a chunk of `gc` groups, each in query tiles of up to tile_rows(Nk) rows.
// Groups of at most one tile of queries (FSM's per-frame self-correlation: 49 tokens) are batched kChunkRows
// rows to a task, so one batched GEMM call serves many small groups (a call per 49 x 49 matrix
// cost more in dispatch than in arithmetic); longer groups take one group per task. The split
// depends on the shapes only, never on the thread count.
constexpr int64_t kChunkRows = 512;

inline int64_t groups_per_task(int64_t G, int64_t Nq, int64_t tile) {
  return Nq > tile ? 1 : std::max<int64_t>(1, std::min<int64_t>(G, kChunkRows / std::max<int64_t>(Nq, 1)));
}

std::tuple<at::Tensor, at::Tensor> kv_attention_cpu(const at::Tensor& q_in, const at::Tensor& k_in,
                                                    const std::optional<at::Tensor>& mask_in, double scale_d) {
  check_kv_attention_inputs(q_in, k_in, mask_in);
  const int64_t G = q_in.size(0), Nq = q_in.size(1), Nk = k_in.size(1), d = q_in.size(2);
  // Every tile's output rows are written by a GEMM (zeros where there are no keys): no zero fill.
  at::Tensor out = at::empty({G, Nq, d}, q_in.options());
  at::Tensor lse = at::empty({G, Nq}, q_in.options());
  if (G * Nq == 0) return {out, lse};
  at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), mask = mask_or_ones(mask_in, k);
  const int64_t tile = tile_rows(Nk), rows = std::min(Nq, tile), tiles = (Nq + tile - 1) / tile;
  const int64_t gc = groups_per_task(G, Nq, tile);
  const int64_t chunks = (G + gc - 1) / gc;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "kv_attention_cpu", [&] {
    using T = scalar_t;
    const T scale = static_cast<T>(scale_d);
    const bool* pm = mask.const_data_ptr<bool>();
    T* plse = lse.mutable_data_ptr<T>();
    at::parallel_for(0, chunks * tiles, 1, [&](int64_t lo, int64_t hi) {
      PlainGemmGuard guard;
      at::Tensor S = at::empty({gc, rows, Nk}, q.options());
      for (int64_t task = lo; task < hi; ++task) {
        const int64_t g0 = (task / tiles) * gc, n = std::min(gc, G - g0);
        const int64_t i0 = (task % tiles) * tile, bq = std::min(tile, Nq - i0);
        at::Tensor K3 = k.narrow(0, g0, n), S3 = S.narrow(0, 0, n).narrow(1, 0, bq);
        at::bmm_out(S3, q.narrow(0, g0, n).narrow(1, i0, bq), K3.transpose(1, 2));
        T* ps = S3.data_ptr<T>();
        for (int64_t i = 0; i < n; ++i)
          for (int64_t r = 0; r < bq; ++r)
            plse[(g0 + i) * Nq + i0 + r] =
                softmax_row(ps + i * S3.stride(0) + r * Nk, pm + (g0 + i) * Nk, Nk, scale);
        at::Tensor O3 = out.narrow(0, g0, n).narrow(1, i0, bq);
        at::bmm_out(O3, S3, K3);
      }
    });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor> kv_attention_backward_cpu(const at::Tensor& grad_in, const at::Tensor& q_in,
                                                             const at::Tensor& k_in,
                                                             const std::optional<at::Tensor>& mask_in,
                                                             const at::Tensor& out_in, const at::Tensor& lse_in,
                                                             double scale_d) {
  check_kv_attention_inputs(q_in, k_in, mask_in);
  const int64_t G = q_in.size(0), Nq = q_in.size(1), Nk = k_in.size(1), d = q_in.size(2);
  TORCH_CHECK_VALUE(grad_in.sizes() == q_in.sizes() && out_in.sizes() == q_in.sizes() && lse_in.dim() == 2 &&
                        lse_in.size(0) == G && lse_in.size(1) == Nq,
                    "_kv_attention_backward: grad_out and out must be [G, Nq, d] and lse [G, Nq], got ",
                    grad_in.sizes(), ", ", out_in.sizes(), " and ", lse_in.sizes());
  at::Tensor dk = at::zeros({G, Nk, d}, k_in.options());
  if (G * Nq == 0 || Nk == 0) return {at::zeros({G, Nq, d}, q_in.options()), dk};
  at::Tensor dq = at::empty({G, Nq, d}, q_in.options());  // every row written by a GEMM
  auto dt = q_in.scalar_type();
  at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), mask = mask_or_ones(mask_in, k);
  at::Tensor grad = grad_in.contiguous().to(dt), out = out_in.contiguous().to(dt), lse = lse_in.contiguous().to(dt);
  const int64_t tile = tile_rows(Nk), rows = std::min(Nq, tile), tiles = (Nq + tile - 1) / tile;
  const int64_t gc = groups_per_task(G, Nq, tile);
  const int64_t chunks = (G + gc - 1) / gc;
  AT_DISPATCH_FLOATING_TYPES(dt, "kv_attention_backward_cpu", [&] {
    using T = scalar_t;
    const T scale = static_cast<T>(scale_d);
    const bool* pm = mask.const_data_ptr<bool>();
    const T *plse = lse.const_data_ptr<T>(), *pg = grad.const_data_ptr<T>(), *po = out.const_data_ptr<T>();
    // A task owns its groups' d K and visits their query tiles in order: d K sums in a fixed order.
    at::parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
      PlainGemmGuard guard;
      at::Tensor P = at::empty({gc, rows, Nk}, q.options()), dS = at::empty({gc, rows, Nk}, q.options());
      for (int64_t c = lo; c < hi; ++c) {
        const int64_t g0 = c * gc, n = std::min(gc, G - g0);
        at::Tensor K3 = k.narrow(0, g0, n), dK3 = dk.narrow(0, g0, n);
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t i0 = t * tile, bq = std::min(tile, Nq - i0);
          at::Tensor Q3 = q.narrow(0, g0, n).narrow(1, i0, bq), dO3 = grad.narrow(0, g0, n).narrow(1, i0, bq);
          at::Tensor P3 = P.narrow(0, 0, n).narrow(1, 0, bq), dS3 = dS.narrow(0, 0, n).narrow(1, 0, bq);
          at::bmm_out(P3, Q3, K3.transpose(1, 2));    // scores
          at::bmm_out(dS3, dO3, K3.transpose(1, 2));  // d P = dO V^T with V = K
          T *pp = P3.data_ptr<T>(), *pds = dS3.data_ptr<T>();
          for (int64_t i = 0; i < n; ++i)
            for (int64_t r = 0; r < bq; ++r) {
              const int64_t row = (g0 + i) * Nq + i0 + r, off = i * P3.stride(0) + r * Nk;
              backward_row(pg + row * d, po + row * d, d, plse[row], pp + off, pds + off, pm + (g0 + i) * Nk, Nk,
                           scale);
            }
          at::Tensor dQ3 = dq.narrow(0, g0, n).narrow(1, i0, bq);
          at::bmm_out(dQ3, dS3, K3);                   // d Q = scale dS K
          for (int64_t i = 0; i < n; ++i) {           // (per group: ATen's batched form of a
            at::Tensor dKg = dK3.select(0, i);        //  transposed-A product measured slower)
            dKg.addmm_(dS3.select(0, i).t(), Q3.select(0, i));  // d K (keys)   += scale dS^T Q
            dKg.addmm_(P3.select(0, i).t(), dO3.select(0, i));  // d K (values) += P^T dO
          }
        }
      }
    });
  });
  return {dq, dk};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("kv_attention", &kv_attention_cpu);
  m.impl("_kv_attention_backward", &kv_attention_backward_cpu);
}

}  // namespace vgops
