// CPU kernels of roi_align_1d and its backward; the math is in ../roi_align_1d.h (shared with the
// CUDA kernels) and roi_align_table.h.
//
// Per segment the weight table is built once and reused for every channel. The forward splits the
// work over (segment, channel chunk); the backward over (batch element, channel chunk), each task
// owning its rows of the gradient and adding its segments in index order (a stable counting sort by
// batch index), so the result does not depend on the number of threads (deterministic).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../checks.h"
#include "../roi_align_1d.h"
#include "roi_align_table.h"

namespace vgops {
namespace {

using roi::AxisTable;

int64_t channel_chunk(int64_t tasks_without_split, int64_t C) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t want_chunks = std::max<int64_t>(1, (4 * threads + tasks_without_split - 1) / std::max<int64_t>(tasks_without_split, 1));
  return std::max<int64_t>(1, std::min<int64_t>(C, std::max<int64_t>(32, (C + want_chunks - 1) / want_chunks)));
}

// Tasks per thread at least: small inputs run on one thread (see roi_align_clips_kernel.cpp).
int64_t grain_for(int64_t work_per_task) {
  constexpr int64_t kMinWork = 1 << 15;
  return std::max<int64_t>(1, kMinWork / std::max<int64_t>(work_per_task, 1));
}

// Prefetch x[0, n): the forward reads a short span of each of C rows T apart (memory latency).
template <typename scalar_t>
inline void prefetch_span(const scalar_t* x, int64_t n) {
#if defined(__GNUC__) || defined(__clang__)
  constexpr int64_t kLine = 64 / sizeof(scalar_t);
  for (int64_t j = 0; j < n; j += kLine) __builtin_prefetch(x + j, 0, 3);
  __builtin_prefetch(x + n - 1, 0, 3);
#endif
}

// Batch element of every segment, checked: an index that is not an integer in [0, B) is an error
// (the kernel never reads outside features).
template <typename T>
std::vector<int64_t> batch_indices(const T* seg, int64_t K, int64_t B, const char* op) {
  std::vector<int64_t> b(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    const T v = seg[3 * k];
    const int64_t i = roi::segment_batch(v, B);
    TORCH_CHECK_VALUE(i >= 0 && static_cast<T>(i) == v, op, ": segments[:, 0] must hold batch indices, integers in [0, ",
                      B, "), got ", v, " at row ", k);
    b[k] = i;
  }
  return b;
}

at::Tensor roi_align_1d_cpu(const at::Tensor& features_in, const at::Tensor& segments_in, int64_t output_len,
                            double temporal_scale, int64_t sampling_ratio, bool aligned) {
  check_roi_align_1d_inputs(features_in, segments_in, output_len);
  const int64_t B = features_in.size(0), C = features_in.size(1), Tn = features_in.size(2), K = segments_in.size(0);
  at::Tensor out = at::empty({K, C, output_len}, features_in.options().memory_format(at::MemoryFormat::Contiguous));
  const at::Tensor segments = segments_in.to(at::toOpMathType(features_in.scalar_type())).contiguous();
  if (K == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features_in.scalar_type(), "roi_align_1d_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const T* seg = segments.const_data_ptr<T>();
    const std::vector<int64_t> bidx = batch_indices(seg, K, B, "roi_align_1d");
    if (out.numel() == 0) return;
    const at::Tensor features = features_in.contiguous();
    const scalar_t* feat = features.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    const T scale = static_cast<T>(temporal_scale);
    const int64_t L = output_len;
    const int64_t cch = channel_chunk(K, C), chunks = (C + cch - 1) / cch;
    at::parallel_for(0, K * chunks, grain_for(cch * L * 8), [&](int64_t begin, int64_t end) {
      AxisTable<T> tab;
      roi::Axis<T> axis{};
      int64_t cached = -1;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t k = task / chunks, c0 = (task % chunks) * cch, c1 = std::min(C, c0 + cch);
        if (k != cached) {
          axis = roi::make_axis<T>(seg[3 * k + 1], seg[3 * k + 2], scale, aligned, L, sampling_ratio);
          tab.build(axis, L, Tn);
          cached = k;
        }
        const T inv_count = T(1) / roi::axis_count(axis);
        constexpr int64_t kAhead = 4;  // rows prefetched ahead: each channel's row is T apart
        for (int64_t c = c0; c < std::min(c1, c0 + kAhead) && tab.span > 0; ++c)
          prefetch_span(feat + (bidx[k] * C + c) * Tn + tab.u0, tab.span);
        for (int64_t c = c0; c < c1; ++c) {
          const scalar_t* row = feat + (bidx[k] * C + c) * Tn;
          if (c + kAhead < c1 && tab.span > 0) prefetch_span(row + kAhead * Tn + tab.u0, tab.span);
          scalar_t* o = po + (k * C + c) * L;
          for (int64_t p = 0; p < L; ++p) {
            const T* w = tab.row(p) - tab.u0;
            T acc = T(0);
            for (int64_t t = tab.lo[p]; t < tab.hi[p]; ++t) acc += w[t] * static_cast<T>(row[t]);
            o[p] = static_cast<scalar_t>(acc * inv_count);
          }
        }
      }
    });
  });
  return out;
}

at::Tensor roi_align_1d_backward_cpu(const at::Tensor& grad_in, const at::Tensor& segments_in, int64_t batch_size,
                                     int64_t length, double temporal_scale, int64_t sampling_ratio, bool aligned) {
  check_roi_align_1d_backward_inputs(grad_in, segments_in, batch_size, length);
  const int64_t K = grad_in.size(0), C = grad_in.size(1), L = grad_in.size(2), B = batch_size, Tn = length;
  at::Tensor gin = at::empty({B, C, Tn}, grad_in.options().memory_format(at::MemoryFormat::Contiguous));
  if (gin.numel() == 0) return gin;
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor segments = segments_in.to(at::toOpMathType(grad.scalar_type())).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_1d_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const T* seg = segments.const_data_ptr<T>();
    const std::vector<int64_t> bidx = batch_indices(seg, K, B, "_roi_align_1d_backward");
    // Segments grouped by batch element, in index order (stable counting sort).
    std::vector<int64_t> start(static_cast<size_t>(B + 1), 0), order(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) ++start[bidx[k] + 1];
    for (int64_t b = 0; b < B; ++b) start[b + 1] += start[b];
    {
      std::vector<int64_t> fill(start.begin(), start.end() - 1);
      for (int64_t k = 0; k < K; ++k) order[fill[bidx[k]]++] = k;
    }
    const scalar_t* pg = grad.const_data_ptr<scalar_t>();
    scalar_t* pgin = gin.mutable_data_ptr<scalar_t>();
    const T scale = static_cast<T>(temporal_scale);
    // Channel chunks small enough for the chunk's rows to stay in cache.
    const int64_t cch = std::min(channel_chunk(B, C), std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(Tn, 1)));
    const int64_t chunks = (C + cch - 1) / cch;
    const int64_t segments_per_batch = (K + std::max<int64_t>(B, 1) - 1) / std::max<int64_t>(B, 1);
    at::parallel_for(0, B * chunks, grain_for(cch * (Tn + segments_per_batch * L * 8)), [&](int64_t begin, int64_t end) {
      std::vector<AxisTable<T>> tabs;
      std::vector<T> inv_counts, buffer(static_cast<size_t>(cch * Tn));
      int64_t built = -1;  // batch element whose tables are built
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / chunks, c0 = (task % chunks) * cch, c1 = std::min(C, c0 + cch);
        const int64_t first = start[b], n = start[b + 1] - start[b];
        if (built != b) {
          if (static_cast<int64_t>(tabs.size()) < n) tabs.resize(static_cast<size_t>(n));
          inv_counts.resize(static_cast<size_t>(n));
          for (int64_t j = 0; j < n; ++j) {
            const int64_t k = order[first + j];
            const roi::Axis<T> axis = roi::make_axis<T>(seg[3 * k + 1], seg[3 * k + 2], scale, aligned, L, sampling_ratio);
            tabs[j].build(axis, L, Tn);
            inv_counts[j] = T(1) / roi::axis_count(axis);
          }
          built = b;
        }
        // The segments of b added, in index order, into a buffer in T for the chunk's channels
        // (segment-major: each segment's gradient rows are read contiguously), then stored once
        // (no zero-fill pass over the gradient, no read-modify-write of it).
        T* buf = buffer.data();
        std::fill(buf, buf + (c1 - c0) * Tn, T(0));
        for (int64_t j = 0; j < n; ++j) {
          const AxisTable<T>& tab = tabs[j];
          if (tab.span == 0) continue;
          for (int64_t c = c0; c < c1; ++c) {
            const scalar_t* g = pg + (order[first + j] * C + c) * L;
            T* d = buf + (c - c0) * Tn;
            for (int64_t p = 0; p < L; ++p) {
              const T gv = static_cast<T>(g[p]) * inv_counts[j];
              const T* w = tab.row(p) - tab.u0;
              for (int64_t t = tab.lo[p]; t < tab.hi[p]; ++t) d[t] += gv * w[t];
            }
          }
        }
        scalar_t* out = pgin + (b * C + c0) * Tn;
        for (int64_t i = 0, m = (c1 - c0) * Tn; i < m; ++i) out[i] = static_cast<scalar_t>(buf[i]);
      }
    });
  });
  return gin;
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("roi_align_1d", &roi_align_1d_cpu);
  m.impl("_roi_align_1d_backward", &roi_align_1d_backward_cpu);
}

}  // namespace vgops
