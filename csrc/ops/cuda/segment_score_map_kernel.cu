// CUDA kernels of the segment_score_map family and their backward passes; the per-element math is
// in ../segment_score_map.h (the CPU kernels call the same functions).
//
// Layout of the work, all deterministic (no atomics; every sum has a fixed order):
//  * prefix kernels: one thread per (sample[, token]) row builds the prefix sums over clips
//    (accumulated in double), the clip counts and Ns;
//  * forward reductions to [B]: one block per (sample, row s) sums its segments with a fixed tree,
//    then one thread per sample adds its rows in order;
//  * backward: with c(s, e) the gradient coefficient of segment (s, e), one thread per (row, k)
//    computes Row[k] = sum_e c(k, e) and Col[k] = sum_s c(s, k); one thread per row turns
//    Col[k - 1] - Row[k] (the gradient of prefix entry k) into per-clip gradients by a suffix sum.
// The token-loss passes cost O(B * Ns * Nv^2) arithmetic and O(B * Ns * Nv) memory.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>

#include "../checks.h"
#include "../segment_score_map.h"

namespace vgops {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 16)));
}

inline int row_blocks(int64_t rows) { return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(rows, 1 << 20))); }

#define VGOPS_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

template <typename T>
at::ScalarType scalar_type_of() {
  return std::is_same<T, double>::value ? at::kDouble : at::kFloat;
}

// cnt[b, k] = valid clips before k (as T); ns[b] = valid tokens (as T; tm may be null: 0).
template <typename T>
__global__ void counts_kernel(const bool* __restrict__ cm, const bool* __restrict__ tm, int64_t B, int64_t Ns,
                              int64_t Nv, T* __restrict__ cnt, T* __restrict__ ns) {
  VGOPS_GRID_STRIDE(b, B) {
    int64_t run = 0;
    cnt[b * (Nv + 1)] = T(0);
    for (int64_t j = 0; j < Nv; ++j) {
      run += cm[b * Nv + j] ? 1 : 0;
      cnt[b * (Nv + 1) + j + 1] = static_cast<T>(run);
    }
    int64_t t = 0;
    if (tm != nullptr)
      for (int64_t i = 0; i < Ns; ++i) t += tm[b * Ns + i] ? 1 : 0;
    ns[b] = static_cast<T>(t);
  }
}

// X[r, k] = sum over valid j < k of x[r, j]; the mask row of row r is r / per_mask.
template <typename scalar_t, typename T>
__global__ void masked_prefix_kernel(const scalar_t* __restrict__ x, const bool* __restrict__ cm, int64_t R,
                                     int64_t per_mask, int64_t Nv, T* __restrict__ X) {
  VGOPS_GRID_STRIDE(r, R) {
    const bool* m = cm + (r / per_mask) * Nv;
    double run = 0;
    X[r * (Nv + 1)] = T(0);
    for (int64_t j = 0; j < Nv; ++j) {
      run += m[j] ? static_cast<double>(static_cast<T>(x[r * Nv + j])) : 0.0;
      X[r * (Nv + 1) + j + 1] = static_cast<T>(run);
    }
  }
}

// Per (b, j): sum over valid tokens and minimum over valid tokens of P[b, :, j] (argmin = first
// valid token reaching it, -1 if none; the minimum is +inf then).
template <typename scalar_t, typename T>
__global__ void token_reduce_kernel(const scalar_t* __restrict__ p, const bool* __restrict__ tm, int64_t B,
                                    int64_t Ns, int64_t Nv, T* __restrict__ colsum, T* __restrict__ mn,
                                    int64_t* __restrict__ argmin) {
  VGOPS_GRID_STRIDE(idx, B * Nv) {
    const int64_t b = idx / Nv, j = idx % Nv;
    T sum = 0, best = std::numeric_limits<T>::infinity();
    int64_t arg = -1;
    for (int64_t i = 0; i < Ns; ++i) {
      if (!tm[b * Ns + i]) continue;
      const T v = static_cast<T>(p[(b * Ns + i) * Nv + j]);
      sum += v;
      if (v < best || arg < 0) {
        best = v;
        arg = i;
      }
    }
    colsum[idx] = sum;
    mn[idx] = best;
    if (argmin != nullptr) argmin[idx] = arg;
  }
}

template <typename T>
__device__ inline T block_sum(T v, T* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  const T total = shared[0];
  __syncthreads();
  return total;
}

// rows[b * Nv + s] = sum over valid e >= s of f(b, s, e), for valid s (0 otherwise). One block per
// row; launched with kThreads threads.
template <typename T, typename F>
__global__ void rows_kernel(F f, const bool* __restrict__ cm, int64_t B, int64_t Nv, T* __restrict__ rows) {
  __shared__ T shared[kThreads];
  for (int64_t row = blockIdx.x; row < B * Nv; row += gridDim.x) {
    const int64_t b = row / Nv, s = row % Nv;
    const bool* m = cm + b * Nv;
    T acc = 0;
    if (m[s])
      for (int64_t e = s + threadIdx.x; e < Nv; e += blockDim.x)
        if (m[e]) acc += f(b, s, e);
    const T total = block_sum<T>(acc, shared);
    if (threadIdx.x == 0) rows[row] = total;
  }
}

// out[b] = (sum over s of rows[b, s], in order) * scale[b] (scale null: 1, else 1 / scale[b]).
template <typename scalar_t, typename T>
__global__ void finish_rows_kernel(const T* __restrict__ rows, const T* __restrict__ ns, int64_t B, int64_t Nv,
                                   scalar_t* __restrict__ out) {
  VGOPS_GRID_STRIDE(b, B) {
    double total = 0;
    for (int64_t s = 0; s < Nv; ++s) total += static_cast<double>(rows[b * Nv + s]);
    T v = static_cast<T>(total);
    if (ns != nullptr) v = v / ns[b];
    out[b] = static_cast<scalar_t>(v);
  }
}

// With coef(r, s, e, v) writing NC coefficients of segment (s, e) of row r (mask row r / per_mask):
// row[c][r][k] = sum over valid e >= k of v[c](k, e); col[c][r][k] = sum over valid s <= k of
// v[c](s, k); both 0 where clip k is not valid.
template <int NC, typename T, typename F>
__global__ void row_col_kernel(F coef, const bool* __restrict__ cm, int64_t R, int64_t per_mask, int64_t Nv,
                               T* __restrict__ row, T* __restrict__ col) {
  VGOPS_GRID_STRIDE(idx, R * Nv) {
    const int64_t r = idx / Nv, k = idx % Nv;
    const bool* m = cm + (r / per_mask) * Nv;
    T rs[NC], cs[NC], v[NC];
    for (int c = 0; c < NC; ++c) rs[c] = cs[c] = T(0);
    if (m[k]) {
      for (int64_t e = k; e < Nv; ++e) {
        if (!m[e]) continue;
        coef(r, k, e, v);
        for (int c = 0; c < NC; ++c) rs[c] += v[c];
      }
      for (int64_t s = 0; s <= k; ++s) {
        if (!m[s]) continue;
        coef(r, s, k, v);
        for (int c = 0; c < NC; ++c) cs[c] += v[c];
      }
    }
    for (int c = 0; c < NC; ++c) {
      row[c * R * Nv + idx] = rs[c];
      col[c * R * Nv + idx] = cs[c];
    }
  }
}

// Per-clip gradient of row r from the gradient of its prefix entries,
//   dX[k] = sign * (col[k - 1] - row[k]) (k < Nv),  dX[Nv] = sign * (col[Nv - 1] - total_sign * sum_s row[s]):
// out[r, j] = m[j] ? scale[r] * sum_{k > j} dX[k] : 0. scale: g[r / per_g] / (ns ? ns[r / per_g] : 1).
template <typename T>
__device__ inline void suffix_to_clips(const T* row, const T* col, const bool* m, int64_t Nv, T sign, bool total,
                                       T scale, T* out, int64_t out_stride) {
  double tot = 0;
  if (total)
    for (int64_t s = 0; s < Nv; ++s) tot += static_cast<double>(row[s]);
  double run = 0;
  for (int64_t j = Nv - 1; j >= 0; --j) {
    const int64_t k = j + 1;
    double d = static_cast<double>(col[k - 1]) - (k < Nv ? static_cast<double>(row[k]) : tot);
    run += static_cast<double>(sign) * d;
    out[j * out_stride] = m[j] ? static_cast<T>(run) * scale : T(0);
  }
}

// ---------------------------------------------------------------------------------------------
// coefficient / value functors

template <typename T>
struct Prefix {  // prefix arrays of one family of rows, Nv + 1 entries each
  const T* X;
  const T* cnt;
  int64_t Nv;
};

template <typename scalar_t, typename T>
struct ScoreCoef {  // d SC / d A[e + 1] and -d SC / d M[Nv] of segment (s, e), scaled by grad
  const scalar_t* grad;
  const T* cnt;
  const T* ns;
  int64_t Nv;
  __device__ void operator()(int64_t b, int64_t s, int64_t e, T* v) const {
    const T g = static_cast<T>(grad[(b * Nv + s) * Nv + e]);
    const T* c = cnt + b * (Nv + 1);
    v[0] = ssm::mean_in_coef<T>(g, c[s], c[e + 1]) / ns[b];
    v[1] = ssm::mean_out_coef<T>(g, c[s], c[e + 1], c[Nv]);
  }
};

template <int FN, typename scalar_t, typename T>
struct TokenValue {  // W[b, s, e] * sum over valid tokens of fn(segment sum)
  const scalar_t* W;
  const bool* tm;
  const T* C;
  int64_t Ns, Nv;
  __device__ T operator()(int64_t b, int64_t s, int64_t e) const {
    T f = 0;
    for (int64_t i = 0; i < Ns; ++i) {
      if (!tm[b * Ns + i]) continue;
      const T* c = C + (b * Ns + i) * (Nv + 1);
      f += ssm::token_fn<FN, T>(c[e + 1] - c[s]);
    }
    return static_cast<T>(W[(b * Nv + s) * Nv + e]) * f;
  }
};

template <int FN, typename scalar_t, typename T>
struct TokenCoef {  // W[b, s, e] * fn'(segment sum of token i); rows r = b * Ns + i
  const scalar_t* W;
  const bool* tm;
  const T* C;
  int64_t Ns, Nv;
  __device__ void operator()(int64_t r, int64_t s, int64_t e, T* v) const {
    const int64_t b = r / Ns;
    const T* c = C + r * (Nv + 1);
    T f, d;
    ssm::token_fn_and_grad<FN, T>(c[e + 1] - c[s], &f, &d);
    v[0] = tm[r] ? static_cast<T>(W[(b * Nv + s) * Nv + e]) * d : T(0);
  }
};

template <bool OUTSIDE, typename scalar_t, typename T>
struct MeanValue {  // W[b, s, e] * mean of x inside / outside [s, e]
  const scalar_t* W;
  Prefix<T> x;
  __device__ T mean(int64_t b, int64_t s, int64_t e) const {
    const T* X = x.X + b * (x.Nv + 1);
    const T* c = x.cnt + b * (x.Nv + 1);
    return OUTSIDE ? ssm::mean_out<T>(X[s], X[e + 1], X[x.Nv], c[s], c[e + 1], c[x.Nv])
                   : ssm::mean_in<T>(X[s], X[e + 1], c[s], c[e + 1]);
  }
  __device__ T operator()(int64_t b, int64_t s, int64_t e) const {
    return static_cast<T>(W[(b * x.Nv + s) * x.Nv + e]) * mean(b, s, e);
  }
};

template <bool OUTSIDE, typename scalar_t, typename T>
struct MeanCoef {  // W[b, s, e] / n_in (inside) or / n_out (outside)
  const scalar_t* W;
  const T* cnt;
  int64_t Nv;
  __device__ void operator()(int64_t b, int64_t s, int64_t e, T* v) const {
    const T w = static_cast<T>(W[(b * Nv + s) * Nv + e]);
    const T* c = cnt + b * (Nv + 1);
    v[0] = OUTSIDE ? ssm::mean_out_coef<T>(w, c[s], c[e + 1], c[Nv]) : ssm::mean_in_coef<T>(w, c[s], c[e + 1]);
  }
};

// ---------------------------------------------------------------------------------------------
// segment_score_map

template <typename scalar_t, typename T>
__global__ void score_map_kernel(const T* __restrict__ A, const T* __restrict__ M, const T* __restrict__ cnt,
                                 const T* __restrict__ ns, const bool* __restrict__ cm, int64_t B, int64_t Nv,
                                 scalar_t* __restrict__ out) {
  VGOPS_GRID_STRIDE(idx, B * Nv * Nv) {
    const int64_t e = idx % Nv, s = (idx / Nv) % Nv, b = idx / (Nv * Nv);
    const bool valid = s <= e && cm[b * Nv + s] && cm[b * Nv + e];
    T v = -std::numeric_limits<T>::infinity();
    if (valid) {
      const T* a = A + b * (Nv + 1);
      const T* m = M + b * (Nv + 1);
      const T* c = cnt + b * (Nv + 1);
      v = ssm::score<T>(a[s], a[e + 1], m[s], m[e + 1], m[Nv], c[s], c[e + 1], c[Nv], T(1) / ns[b]);
    }
    out[idx] = static_cast<scalar_t>(v);
  }
}

// Per sample: din[b, j], dout[b, j] = gradients with respect to the per-clip token sum and minimum.
template <typename T>
__global__ void score_suffix_kernel(const T* __restrict__ row, const T* __restrict__ col, const bool* __restrict__ cm,
                                    int64_t B, int64_t Nv, T* __restrict__ din, T* __restrict__ dout) {
  VGOPS_GRID_STRIDE(b, B) {
    const int64_t o = b * Nv, plane = B * Nv;
    suffix_to_clips<T>(row + o, col + o, cm + o, Nv, T(1), false, T(1), din + o, 1);
    // SC = ... - (M[Nv] - M[e + 1] + M[s]) / n_out: dM[k] = col[k - 1] - row[k], dM[Nv] -= total.
    suffix_to_clips<T>(row + plane + o, col + plane + o, cm + o, Nv, T(1), true, T(1), dout + o, 1);
  }
}

template <typename scalar_t, typename T>
__global__ void score_grad_kernel(const T* __restrict__ din, const T* __restrict__ dout,
                                  const int64_t* __restrict__ argmin, const bool* __restrict__ tm, int64_t B,
                                  int64_t Ns, int64_t Nv, scalar_t* __restrict__ gp) {
  VGOPS_GRID_STRIDE(idx, B * Ns * Nv) {
    const int64_t j = idx % Nv, i = (idx / Nv) % Ns, b = idx / (Ns * Nv);
    const T v = (tm[b * Ns + i] ? din[b * Nv + j] : T(0)) + (argmin[b * Nv + j] == i ? dout[b * Nv + j] : T(0));
    gp[idx] = static_cast<scalar_t>(v);
  }
}

at::Tensor segment_score_map_cuda(const at::Tensor& p_in, const at::Tensor& tm_in, const at::Tensor& cm_in) {
  check_segment_score_map_inputs("segment_score_map", p_in, nullptr, &tm_in, cm_in);
  c10::cuda::CUDAGuard guard(p_in.device());
  const int64_t B = p_in.size(0), Ns = p_in.size(1), Nv = p_in.size(2);
  at::Tensor out = at::empty({B, Nv, Nv}, p_in.options());
  if (out.numel() == 0) return out;
  at::Tensor p = p_in.contiguous(), tm = tm_in.contiguous(), cm = cm_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "segment_score_map_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = p.options().dtype(scalar_type_of<T>());
    at::Tensor colsum = at::empty({B, Nv}, topt), mn = at::empty({B, Nv}, topt);
    at::Tensor A = at::empty({B, Nv + 1}, topt), M = at::empty({B, Nv + 1}, topt);
    at::Tensor cnt = at::empty({B, Nv + 1}, topt), ns = at::empty({B}, topt);
    const bool* cmp = cm.const_data_ptr<bool>();
    const bool* tmp = tm.const_data_ptr<bool>();
    counts_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(cmp, tmp, B, Ns, Nv, cnt.mutable_data_ptr<T>(),
                                                             ns.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    token_reduce_kernel<scalar_t, T><<<blocks_for(B * Nv), kThreads, 0, stream>>>(
        p.const_data_ptr<scalar_t>(), tmp, B, Ns, Nv, colsum.mutable_data_ptr<T>(), mn.mutable_data_ptr<T>(), nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    masked_prefix_kernel<T, T><<<blocks_for(B), kThreads, 0, stream>>>(colsum.const_data_ptr<T>(), cmp, B, 1, Nv,
                                                                       A.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    masked_prefix_kernel<T, T><<<blocks_for(B), kThreads, 0, stream>>>(mn.const_data_ptr<T>(), cmp, B, 1, Nv,
                                                                       M.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    score_map_kernel<scalar_t, T><<<blocks_for(B * Nv * Nv), kThreads, 0, stream>>>(
        A.const_data_ptr<T>(), M.const_data_ptr<T>(), cnt.const_data_ptr<T>(), ns.const_data_ptr<T>(), cmp, B, Nv,
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor segment_score_map_backward_cuda(const at::Tensor& grad_in, const at::Tensor& p_in, const at::Tensor& tm_in,
                                           const at::Tensor& cm_in) {
  const char* op = "segment_score_map";
  check_segment_score_map_inputs(op, p_in, nullptr, &tm_in, cm_in);
  c10::cuda::CUDAGuard guard(p_in.device());
  const int64_t B = p_in.size(0), Ns = p_in.size(1), Nv = p_in.size(2);
  TORCH_CHECK_VALUE(grad_in.dim() == 3 && grad_in.size(0) == B && grad_in.size(1) == Nv && grad_in.size(2) == Nv,
                    op, ": grad must be [B, Nv, Nv], got ", grad_in.sizes());
  at::Tensor gp = at::zeros_like(p_in, at::MemoryFormat::Contiguous);
  if (gp.numel() == 0) return gp;
  at::Tensor p = p_in.contiguous(), tm = tm_in.contiguous(), cm = cm_in.contiguous();
  at::Tensor grad = grad_in.contiguous().to(p.scalar_type());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "segment_score_map_backward_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = p.options().dtype(scalar_type_of<T>());
    at::Tensor colsum = at::empty({B, Nv}, topt), mn = at::empty({B, Nv}, topt);
    at::Tensor am = at::empty({B, Nv}, p.options().dtype(at::kLong));
    at::Tensor cnt = at::empty({B, Nv + 1}, topt), ns = at::empty({B}, topt);
    at::Tensor row = at::empty({2, B, Nv}, topt), col = at::empty({2, B, Nv}, topt);
    at::Tensor din = at::empty({B, Nv}, topt), dout = at::empty({B, Nv}, topt);
    const bool* cmp = cm.const_data_ptr<bool>();
    const bool* tmp = tm.const_data_ptr<bool>();
    counts_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(cmp, tmp, B, Ns, Nv, cnt.mutable_data_ptr<T>(),
                                                             ns.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    token_reduce_kernel<scalar_t, T><<<blocks_for(B * Nv), kThreads, 0, stream>>>(
        p.const_data_ptr<scalar_t>(), tmp, B, Ns, Nv, colsum.mutable_data_ptr<T>(), mn.mutable_data_ptr<T>(),
        am.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    ScoreCoef<scalar_t, T> coef{grad.const_data_ptr<scalar_t>(), cnt.const_data_ptr<T>(), ns.const_data_ptr<T>(), Nv};
    row_col_kernel<2, T><<<blocks_for(B * Nv), kThreads, 0, stream>>>(coef, cmp, B, 1, Nv, row.mutable_data_ptr<T>(),
                                                                      col.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    score_suffix_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(row.const_data_ptr<T>(), col.const_data_ptr<T>(),
                                                                   cmp, B, Nv, din.mutable_data_ptr<T>(),
                                                                   dout.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    score_grad_kernel<scalar_t, T><<<blocks_for(B * Ns * Nv), kThreads, 0, stream>>>(
        din.const_data_ptr<T>(), dout.const_data_ptr<T>(), am.const_data_ptr<int64_t>(), tmp, B, Ns, Nv,
        gp.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gp;
}

// ---------------------------------------------------------------------------------------------
// segment_weighted_token_loss

template <int FN, typename scalar_t, typename T>
__global__ void token_dw_kernel(TokenValue<FN, scalar_t, T> f, const scalar_t* __restrict__ grad,
                                const T* __restrict__ ns, const bool* __restrict__ cm, int64_t B, int64_t Nv,
                                scalar_t* __restrict__ gw) {
  VGOPS_GRID_STRIDE(idx, B * Nv * Nv) {
    const int64_t e = idx % Nv, s = (idx / Nv) % Nv, b = idx / (Nv * Nv);
    T v = 0;
    if (s <= e && cm[b * Nv + s] && cm[b * Nv + e]) {
      T sum = 0;
      for (int64_t i = 0; i < f.Ns; ++i) {
        if (!f.tm[b * f.Ns + i]) continue;
        const T* c = f.C + (b * f.Ns + i) * (Nv + 1);
        sum += ssm::token_fn<FN, T>(c[e + 1] - c[s]);
      }
      v = static_cast<T>(grad[b]) / ns[b] * sum;
    }
    gw[idx] = static_cast<scalar_t>(v);
  }
}

template <typename scalar_t, typename T>
__global__ void token_suffix_kernel(const T* __restrict__ row, const T* __restrict__ col, const bool* __restrict__ cm,
                                    const scalar_t* __restrict__ grad, const T* __restrict__ ns, int64_t R,
                                    int64_t Ns, int64_t Nv, T* __restrict__ gclip) {
  VGOPS_GRID_STRIDE(r, R) {
    const int64_t b = r / Ns;
    const T scale = static_cast<T>(grad[b]) / ns[b];
    suffix_to_clips<T>(row + r * Nv, col + r * Nv, cm + b * Nv, Nv, T(1), false, scale, gclip + r * Nv, 1);
  }
}

template <typename scalar_t, typename T>
__global__ void cast_kernel(const T* __restrict__ x, int64_t n, scalar_t* __restrict__ out) {
  VGOPS_GRID_STRIDE(i, n) out[i] = static_cast<scalar_t>(x[i]);
}

at::Tensor segment_weighted_token_loss_cuda(const at::Tensor& p_in, const at::Tensor& w_in, const at::Tensor& tm_in,
                                            const at::Tensor& cm_in, c10::string_view fn) {
  const char* op = "segment_weighted_token_loss";
  check_segment_score_map_inputs(op, p_in, &w_in, &tm_in, cm_in);
  const int fn_id = check_token_fn(op, fn);
  c10::cuda::CUDAGuard guard(p_in.device());
  const int64_t B = p_in.size(0), Ns = p_in.size(1), Nv = p_in.size(2);
  at::Tensor out = at::zeros({B}, p_in.options());
  if (B == 0 || Nv == 0) return out;
  at::Tensor p = p_in.contiguous(), w = w_in.contiguous(), tm = tm_in.contiguous(), cm = cm_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "segment_weighted_token_loss_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = p.options().dtype(scalar_type_of<T>());
    at::Tensor C = at::empty({B, Ns, Nv + 1}, topt), cnt = at::empty({B, Nv + 1}, topt), ns = at::empty({B}, topt);
    at::Tensor rows = at::empty({B, Nv}, topt);
    const bool* cmp = cm.const_data_ptr<bool>();
    const bool* tmp = tm.const_data_ptr<bool>();
    counts_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(cmp, tmp, B, Ns, Nv, cnt.mutable_data_ptr<T>(),
                                                             ns.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (Ns > 0) {
      masked_prefix_kernel<scalar_t, T><<<blocks_for(B * Ns), kThreads, 0, stream>>>(
          p.const_data_ptr<scalar_t>(), cmp, B * Ns, Ns, Nv, C.mutable_data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    auto run = [&](auto fn_tag) {
      constexpr int FN = decltype(fn_tag)::value;
      TokenValue<FN, scalar_t, T> f{w.const_data_ptr<scalar_t>(), tmp, C.const_data_ptr<T>(), Ns, Nv};
      rows_kernel<T><<<row_blocks(B * Nv), kThreads, 0, stream>>>(f, cmp, B, Nv, rows.mutable_data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (fn_id == ssm::kSigmoid) run(std::integral_constant<int, ssm::kSigmoid>{});
    else run(std::integral_constant<int, ssm::kIdentity>{});
    finish_rows_kernel<scalar_t, T><<<blocks_for(B), kThreads, 0, stream>>>(
        rows.const_data_ptr<T>(), ns.const_data_ptr<T>(), B, Nv, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> segment_weighted_token_loss_backward_cuda(const at::Tensor& grad_in,
                                                                             const at::Tensor& p_in,
                                                                             const at::Tensor& w_in,
                                                                             const at::Tensor& tm_in,
                                                                             const at::Tensor& cm_in,
                                                                             c10::string_view fn) {
  const char* op = "segment_weighted_token_loss";
  check_segment_score_map_inputs(op, p_in, &w_in, &tm_in, cm_in);
  const int fn_id = check_token_fn(op, fn);
  c10::cuda::CUDAGuard guard(p_in.device());
  const int64_t B = p_in.size(0), Ns = p_in.size(1), Nv = p_in.size(2);
  TORCH_CHECK_VALUE(grad_in.dim() == 1 && grad_in.size(0) == B, op, ": grad must be [B], got ", grad_in.sizes());
  at::Tensor gp = at::zeros_like(p_in, at::MemoryFormat::Contiguous);
  at::Tensor gw = at::zeros_like(w_in, at::MemoryFormat::Contiguous);
  if (B == 0 || Nv == 0) return {gp, gw};
  at::Tensor p = p_in.contiguous(), w = w_in.contiguous(), tm = tm_in.contiguous(), cm = cm_in.contiguous();
  at::Tensor grad = grad_in.contiguous().to(p.scalar_type());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.scalar_type(), "segment_weighted_token_loss_backward_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = p.options().dtype(scalar_type_of<T>());
    at::Tensor C = at::empty({B, Ns, Nv + 1}, topt), cnt = at::empty({B, Nv + 1}, topt), ns = at::empty({B}, topt);
    at::Tensor row = at::empty({B, Ns, Nv}, topt), col = at::empty({B, Ns, Nv}, topt);
    at::Tensor gclip = at::empty({B, Ns, Nv}, topt);
    const bool* cmp = cm.const_data_ptr<bool>();
    const bool* tmp = tm.const_data_ptr<bool>();
    counts_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(cmp, tmp, B, Ns, Nv, cnt.mutable_data_ptr<T>(),
                                                             ns.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (Ns > 0) {
      masked_prefix_kernel<scalar_t, T><<<blocks_for(B * Ns), kThreads, 0, stream>>>(
          p.const_data_ptr<scalar_t>(), cmp, B * Ns, Ns, Nv, C.mutable_data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    auto run = [&](auto fn_tag) {
      constexpr int FN = decltype(fn_tag)::value;
      TokenValue<FN, scalar_t, T> f{w.const_data_ptr<scalar_t>(), tmp, C.const_data_ptr<T>(), Ns, Nv};
      token_dw_kernel<FN, scalar_t, T><<<blocks_for(B * Nv * Nv), kThreads, 0, stream>>>(
          f, grad.const_data_ptr<scalar_t>(), ns.const_data_ptr<T>(), cmp, B, Nv, gw.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (Ns > 0) {
        TokenCoef<FN, scalar_t, T> coef{w.const_data_ptr<scalar_t>(), tmp, C.const_data_ptr<T>(), Ns, Nv};
        row_col_kernel<1, T><<<blocks_for(B * Ns * Nv), kThreads, 0, stream>>>(
            coef, cmp, B * Ns, Ns, Nv, row.mutable_data_ptr<T>(), col.mutable_data_ptr<T>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    };
    if (fn_id == ssm::kSigmoid) run(std::integral_constant<int, ssm::kSigmoid>{});
    else run(std::integral_constant<int, ssm::kIdentity>{});
    if (Ns > 0) {
      token_suffix_kernel<scalar_t, T><<<blocks_for(B * Ns), kThreads, 0, stream>>>(
          row.const_data_ptr<T>(), col.const_data_ptr<T>(), cmp, grad.const_data_ptr<scalar_t>(),
          ns.const_data_ptr<T>(), B * Ns, Ns, Nv, gclip.mutable_data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      cast_kernel<scalar_t, T><<<blocks_for(B * Ns * Nv), kThreads, 0, stream>>>(
          gclip.const_data_ptr<T>(), B * Ns * Nv, gp.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {gp, gw};
}

// ---------------------------------------------------------------------------------------------
// segment_weighted_outside_mean / segment_weighted_inside_mean

template <bool OUTSIDE, typename scalar_t, typename T>
__global__ void mean_dw_kernel(MeanValue<OUTSIDE, scalar_t, T> f, const scalar_t* __restrict__ grad,
                               const bool* __restrict__ cm, int64_t B, int64_t Nv, scalar_t* __restrict__ gw) {
  VGOPS_GRID_STRIDE(idx, B * Nv * Nv) {
    const int64_t e = idx % Nv, s = (idx / Nv) % Nv, b = idx / (Nv * Nv);
    T v = 0;
    if (s <= e && cm[b * Nv + s] && cm[b * Nv + e]) v = static_cast<T>(grad[b]) * f.mean(b, s, e);
    gw[idx] = static_cast<scalar_t>(v);
  }
}

template <bool OUTSIDE, typename scalar_t, typename T>
__global__ void mean_suffix_kernel(const T* __restrict__ row, const T* __restrict__ col, const bool* __restrict__ cm,
                                   const scalar_t* __restrict__ grad, int64_t B, int64_t Nv, scalar_t* __restrict__ gx) {
  VGOPS_GRID_STRIDE(b, B) {
    // inside: X[e + 1] - X[s] -> dX[k] = col[k - 1] - row[k]; outside: X[Nv] - X[e + 1] + X[s]
    // -> dX[k] = -(col[k - 1] - row[k]) for k < Nv, dX[Nv] = total - col[Nv - 1].
    const bool* m = cm + b * Nv;
    const T* rw = row + b * Nv;
    const T* cl = col + b * Nv;
    const T g = static_cast<T>(grad[b]);
    double tot = 0;
    if (OUTSIDE)
      for (int64_t s = 0; s < Nv; ++s) tot += static_cast<double>(rw[s]);
    double run = 0;
    for (int64_t j = Nv - 1; j >= 0; --j) {
      const int64_t k = j + 1;
      const double d = static_cast<double>(cl[k - 1]) - (k < Nv ? static_cast<double>(rw[k]) : (OUTSIDE ? tot : 0.0));
      run += OUTSIDE ? -d : d;
      gx[b * Nv + j] = static_cast<scalar_t>(m[j] ? static_cast<T>(run) * g : T(0));
    }
  }
}

template <bool OUTSIDE>
at::Tensor weighted_mean_cuda(const at::Tensor& x_in, const at::Tensor& w_in, const at::Tensor& cm_in) {
  const char* op = OUTSIDE ? "segment_weighted_outside_mean" : "segment_weighted_inside_mean";
  check_segment_score_map_inputs(op, x_in, &w_in, nullptr, cm_in);
  c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t B = x_in.size(0), Nv = x_in.size(1);
  at::Tensor out = at::zeros({B}, x_in.options());
  if (B == 0 || Nv == 0) return out;
  at::Tensor x = x_in.contiguous(), w = w_in.contiguous(), cm = cm_in.contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segment_weighted_mean_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = x.options().dtype(scalar_type_of<T>());
    at::Tensor X = at::empty({B, Nv + 1}, topt), cnt = at::empty({B, Nv + 1}, topt), ns = at::empty({B}, topt);
    at::Tensor rows = at::empty({B, Nv}, topt);
    const bool* cmp = cm.const_data_ptr<bool>();
    counts_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(cmp, nullptr, B, 0, Nv, cnt.mutable_data_ptr<T>(),
                                                             ns.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    masked_prefix_kernel<scalar_t, T><<<blocks_for(B), kThreads, 0, stream>>>(x.const_data_ptr<scalar_t>(), cmp, B, 1,
                                                                              Nv, X.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    MeanValue<OUTSIDE, scalar_t, T> f{w.const_data_ptr<scalar_t>(), Prefix<T>{X.const_data_ptr<T>(), cnt.const_data_ptr<T>(), Nv}};
    rows_kernel<T><<<row_blocks(B * Nv), kThreads, 0, stream>>>(f, cmp, B, Nv, rows.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finish_rows_kernel<scalar_t, T><<<blocks_for(B), kThreads, 0, stream>>>(rows.const_data_ptr<T>(), nullptr, B, Nv,
                                                                            out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

template <bool OUTSIDE>
std::tuple<at::Tensor, at::Tensor> weighted_mean_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                               const at::Tensor& w_in, const at::Tensor& cm_in) {
  const char* op = OUTSIDE ? "segment_weighted_outside_mean" : "segment_weighted_inside_mean";
  check_segment_score_map_inputs(op, x_in, &w_in, nullptr, cm_in);
  c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t B = x_in.size(0), Nv = x_in.size(1);
  TORCH_CHECK_VALUE(grad_in.dim() == 1 && grad_in.size(0) == B, op, ": grad must be [B], got ", grad_in.sizes());
  at::Tensor gx = at::zeros_like(x_in, at::MemoryFormat::Contiguous);
  at::Tensor gw = at::zeros_like(w_in, at::MemoryFormat::Contiguous);
  if (B == 0 || Nv == 0) return {gx, gw};
  at::Tensor x = x_in.contiguous(), w = w_in.contiguous(), cm = cm_in.contiguous();
  at::Tensor grad = grad_in.contiguous().to(x.scalar_type());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segment_weighted_mean_backward_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto topt = x.options().dtype(scalar_type_of<T>());
    at::Tensor X = at::empty({B, Nv + 1}, topt), cnt = at::empty({B, Nv + 1}, topt), ns = at::empty({B}, topt);
    at::Tensor row = at::empty({B, Nv}, topt), col = at::empty({B, Nv}, topt);
    const bool* cmp = cm.const_data_ptr<bool>();
    counts_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(cmp, nullptr, B, 0, Nv, cnt.mutable_data_ptr<T>(),
                                                             ns.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    masked_prefix_kernel<scalar_t, T><<<blocks_for(B), kThreads, 0, stream>>>(x.const_data_ptr<scalar_t>(), cmp, B, 1,
                                                                              Nv, X.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    MeanValue<OUTSIDE, scalar_t, T> f{w.const_data_ptr<scalar_t>(), Prefix<T>{X.const_data_ptr<T>(), cnt.const_data_ptr<T>(), Nv}};
    mean_dw_kernel<OUTSIDE, scalar_t, T><<<blocks_for(B * Nv * Nv), kThreads, 0, stream>>>(
        f, grad.const_data_ptr<scalar_t>(), cmp, B, Nv, gw.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    MeanCoef<OUTSIDE, scalar_t, T> coef{w.const_data_ptr<scalar_t>(), cnt.const_data_ptr<T>(), Nv};
    row_col_kernel<1, T><<<blocks_for(B * Nv), kThreads, 0, stream>>>(coef, cmp, B, 1, Nv, row.mutable_data_ptr<T>(),
                                                                      col.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    mean_suffix_kernel<OUTSIDE, scalar_t, T><<<blocks_for(B), kThreads, 0, stream>>>(
        row.const_data_ptr<T>(), col.const_data_ptr<T>(), cmp, grad.const_data_ptr<scalar_t>(), B, Nv,
        gx.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {gx, gw};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("segment_score_map", &segment_score_map_cuda);
  m.impl("_segment_score_map_backward", &segment_score_map_backward_cuda);
  m.impl("segment_weighted_token_loss", &segment_weighted_token_loss_cuda);
  m.impl("_segment_weighted_token_loss_backward", &segment_weighted_token_loss_backward_cuda);
  m.impl("segment_weighted_outside_mean", &weighted_mean_cuda<true>);
  m.impl("_segment_weighted_outside_mean_backward", &weighted_mean_backward_cuda<true>);
  m.impl("segment_weighted_inside_mean", &weighted_mean_cuda<false>);
  m.impl("_segment_weighted_inside_mean_backward", &weighted_mean_backward_cuda<false>);
}

}  // namespace vgops
