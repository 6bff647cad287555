// CPU kernels of temporal_soft_nms and temporal_soft_nms_padded; the math is in
// ../temporal_soft_nms.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../temporal_soft_nms.h"
#include "parallel_rows.h"

namespace vgops {
namespace {

// IoU of every remaining segment with the selected one: branch-free so the compiler vectorises
// it, cloned for AVX2/AVX-512 where the CPU has them (as suppress_row in temporal_nms_kernel.cpp).
#if defined(__x86_64__) && defined(__GNUC__)
#define VGOPS_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VGOPS_CPU_CLONES
#endif

template <typename C>
inline void iou_row_impl(const C* s, const C* e, int64_t m, C bs, C be, C* iou) {
  for (int64_t j = 0; j < m; ++j) iou[j] = iou1d::segment_iou<C>(bs, be, s[j], e[j]);
}
VGOPS_CPU_CLONES void iou_row(const float* s, const float* e, int64_t m, float bs, float be, float* iou) {
  iou_row_impl<float>(s, e, m, bs, be, iou);
}
VGOPS_CPU_CLONES void iou_row(const double* s, const double* e, int64_t m, double bs, double be, double* iou) {
  iou_row_impl<double>(s, e, m, bs, be, iou);
}

// The remaining segments of one problem, compacted in index order (so of equal scores the first
// has the lower index), and an IoU buffer. A thread reuses one across rows.
template <typename C>
struct Remaining {
  std::vector<C> s, e, score, iou;
  std::vector<int64_t> index;
};

// Soft-NMS of one problem: n segments seg [n, 2] with scores sc [n] (compute type C); valid[j]
// false excludes j (nullptr: all valid). Writes the selected indices and their scores at selection
// (in selection order) and returns how many, at most `limit`.
template <typename C, int kMethod>
int64_t soft_nms_problem(const C* seg, const C* sc, const bool* valid, int64_t n, C thr, C sigma, C min_score,
                         int64_t limit, int64_t* out_index, C* out_score, Remaining<C>& r) {
  r.s.resize(n);
  r.e.resize(n);
  r.score.resize(n);
  r.iou.resize(n);
  r.index.resize(n);
  int64_t m = 0, best = -1;
  for (int64_t j = 0; j < n; ++j) {
    if ((valid && !valid[j]) || !soft_nms1d::survives<C>(sc[j], min_score)) continue;
    r.s[m] = seg[2 * j];
    r.e[m] = seg[2 * j + 1];
    r.score[m] = sc[j];
    r.index[m] = j;
    if (best < 0 || soft_nms1d::selects_before<C>(sc[j], j, r.score[best], r.index[best])) best = m;
    ++m;
  }
  int64_t k = 0;
  while (best >= 0 && k < limit) {
    out_index[k] = r.index[best];
    out_score[k] = r.score[best];
    if (++k == limit) break;
    // Decay the others by the selected one (soft_nms1d::decayed, in two passes: the IoUs
    // vectorised, then the weights), drop those below min_score (compacting in place) and find
    // the next selection.
    iou_row(r.s.data(), r.e.data(), m, r.s[best], r.e[best], r.iou.data());
    const int64_t selected = best;
    int64_t w = 0;
    best = -1;
    for (int64_t j = 0; j < m; ++j) {
      if (j == selected) continue;
      const C v = r.score[j] * soft_nms1d::weight<C>(kMethod, r.iou[j], thr, sigma);
      if (!soft_nms1d::survives<C>(v, min_score)) continue;
      r.s[w] = r.s[j];
      r.e[w] = r.e[j];
      r.score[w] = v;
      r.index[w] = r.index[j];
      if (best < 0 || soft_nms1d::selects_before<C>(v, r.index[w], r.score[best], r.index[best])) best = w;
      ++w;
    }
    m = w;
  }
  return k;
}

template <typename C>
int64_t soft_nms_dispatch(int method, const C* seg, const C* sc, const bool* valid, int64_t n, C thr, C sigma,
                          C min_score, int64_t limit, int64_t* out_index, C* out_score, Remaining<C>& r) {
  switch (method) {
    case soft_nms1d::kGaussian:
      return soft_nms_problem<C, soft_nms1d::kGaussian>(seg, sc, valid, n, thr, sigma, min_score, limit, out_index,
                                                        out_score, r);
    case soft_nms1d::kLinear:
      return soft_nms_problem<C, soft_nms1d::kLinear>(seg, sc, valid, n, thr, sigma, min_score, limit, out_index,
                                                      out_score, r);
    default:
      return soft_nms_problem<C, soft_nms1d::kHard>(seg, sc, valid, n, thr, sigma, min_score, limit, out_index,
                                                    out_score, r);
  }
}

// Soft-NMS needs finite scores (inf * 0 would be NaN); checked among the valid segments only.
// row_len: N of a padded [B, N] batch (errors name [b, j]), 0 for one problem.
void check_finite_scores(const at::Tensor& sc, const bool* valid, int64_t row_len, const char* op) {
  AT_DISPATCH_FLOATING_TYPES(sc.scalar_type(), "soft_nms_check_scores", [&] {
    const scalar_t* p = sc.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < sc.numel(); ++i) {
      if ((valid && !valid[i]) || std::isfinite(p[i])) continue;
      TORCH_CHECK_VALUE(row_len == 0, op, ": scores must be finite among the valid segments, found ", p[i], " at [",
                        i / std::max<int64_t>(row_len, 1), ", ", i % std::max<int64_t>(row_len, 1), "]");
      TORCH_CHECK_VALUE(false, op, ": scores must be finite, found ", p[i], " at index ", i);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> temporal_soft_nms_cpu(const at::Tensor& segments, const at::Tensor& scores,
                                                         c10::string_view method, double iou_threshold, double sigma,
                                                         double min_score, int64_t max_keep) {
  const char* op = "temporal_soft_nms";
  check_soft_nms_inputs(segments, scores, max_keep, op);
  const int code = check_soft_nms_args(method, iou_threshold, sigma, min_score, op);
  const int64_t n = segments.size(0);
  const int64_t limit = max_keep < 0 ? n : std::min(max_keep, n);
  const at::ScalarType ct = soft_nms_compute_type(segments, scores);
  at::Tensor seg = segments.to(ct).contiguous();
  at::Tensor sc = scores.to(ct).contiguous();
  check_finite_scores(sc, nullptr, 0, op);
  at::Tensor out_index = at::empty({limit}, segments.options().dtype(at::kLong));
  at::Tensor out_score = at::empty({limit}, segments.options().dtype(ct));
  int64_t k = 0;
  AT_DISPATCH_FLOATING_TYPES(ct, "temporal_soft_nms_cpu", [&] {
    using C = scalar_t;
    Remaining<C> r;
    k = soft_nms_dispatch<C>(code, seg.const_data_ptr<C>(), sc.const_data_ptr<C>(), nullptr, n,
                             static_cast<C>(iou_threshold), static_cast<C>(sigma), static_cast<C>(min_score), limit,
                             out_index.mutable_data_ptr<int64_t>(), out_score.mutable_data_ptr<C>(), r);
  });
  return {out_index.narrow(0, 0, k), out_score.narrow(0, 0, k).to(scores.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> temporal_soft_nms_padded_cpu(
    const at::Tensor& segments, const at::Tensor& scores, c10::string_view method, double iou_threshold, double sigma,
    double min_score, int64_t max_keep, const std::optional<at::Tensor>& valid_mask) {
  const char* op = "temporal_soft_nms_padded";
  const int64_t k_out = check_padded_nms_inputs(segments, scores, valid_mask, max_keep, op);
  const int code = check_soft_nms_args(method, iou_threshold, sigma, min_score, op);
  const int64_t b_rows = segments.size(0), n = segments.size(1);
  const at::ScalarType ct = soft_nms_compute_type(segments, scores);
  at::Tensor out_index = at::full({b_rows, k_out}, -1, segments.options().dtype(at::kLong));
  at::Tensor out_score = at::zeros({b_rows, k_out}, segments.options().dtype(ct));
  at::Tensor out_ok = at::zeros({b_rows, k_out}, segments.options().dtype(at::kBool));
  if (b_rows == 0 || n == 0 || k_out == 0) return {out_index, out_score.to(scores.scalar_type()), out_ok};
  at::Tensor seg = segments.to(ct).contiguous();
  at::Tensor sc = scores.to(ct).contiguous();
  at::Tensor mask = valid_mask.has_value() ? valid_mask->contiguous() : at::Tensor();
  const bool* valid = mask.defined() ? mask.const_data_ptr<bool>() : nullptr;
  check_finite_scores(sc, valid, n, op);
  const int64_t limit = std::min(k_out, n);
  int64_t* oi = out_index.mutable_data_ptr<int64_t>();
  bool* ok = out_ok.mutable_data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(ct, "temporal_soft_nms_padded_cpu", [&] {
    using C = scalar_t;
    const C* sp = seg.const_data_ptr<C>();
    const C* cp = sc.const_data_ptr<C>();
    C* os = out_score.mutable_data_ptr<C>();
    // Rows are independent problems.
    parallel_rows<Remaining<C>>(b_rows, b_rows * n, [&](int64_t b, Remaining<C>& r) {
      const int64_t k = soft_nms_dispatch<C>(code, sp + b * n * 2, cp + b * n, valid ? valid + b * n : nullptr, n,
                                             static_cast<C>(iou_threshold), static_cast<C>(sigma),
                                             static_cast<C>(min_score), limit, oi + b * k_out, os + b * k_out, r);
      std::fill(ok + b * k_out, ok + b * k_out + k, true);
    });
  });
  return {out_index, out_score.to(scores.scalar_type()), out_ok};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("temporal_soft_nms", &temporal_soft_nms_cpu);
  m.impl("temporal_soft_nms_padded", &temporal_soft_nms_padded_cpu);
}

}  // namespace vgops
