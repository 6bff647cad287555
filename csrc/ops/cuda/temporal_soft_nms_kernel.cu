// CUDA kernels of temporal_soft_nms and temporal_soft_nms_padded; the math is in
// ../temporal_soft_nms.h (the same functions the CPU kernel calls).
//
// One thread block per problem (a row of the padded op, the whole input of temporal_soft_nms).
// The block keeps the current score of every segment of its row in a scratch array (NaN once a
// segment is selected or dropped; scores are finite, so NaN is free as a marker); thread t owns
// the positions t, t + blockDim, ... and is the only one to read or write them. Each step:
//   1. every thread decays its remaining segments by the selected one, drops those below
//      min_score and keeps its own best (highest score, ties by lower index);
//   2. a block reduction (warp shuffles, then one warp over the warps' results) gives the next
//      selection to every thread; thread 0 writes it to the outputs.
// Two __syncthreads per step, O(N / blockDim) work per thread per step, O(N * K) in all; rows run
// in parallel on the SMs. N per problem is limited to 2^31 - 1. Extra memory: the current
// scores (B * N in the compute type) and the converted inputs where the dtype differs.
// temporal_soft_nms_padded never synchronises with the host: a non-finite score of a valid
// segment cannot raise there and counts as masked out. temporal_soft_nms synchronises once to
// check the scores and once to read how many were selected.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>

#include "../checks.h"
#include "../temporal_soft_nms.h"

namespace vgops {
namespace {

constexpr int kMaxThreads = 1024;

int threads_for(int64_t n) {
  if (n <= 1024) return 128;
  if (n <= 4096) return 256;
  if (n <= 16384) return 512;
  return kMaxThreads;
}

// (score, index) of the better candidate; index -1: no candidate.
template <typename C>
__device__ inline void take_better(C& s, int& i, C s2, int i2) {
  if (i2 >= 0 && (i < 0 || soft_nms1d::selects_before<C>(s2, i2, s, i))) {
    s = s2;
    i = i2;
  }
}

template <typename C>
__device__ inline void warp_best(C& s, int& i) {
  for (int off = 16; off > 0; off >>= 1) {
    const C s2 = __shfl_down_sync(0xffffffffu, s, off);
    const int i2 = __shfl_down_sync(0xffffffffu, i, off);
    take_better(s, i, s2, i2);
  }
}

// The block's best (score, index); every thread returns with it. Shared arrays: 32 per warp slot
// and one result slot, written only between the two barriers.
template <typename C>
__device__ inline void block_best(C& s, int& i, C* warp_s, int* warp_i, C* res_s, int* res_i) {
  warp_best(s, i);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    warp_s[warp] = s;
    warp_i[warp] = i;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    s = lane < warps ? warp_s[lane] : C(0);
    i = lane < warps ? warp_i[lane] : -1;
    warp_best(s, i);
    if (lane == 0) {
      *res_s = s;
      *res_i = i;
    }
  }
  __syncthreads();
  s = *res_s;
  i = *res_i;
}

// One block per row b of seg [B, n, 2] / scores [B, n] (compute type C, contiguous); valid [B, n]
// or nullptr. Selects at most `limit` (<= k_out, <= n) and writes them to out_* [B, k_out], which
// the caller filled with -1 / 0 / false. cur [B, n] is scratch.
template <typename C, int kMethod>
__global__ void __launch_bounds__(kMaxThreads)
    soft_nms_kernel(const C* __restrict__ seg, const C* __restrict__ scores, const bool* __restrict__ valid,
                    int64_t n, int64_t k_out, int64_t limit, C thr, C sigma, C min_score, C* __restrict__ cur,
                    int64_t* __restrict__ out_index, C* __restrict__ out_score, bool* __restrict__ out_ok) {
  __shared__ C warp_s[32];
  __shared__ int warp_i[32];
  __shared__ C res_s;
  __shared__ int res_i;
  const int64_t row = blockIdx.x;
  const C* rs = seg + row * n * 2;
  const C* rc = scores + row * n;
  const bool* rv = valid ? valid + row * n : nullptr;
  C* cu = cur + row * n;
  const C gone = C(NAN);  // not a candidate (any more)

  C best_s = C(0);
  int best_i = -1;
  // Positions as int64 in the loops (j + blockDim must not overflow), int in the reductions.
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const C v = rc[j];
    const bool live = (!rv || rv[j]) && isfinite(v) && soft_nms1d::survives<C>(v, min_score);
    cu[j] = live ? v : gone;
    if (live) take_better(best_s, best_i, v, static_cast<int>(j));
  }
  block_best(best_s, best_i, warp_s, warp_i, &res_s, &res_i);

  int64_t k = 0;  // uniform over the block, as are best_s / best_i
  while (best_i >= 0 && k < limit) {
    if (threadIdx.x == 0) {
      out_index[row * k_out + k] = best_i;
      out_score[row * k_out + k] = best_s;
      out_ok[row * k_out + k] = true;
    }
    if (++k == limit) break;
    const int selected = best_i;
    const C ss = rs[2 * selected], se = rs[2 * selected + 1];
    C next_s = C(0);
    int next_i = -1;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const C c = cu[j];
      if (j == selected) {
        cu[j] = gone;
        continue;
      }
      if (c != c) continue;
      const C v = soft_nms1d::decayed<C>(kMethod, ss, se, rs[2 * j], rs[2 * j + 1], c, thr, sigma);
      if (!soft_nms1d::survives<C>(v, min_score)) {
        cu[j] = gone;
        continue;
      }
      cu[j] = v;
      take_better(next_s, next_i, v, static_cast<int>(j));
    }
    best_s = next_s;
    best_i = next_i;
    block_best(best_s, best_i, warp_s, warp_i, &res_s, &res_i);
  }
}

// seg, sc: [B, n, 2], [B, n] in the compute type, contiguous. valid: [B, n] contiguous or nullptr.
void launch_soft_nms(int method, const at::Tensor& seg, const at::Tensor& sc, const bool* valid, int64_t b_rows,
                     int64_t n, int64_t k_out, int64_t limit, double thr, double sigma, double min_score,
                     at::Tensor& out_index, at::Tensor& out_score, at::Tensor& out_ok, const char* op) {
  TORCH_CHECK_VALUE(n <= std::numeric_limits<int32_t>::max(), op, ": at most 2^31 - 1 segments per problem, got ",
                    n);
  TORCH_CHECK_VALUE(b_rows <= std::numeric_limits<int32_t>::max(), op, ": at most 2^31 - 1 rows, got ", b_rows);
  at::Tensor cur = at::empty({b_rows, n}, sc.options());
  const int threads = threads_for(n);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(sc.scalar_type(), "temporal_soft_nms_cuda", [&] {
    using C = scalar_t;
    const C* sp = seg.const_data_ptr<C>();
    const C* cp = sc.const_data_ptr<C>();
    C* up = cur.mutable_data_ptr<C>();
    int64_t* oi = out_index.mutable_data_ptr<int64_t>();
    C* os = out_score.mutable_data_ptr<C>();
    bool* ok = out_ok.mutable_data_ptr<bool>();
    const C t = static_cast<C>(thr), sg = static_cast<C>(sigma), ms = static_cast<C>(min_score);
    const unsigned grid = static_cast<unsigned>(b_rows);
    switch (method) {
      case soft_nms1d::kGaussian:
        soft_nms_kernel<C, soft_nms1d::kGaussian>
            <<<grid, threads, 0, stream>>>(sp, cp, valid, n, k_out, limit, t, sg, ms, up, oi, os, ok);
        break;
      case soft_nms1d::kLinear:
        soft_nms_kernel<C, soft_nms1d::kLinear>
            <<<grid, threads, 0, stream>>>(sp, cp, valid, n, k_out, limit, t, sg, ms, up, oi, os, ok);
        break;
      default:
        soft_nms_kernel<C, soft_nms1d::kHard>
            <<<grid, threads, 0, stream>>>(sp, cp, valid, n, k_out, limit, t, sg, ms, up, oi, os, ok);
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> temporal_soft_nms_cuda(const at::Tensor& segments, const at::Tensor& scores,
                                                          c10::string_view method, double iou_threshold,
                                                          double sigma, double min_score, int64_t max_keep) {
  const char* op = "temporal_soft_nms";
  c10::cuda::CUDAGuard guard(segments.device());
  check_soft_nms_inputs(segments, scores, max_keep, op);
  const int code = check_soft_nms_args(method, iou_threshold, sigma, min_score, op);
  const int64_t n = segments.size(0);
  const int64_t limit = max_keep < 0 ? n : std::min(max_keep, n);
  if (n == 0) return {at::empty({0}, segments.options().dtype(at::kLong)), at::empty({0}, scores.options())};
  const at::ScalarType ct = soft_nms_compute_type(segments, scores);
  at::Tensor seg = segments.to(ct).contiguous();
  at::Tensor sc = scores.to(ct).contiguous();
  TORCH_CHECK_VALUE(at::isfinite(sc).all().item<bool>(), op, ": scores must be finite");
  if (limit == 0) return {at::empty({0}, segments.options().dtype(at::kLong)), at::empty({0}, scores.options())};
  at::Tensor out_index = at::full({1, limit}, -1, segments.options().dtype(at::kLong));
  at::Tensor out_score = at::zeros({1, limit}, sc.options());
  at::Tensor out_ok = at::zeros({1, limit}, segments.options().dtype(at::kBool));
  launch_soft_nms(code, seg, sc, nullptr, 1, n, limit, limit, iou_threshold, sigma, min_score, out_index, out_score,
                  out_ok, op);
  const int64_t k = out_ok.sum().item<int64_t>();  // the selections are the first k entries
  return {out_index[0].narrow(0, 0, k), out_score[0].narrow(0, 0, k).to(scores.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> temporal_soft_nms_padded_cuda(
    const at::Tensor& segments, const at::Tensor& scores, c10::string_view method, double iou_threshold, double sigma,
    double min_score, int64_t max_keep, const std::optional<at::Tensor>& valid_mask) {
  const char* op = "temporal_soft_nms_padded";
  c10::cuda::CUDAGuard guard(segments.device());
  const int64_t k_out = check_padded_nms_inputs(segments, scores, valid_mask, max_keep, op);
  const int code = check_soft_nms_args(method, iou_threshold, sigma, min_score, op);
  const int64_t b_rows = segments.size(0), n = segments.size(1);
  const at::ScalarType ct = soft_nms_compute_type(segments, scores);
  at::Tensor out_index = at::full({b_rows, k_out}, -1, segments.options().dtype(at::kLong));
  at::Tensor out_score = at::zeros({b_rows, k_out}, segments.options().dtype(ct));
  at::Tensor out_ok = at::zeros({b_rows, k_out}, segments.options().dtype(at::kBool));
  if (b_rows > 0 && n > 0 && k_out > 0) {
    at::Tensor seg = segments.to(ct).contiguous();
    at::Tensor sc = scores.to(ct).contiguous();
    at::Tensor mask = valid_mask.has_value() ? valid_mask->contiguous() : at::Tensor();
    launch_soft_nms(code, seg, sc, mask.defined() ? mask.const_data_ptr<bool>() : nullptr, b_rows, n, k_out,
                    std::min(k_out, n), iou_threshold, sigma, min_score, out_index, out_score, out_ok, op);
  }
  return {out_index, out_score.to(scores.scalar_type()), out_ok};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("temporal_soft_nms", &temporal_soft_nms_cuda);
  m.impl("temporal_soft_nms_padded", &temporal_soft_nms_padded_cuda);
}

}  // namespace vgops
