// CPU kernels of temporal_nms and batched_temporal_nms; the math is in ../temporal_nms.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <optional>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../temporal_nms.h"
#include "parallel_rows.h"

namespace vgops {
namespace {

// One row of greedy NMS: marks every later segment that segment i suppresses. Branch-free so the
// compiler vectorises it; cloned for AVX2/AVX-512 where the CPU has them (the wheel still runs on
// any x86-64). Suppressing an already removed segment again changes nothing.
#if defined(__x86_64__) && defined(__GNUC__)
#define VGOPS_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VGOPS_CPU_CLONES
#endif

template <typename T>
inline void suppress_row_impl(const T* s, const T* e, int64_t i, int64_t n, T thr, uint8_t* removed) {
  const T si = s[i], ei = e[i];
  for (int64_t j = i + 1; j < n; ++j)
    removed[j] |= static_cast<uint8_t>(nms1d::suppresses<T>(si, ei, s[j], e[j], thr));
}
VGOPS_CPU_CLONES void suppress_row(const float* s, const float* e, int64_t i, int64_t n, float thr, uint8_t* removed) {
  suppress_row_impl<float>(s, e, i, n, thr, removed);
}
VGOPS_CPU_CLONES void suppress_row(const double* s, const double* e, int64_t i, int64_t n, double thr, uint8_t* removed) {
  suppress_row_impl<double>(s, e, i, n, thr, removed);
}

// Greedy NMS over n segments already in rank order; sets keep[k] = 1 for kept positions. Stops
// once `limit` segments are kept (greedy NMS is sequential, so those are the first `limit` of the
// full result).
template <typename T>
void nms_ranked(const T* s, const T* e, int64_t n, T thr, uint8_t* keep, int64_t limit) {
  std::vector<uint8_t> removed(n, 0);
  int64_t kept = 0;
  for (int64_t i = 0; i < n && kept < limit; ++i) {
    if (removed[i]) continue;
    keep[i] = 1;
    if (++kept == limit) break;
    suppress_row(s, e, i, n, thr, removed.data());
  }
}

void check_nms_inputs(const at::Tensor& segments, const at::Tensor& scores, const char* op) {
  check_segments(segments, op, "segments", 2);
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == segments.size(0), op,
                    ": scores must be a 1-d tensor [N] matching segments [N, 2], got ",
                    scores.sizes(), " for segments ", segments.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(scores.scalar_type()), op, ": scores must be floating point, got ",
                    scores.scalar_type());
  TORCH_CHECK_VALUE(scores.device() == segments.device(), op,
                    ": segments and scores must be on the same device, got ", segments.device(), " and ",
                    scores.device());
}

// Whether sort_by_rank may use float keys for these scores and indices below `n`.
bool use_float_keys(const at::Tensor& scores, int64_t n) {
  return scores.scalar_type() != at::kDouble && n <= (int64_t(1) << 32);
}

// The values of t as double (exact for every floating dtype). A plain loop rather than
// t.to(kDouble): an ATen op on a large tensor runs a parallel region, which costs more than it
// saves here on a busy machine.
std::vector<double> as_double_vector(const at::Tensor& t_in) {
  at::Tensor t = t_in.contiguous();
  std::vector<double> out(t.numel());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "as_double_vector", [&] {
    const scalar_t* p = t.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < t.numel(); ++i) out[i] = static_cast<double>(p[i]);
  });
  return out;
}

// Scores as double. NaN scores have no rank and are rejected.
std::vector<double> scores_as_double(const at::Tensor& scores, const char* op) {
  std::vector<double> sc = as_double_vector(scores);
  for (size_t i = 0; i < sc.size(); ++i)
    TORCH_CHECK_VALUE(!std::isnan(sc[i]), op, ": scores must not contain NaN, found one at index ", i);
  return sc;
}

// A 32-bit key whose ascending order is decreasing score, for a score exactly representable as
// float: the float's bits mapped to an unsigned order, negated. -0.0 is +0.0 first: the two
// compare equal, so their ties go by index too.
inline uint32_t float_rank_key(double score) {
  const float f = score == 0.0 ? 0.0f : static_cast<float>(score);
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // increasing with the score
  return ~u;
}

// Stable LSD radix sort of idx[0..n) by 32-bit keys (4 passes of 8 bits; a pass whose digit is
// the same for every key is skipped). Equal keys keep their input order.
void radix_sort_by_key(uint32_t* key, int64_t* idx, int64_t n, std::vector<uint32_t>& key_tmp,
                       std::vector<int64_t>& idx_tmp) {
  key_tmp.resize(n);
  idx_tmp.resize(n);
  uint32_t* k_in = key;
  int64_t* i_in = idx;
  uint32_t* k_out = key_tmp.data();
  int64_t* i_out = idx_tmp.data();
  for (int shift = 0; shift < 32; shift += 8) {
    int64_t count[257] = {0};
    for (int64_t j = 0; j < n; ++j) ++count[((k_in[j] >> shift) & 0xffu) + 1];
    if (count[((k_in[0] >> shift) & 0xffu) + 1] == n) continue;  // one digit value: nothing moves
    for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
    for (int64_t j = 0; j < n; ++j) {
      const int64_t to = count[(k_in[j] >> shift) & 0xffu]++;
      k_out[to] = k_in[j];
      i_out[to] = i_in[j];
    }
    std::swap(k_in, k_out);
    std::swap(i_in, i_out);
  }
  if (i_in != idx) std::copy(i_in, i_in + n, idx);
}

// Sorts indices into rank order: decreasing score, ties by lower index.
//   float_keys (scores that came as float, half or bfloat16; indices < 2^32): integer keys. When
//   the indices come in increasing order (index_ordered), a stable radix sort on the score keys
//   alone (O(n), several times faster than std::sort from a few dozen segments up); otherwise
//   std::sort of (score key, index) packed in 64 bits.
//   Otherwise: std::sort of (score, index) pairs, several times faster than an indirect
//   comparison through sc.
void sort_by_rank(int64_t* first, int64_t* last, const double* sc, bool float_keys, bool index_ordered) {
  const int64_t n = last - first;
  if (float_keys && index_ordered && n >= 64) {
    thread_local std::vector<uint32_t> keys, key_tmp;
    thread_local std::vector<int64_t> idx_tmp;
    keys.resize(n);
    for (int64_t k = 0; k < n; ++k) keys[k] = float_rank_key(sc[first[k]]);
    radix_sort_by_key(keys.data(), first, n, key_tmp, idx_tmp);
    return;
  }
  if (float_keys) {
    thread_local std::vector<uint64_t> keys;
    keys.resize(n);
    for (int64_t k = 0; k < n; ++k)
      keys[k] = (static_cast<uint64_t>(float_rank_key(sc[first[k]])) << 32) | static_cast<uint64_t>(first[k]);
    std::sort(keys.begin(), keys.end());
    for (int64_t k = 0; k < n; ++k) first[k] = static_cast<int64_t>(keys[k] & 0xffffffffu);
    return;
  }
  thread_local std::vector<std::pair<double, int64_t>> keyed;
  keyed.resize(n);
  for (int64_t k = 0; k < n; ++k) keyed[k] = {sc[first[k]], first[k]};
  std::sort(keyed.begin(), keyed.end(), [](const std::pair<double, int64_t>& x, const std::pair<double, int64_t>& y) {
    return nms1d::ranks_before<double>(x.first, x.second, y.first, y.second);
  });
  for (int64_t k = 0; k < n; ++k) first[k] = keyed[k].second;
}

// Scratch buffers of nms_group, reused by a thread across groups / rows.
template <typename T>
struct GroupScratch {
  std::vector<T> s, e;
  std::vector<uint8_t> keep;
  std::vector<int64_t> idx;
};

at::Tensor to_index_tensor(const std::vector<int64_t>& v) {
  at::Tensor out = at::empty({static_cast<int64_t>(v.size())}, at::TensorOptions().dtype(at::kLong));
  std::copy(v.begin(), v.end(), out.mutable_data_ptr<int64_t>());
  return out;
}

// NMS of the segments idx[0..n) (in increasing index order on entry, sorted into rank order in
// place); appends nothing, but writes the kept ones (at most `limit`) to the front of idx and
// returns how many were kept. Scratch buffers are the caller's so a thread reuses them across
// groups.
template <typename scalar_t, typename T>
int64_t nms_group(const scalar_t* seg, const double* sc, bool float_keys, int64_t* idx, int64_t n, T thr,
                  std::vector<T>& s, std::vector<T>& e, std::vector<uint8_t>& keep, int64_t limit) {
  sort_by_rank(idx, idx + n, sc, float_keys, /*index_ordered=*/true);
  s.resize(n);
  e.resize(n);
  keep.assign(n, 0);
  for (int64_t k = 0; k < n; ++k) {
    s[k] = static_cast<T>(seg[2 * idx[k]]);
    e[k] = static_cast<T>(seg[2 * idx[k] + 1]);
  }
  nms_ranked<T>(s.data(), e.data(), n, thr, keep.data(), limit);
  int64_t kept = 0;
  for (int64_t k = 0; k < n; ++k)
    if (keep[k]) idx[kept++] = idx[k];
  return kept;
}

at::Tensor temporal_nms_cpu(const at::Tensor& segments_in, const at::Tensor& scores, double iou_threshold) {
  check_nms_inputs(segments_in, scores, "temporal_nms");
  const int64_t n = segments_in.size(0);
  if (n == 0) return at::empty({0}, segments_in.options().dtype(at::kLong));
  at::Tensor segments = segments_in.contiguous();
  std::vector<double> sc = scores_as_double(scores, "temporal_nms");
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, segments.scalar_type(), "temporal_nms_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    std::vector<T> s, e;
    std::vector<uint8_t> keep;
    idx.resize(nms_group<scalar_t, T>(segments.const_data_ptr<scalar_t>(), sc.data(), use_float_keys(scores, n),
                                      idx.data(), n, static_cast<T>(iou_threshold), s, e, keep, n));
  });
  return to_index_tensor(idx);
}

at::Tensor batched_temporal_nms_cpu(const at::Tensor& segments_in, const at::Tensor& scores,
                                    const at::Tensor& idxs_in, double iou_threshold) {
  const char* op = "batched_temporal_nms";
  check_nms_inputs(segments_in, scores, op);
  TORCH_CHECK_VALUE(idxs_in.dim() == 1 && idxs_in.size(0) == segments_in.size(0), op,
                    ": idxs must be a 1-d tensor [N] matching segments [N, 2], got ", idxs_in.sizes());
  TORCH_CHECK_VALUE(at::isIntegralType(idxs_in.scalar_type(), /*includeBool=*/false), op,
                    ": idxs must be an integer tensor of group ids, got ", idxs_in.scalar_type());
  const int64_t n = segments_in.size(0);
  if (n == 0) return at::empty({0}, segments_in.options().dtype(at::kLong));
  at::Tensor segments = segments_in.contiguous();
  at::Tensor idxs = idxs_in.to(at::kLong).contiguous();
  const int64_t* gid = idxs.const_data_ptr<int64_t>();
  std::vector<double> sc = scores_as_double(scores, op);

  // Indices grouped by id (a stable sort; skipped when the ids already come in groups).
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  if (!std::is_sorted(gid, gid + n))
    std::stable_sort(idx.begin(), idx.end(), [gid](int64_t i, int64_t j) { return gid[i] < gid[j]; });
  std::vector<int64_t> starts{0};
  for (int64_t k = 1; k < n; ++k)
    if (gid[idx[k]] != gid[idx[k - 1]]) starts.push_back(k);
  starts.push_back(n);
  const int64_t groups = static_cast<int64_t>(starts.size()) - 1;

  // Groups are independent problems (ranked, suppressed and compacted in place, in parallel);
  // no IoU is ever computed across groups.
  std::vector<int64_t> kept_count(groups);
  const bool float_keys = use_float_keys(scores, n);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, segments.scalar_type(), "batched_temporal_nms_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* seg = segments.const_data_ptr<scalar_t>();
    const T thr = static_cast<T>(iou_threshold);
    parallel_rows<GroupScratch<T>>(groups, n, [&](int64_t g, GroupScratch<T>& w) {
      kept_count[g] = nms_group<scalar_t, T>(seg, sc.data(), float_keys, idx.data() + starts[g],
                                             starts[g + 1] - starts[g], thr, w.s, w.e, w.keep,
                                             starts[g + 1] - starts[g]);
    });
  });
  std::vector<int64_t> kept;
  for (int64_t g = 0; g < groups; ++g)
    kept.insert(kept.end(), idx.begin() + starts[g], idx.begin() + starts[g] + kept_count[g]);
  sort_by_rank(kept.data(), kept.data() + kept.size(), sc.data(), float_keys, /*index_ordered=*/false);  // across groups
  return to_index_tensor(kept);
}

std::tuple<at::Tensor, at::Tensor> temporal_nms_padded_cpu(const at::Tensor& segments_in, const at::Tensor& scores,
                                                            double iou_threshold, int64_t max_keep,
                                                            const std::optional<at::Tensor>& valid_mask) {
  const char* op = "temporal_nms_padded";
  const int64_t k_out = check_padded_nms_inputs(segments_in, scores, valid_mask, max_keep, op);
  const int64_t b_rows = segments_in.size(0), n = segments_in.size(1);
  at::Tensor out_idx = at::full({b_rows, k_out}, -1, segments_in.options().dtype(at::kLong));
  at::Tensor out_ok = at::zeros({b_rows, k_out}, segments_in.options().dtype(at::kBool));
  if (b_rows == 0 || n == 0 || k_out == 0) return {out_idx, out_ok};
  at::Tensor segments = segments_in.contiguous();
  at::Tensor mask = valid_mask.has_value() ? valid_mask->contiguous() : at::Tensor();
  const bool* valid = mask.defined() ? mask.const_data_ptr<bool>() : nullptr;
  // Scores as double; NaN is rejected among the valid segments only (padding may hold anything).
  const std::vector<double> sd = as_double_vector(scores);
  const double* sc = sd.data();
  for (int64_t i = 0; i < b_rows * n; ++i)
    TORCH_CHECK_VALUE((valid && !valid[i]) || !std::isnan(sc[i]), op,
                      ": scores must not contain NaN among the valid segments, found one at [", i / n, ", ",
                      i % n, "]");
  int64_t* oi = out_idx.mutable_data_ptr<int64_t>();
  bool* ok = out_ok.mutable_data_ptr<bool>();
  const bool float_keys = use_float_keys(scores, n);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, segments.scalar_type(), "temporal_nms_padded_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* seg = segments.const_data_ptr<scalar_t>();
    const T thr = static_cast<T>(iou_threshold);
    // Rows are independent problems.
    parallel_rows<GroupScratch<T>>(b_rows, b_rows * n, [&](int64_t b, GroupScratch<T>& w) {
      w.idx.clear();
      for (int64_t j = 0; j < n; ++j)
        if (!valid || valid[b * n + j]) w.idx.push_back(j);
      const int64_t kept = nms_group<scalar_t, T>(seg + b * n * 2, sc + b * n, float_keys, w.idx.data(),
                                                  static_cast<int64_t>(w.idx.size()), thr, w.s, w.e, w.keep, k_out);
      std::copy(w.idx.begin(), w.idx.begin() + kept, oi + b * k_out);
      std::fill(ok + b * k_out, ok + b * k_out + kept, true);
    });
  });
  return {out_idx, out_ok};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CPU, m) {
  m.impl("temporal_nms", &temporal_nms_cpu);
  m.impl("batched_temporal_nms", &batched_temporal_nms_cpu);
  m.impl("temporal_nms_padded", &temporal_nms_padded_cpu);
}

}  // namespace vgops
