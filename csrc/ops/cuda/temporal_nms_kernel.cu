// CUDA kernels of the temporal_nms family; the math is in ../temporal_nms.h.
//
// temporal_nms and batched_temporal_nms
// -------------------------------------
// Segments are put in rank order (decreasing score, ties by lower index) and, for the batched
// op, grouped (a stable sort by group id keeps rank order inside each group). Each group is an
// independent problem. Row i of a group "suppresses" column j > i when IoU(i, j) > threshold; a
// 64-bit mask word holds the bits of 64 consecutive columns. Segment i is kept iff no kept
// segment before it suppresses it.
//
// The full n x n/64 mask of a group (n = 200,000: 5 GB) is never stored. The rows of every group
// are processed in bands of R rows (R = 64 * row words, see band_row_words()); for each band:
//   1. mask kernel: the words of the band's rows from the band's own first column onwards
//      (64 x 64 tiles; tiles left of the diagonal are skipped, and rows already removed by
//      earlier bands are written as 0 without computing an IoU);
//   2. scan kernel, one block per group: walks the band's rows 64 at a time, deciding within a
//      word from the diagonal words alone (serially, in shared memory) and OR-ing the kept rows'
//      words into the group's "removed" bitset for the columns inside the band;
//   3. propagate kernel, grid-wide: ORs the kept rows' words into the removed bitset for every
//      column after the band (atomicOr: OR is order-independent, so the result is deterministic).
// A band reads only removed bits that earlier bands finished, so the result is exactly the
// sequential greedy NMS, i.e. the CPU kernel's (the same nms1d::suppresses in the same type).
// Nothing crosses to the host but the final keep flags (masked_select).
//
// Memory: the band buffer holds 8 * sum_g rows_g * (ceil(n_g / 64) - first column word) bytes
// for the current band; R is chosen so that this is at most 256 MiB where possible (R <= 4096,
// R >= 64): 8 * min(n_g, R) * ceil(n_g / 64) summed over groups for the first band.
// n = 5,000 in one group: 3.2 MB; n = 200,000 in one group: R = 4096, 102 MB; 64 groups of
// 1,000: 8.2 MB. Plus O(N): the rank order and grouping (int64), a copy of the ordered segments,
// keep flags (1 byte each) and the removed bitsets (N / 8 bytes).
//
// temporal_nms_padded
// -------------------
// Static shapes and no host synchronisation: one block per row. The row is put in rank order by
// at::sort on the device; the block walks it kTile candidates at a time: each candidate is
// tested against the segments kept so far (read kTile at a time through shared memory), then the
// tile's own greedy order is resolved from a kTile x kTile suppression bitmask in shared memory.
// The block stops when max_keep segments are kept. Work per row O(N * kept / kTile) steps; extra
// memory: the order (8 * B * N bytes) and the kept segments (B * min(max_keep, N) pairs).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <optional>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../temporal_nms.h"

namespace vgops {
namespace {

constexpr int kWord = 64;  // segments per mask word = threads per mask block
using word_t = unsigned long long;
constexpr int64_t kBandBudgetBytes = int64_t(256) << 20;  // band buffer target
constexpr int64_t kMaxBandWords = 64;                      // row words per band: R <= 4096
constexpr int64_t kPropagateRows = 256;                    // band rows OR-ed by one propagate thread
constexpr int kScanThreads = 64;                           // in-band words per scan step <= 63
constexpr int kPropagateThreads = 256;

// Per group g (positions in the grouped, rank-ordered arrays): first position, size, first word
// of its removed bitset (ceil(n_g / 64) words).
struct Groups {
  const int64_t* start;
  const int64_t* size;
  const int64_t* remv_offset;
};

// The groups that have rows in one band (n_g > row0), in a compact list of `count` entries.
struct Band {
  const int64_t* group;        // [count] group id
  const int64_t* mask_offset;  // [count] first word of the entry's rows in the band buffer
  const int64_t* tile_offset;  // [count + 1] prefix sums of the entries' mask tiles
  const int64_t* task_offset;  // [count + 1] prefix sums of the entries' propagate tasks
  int64_t count;
  int64_t row0;  // first row (inside each group) of the band, a multiple of 64
  int64_t rows;  // R, rows per band
};

// Shape of one entry of a band: group g has n rows from position base; the band holds its rows
// [row0, row0 + rows); its mask rows cover column words [w0, w0 + cols) of the group.
struct BandGroup {
  int64_t g, n, base, rows, row_words, w0, cols;
};

__device__ inline BandGroup band_group(const Groups& gr, const Band& band, int64_t a) {
  BandGroup bg;
  bg.g = band.group[a];
  bg.n = gr.size[bg.g];
  bg.base = gr.start[bg.g];
  bg.rows = iou1d::min_<int64_t>(band.rows, bg.n - band.row0);
  bg.row_words = (bg.rows + kWord - 1) / kWord;
  bg.w0 = band.row0 / kWord;
  bg.cols = (bg.n + kWord - 1) / kWord - bg.w0;
  return bg;
}

// The last entry a in [0, count) with offset[a] <= x (offsets are non-decreasing; entries with
// nothing to do share their offset with the next one, so the last match is the one that owns x).
__device__ inline int64_t find_entry(const int64_t* offset, int64_t count, int64_t x) {
  int64_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (offset[mid] <= x) lo = mid; else hi = mid - 1;
  }
  return lo;
}

template <typename scalar_t>
__global__ void nms_band_mask_kernel(const scalar_t* __restrict__ seg, Groups gr, Band band, int64_t total_tiles,
                                     double iou_threshold, const word_t* __restrict__ remv,
                                     word_t* __restrict__ mask) {
  using T = at::opmath_type<scalar_t>;
  __shared__ T cs[kWord], ce[kWord];
  const T thr = static_cast<T>(iou_threshold);
  for (int64_t tile = blockIdx.x; tile < total_tiles; tile += gridDim.x) {
    const int64_t a = find_entry(band.tile_offset, band.count, tile);
    const BandGroup bg = band_group(gr, band, a);
    const int64_t local = tile - band.tile_offset[a];
    const int64_t rb = local / bg.cols, cw = local % bg.cols;  // row word, column word (from w0)
    if (rb > cw) continue;  // left of the diagonal: never read (uniform over the block)
    const int64_t row = band.row0 + rb * kWord + threadIdx.x;  // row inside the group
    const int64_t col0 = (bg.w0 + cw) * kWord;
    const int ncols = static_cast<int>(iou1d::min_<int64_t>(kWord, bg.n - col0));
    __syncthreads();  // the previous tile's columns are no longer read
    if (threadIdx.x < ncols) {
      cs[threadIdx.x] = static_cast<T>(seg[2 * (bg.base + col0 + threadIdx.x)]);
      ce[threadIdx.x] = static_cast<T>(seg[2 * (bg.base + col0 + threadIdx.x) + 1]);
    }
    __syncthreads();
    if (row < bg.n) {
      word_t bits = 0;
      // Rows removed by an earlier band are never kept: their words are never read for a
      // decision, so they are written as 0 without computing IoUs.
      const bool removed = (remv[gr.remv_offset[bg.g] + row / kWord] >> (row % kWord)) & 1ULL;
      if (!removed) {
        const T s = static_cast<T>(seg[2 * (bg.base + row)]), e = static_cast<T>(seg[2 * (bg.base + row) + 1]);
        for (int k = (rb == cw ? static_cast<int>(threadIdx.x) + 1 : 0); k < ncols; ++k)
          if (nms1d::suppresses<T>(s, e, cs[k], ce[k], thr)) bits |= 1ULL << k;
      }
      mask[band.mask_offset[a] + (row - band.row0) * bg.cols + cw] = bits;
    }
  }
}

// One block per entry of the band: the greedy decisions for the band's rows, and the removed
// bits they cause inside the band. keep must be all false before the first band.
__global__ void nms_band_scan_kernel(const word_t* __restrict__ mask, Groups gr, Band band,
                                     word_t* __restrict__ remv, bool* __restrict__ keep) {
  const int64_t a = blockIdx.x;
  const BandGroup bg = band_group(gr, band, a);
  const word_t* m = mask + band.mask_offset[a];
  word_t* r = remv + gr.remv_offset[bg.g] + bg.w0;  // word w of the band = r[w]
  bool* kp = keep + bg.base + band.row0;
  __shared__ word_t diag[kWord];
  __shared__ word_t kept_bits;
  for (int64_t blk = 0; blk < bg.row_words; ++blk) {
    const int rows = static_cast<int>(iou1d::min_<int64_t>(kWord, bg.rows - blk * kWord));
    // Decisions inside this word depend only on the diagonal words of its rows: load them
    // together, then decide serially from shared memory.
    if (threadIdx.x < rows) diag[threadIdx.x] = m[(blk * kWord + threadIdx.x) * bg.cols + blk];
    __syncthreads();
    if (threadIdx.x == 0) {
      word_t removed = r[blk], kept = 0;
      for (int k = 0; k < rows; ++k) {
        if (removed & (1ULL << k)) continue;
        kept |= 1ULL << k;
        kp[blk * kWord + k] = true;
        removed |= diag[k];
      }
      kept_bits = kept;
    }
    __syncthreads();
    const word_t kept = kept_bits;
    // Later words of the band: OR in the rows kept in this word, one word per thread.
    for (int64_t w = blk + 1 + threadIdx.x; w < bg.row_words; w += blockDim.x) {
      word_t acc = r[w];
      for (int k = 0; k < kWord; ++k)
        if (kept & (1ULL << k)) acc |= m[(blk * kWord + k) * bg.cols + w];
      r[w] = acc;
    }
    __syncthreads();  // r[] and kept_bits are read again in the next step
  }
}

// Grid-wide: for every entry and every column word after the band, OR the words of the kept
// rows of (a chunk of) the band into the removed bitset. Task = (row chunk, word); consecutive
// tasks are consecutive words, so mask reads are coalesced.
__global__ void nms_band_propagate_kernel(const word_t* __restrict__ mask, Groups gr, Band band, int64_t total_tasks,
                                          const bool* __restrict__ keep, word_t* __restrict__ remv) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t task = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; task < total_tasks;
       task += stride) {
    const int64_t a = find_entry(band.task_offset, band.count, task);
    const BandGroup bg = band_group(gr, band, a);
    const int64_t later = bg.cols - bg.row_words;  // > 0 for an entry that owns a task
    const int64_t local = task - band.task_offset[a];
    const int64_t chunk = local / later, w = bg.row_words + local % later;
    const int64_t r_end = iou1d::min_<int64_t>(bg.rows, (chunk + 1) * kPropagateRows);
    const bool* kp = keep + bg.base + band.row0;
    const word_t* m = mask + band.mask_offset[a];
    word_t acc = 0;
    for (int64_t rr = chunk * kPropagateRows; rr < r_end; ++rr)
      if (kp[rr]) acc |= m[rr * bg.cols + w];
    if (acc) atomicOr(remv + gr.remv_offset[bg.g] + bg.w0 + w, acc);
  }
}

// Row words per band: as many as fit kBandBudgetBytes for the first (largest) band, in [1, 64].
int64_t band_row_words(int64_t total_words_per_row) {
  const int64_t per_row_word = 8 * kWord * std::max<int64_t>(total_words_per_row, 1);
  return std::max<int64_t>(1, std::min<int64_t>(kMaxBandWords, kBandBudgetBytes / per_row_word));
}

// Runs NMS on `seg` ([N, 2], grouped and rank ordered) with groups of the given host sizes (all
// > 0); returns keep flags [N] (bool) in the same order.
at::Tensor nms_grouped(const at::Tensor& seg, const std::vector<int64_t>& sizes, double iou_threshold) {
  const int64_t G = static_cast<int64_t>(sizes.size());
  // Host table: [start (G) | size (G) | remv_offset (G) | per band: group, mask_offset (A),
  // tile_offset, task_offset (A + 1)].
  std::vector<int64_t> table(3 * G);
  int64_t n_total = 0, remv_words = 0, max_n = 0;
  for (int64_t g = 0; g < G; ++g) {
    table[g] = n_total;
    table[G + g] = sizes[g];
    table[2 * G + g] = remv_words;
    n_total += sizes[g];
    remv_words += (sizes[g] + kWord - 1) / kWord;
    max_n = std::max(max_n, sizes[g]);
  }
  const int64_t band_rows = band_row_words(remv_words) * kWord;
  const int64_t bands = (max_n + band_rows - 1) / band_rows;
  // Groups by decreasing size: the groups active in band j (n_g > j * R) are a prefix.
  std::vector<int64_t> by_size(G);
  std::iota(by_size.begin(), by_size.end(), 0);
  std::stable_sort(by_size.begin(), by_size.end(), [&](int64_t x, int64_t y) { return sizes[x] > sizes[y]; });
  struct HostBand {
    int64_t offset, count, row0, tiles, tasks;
  };
  std::vector<HostBand> host_bands;
  int64_t max_band_words = 0;
  for (int64_t j = 0; j < bands; ++j) {
    const int64_t row0 = j * band_rows;
    int64_t count = 0;
    while (count < G && sizes[by_size[count]] > row0) ++count;
    const int64_t offset = static_cast<int64_t>(table.size());
    table.resize(table.size() + 4 * count + 2);
    int64_t* group = table.data() + offset;
    int64_t* mask_offset = group + count;
    int64_t* tile_offset = mask_offset + count;
    int64_t* task_offset = tile_offset + count + 1;
    int64_t words = 0, tiles = 0, tasks = 0;
    for (int64_t a = 0; a < count; ++a) {
      const int64_t g = by_size[a], n = sizes[g];
      const int64_t rows = std::min(band_rows, n - row0);
      const int64_t row_words = (rows + kWord - 1) / kWord;
      const int64_t cols = (n + kWord - 1) / kWord - row0 / kWord;
      group[a] = g;
      mask_offset[a] = words;
      tile_offset[a] = tiles;
      task_offset[a] = tasks;
      words += rows * cols;
      tiles += row_words * cols;
      tasks += (rows + kPropagateRows - 1) / kPropagateRows * (cols - row_words);
    }
    tile_offset[count] = tiles;
    task_offset[count] = tasks;
    max_band_words = std::max(max_band_words, words);
    host_bands.push_back({offset, count, row0, tiles, tasks});
  }
  at::Tensor table_dev = at::tensor(table, at::TensorOptions().dtype(at::kLong)).to(seg.device());
  const int64_t* t = table_dev.const_data_ptr<int64_t>();
  const Groups gr{t, t + G, t + 2 * G};

  at::Tensor mask = at::empty({max_band_words}, seg.options().dtype(at::kLong));
  at::Tensor remv_bits = at::zeros({remv_words}, seg.options().dtype(at::kLong));
  at::Tensor keep = at::zeros({n_total}, seg.options().dtype(at::kBool));
  word_t* mask_ptr = reinterpret_cast<word_t*>(mask.mutable_data_ptr<int64_t>());
  word_t* remv_ptr = reinterpret_cast<word_t*>(remv_bits.mutable_data_ptr<int64_t>());
  bool* keep_ptr = keep.mutable_data_ptr<bool>();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  // Kernels of one band run after those of the previous band (one stream), so the band buffer is
  // reused and every band sees the removed bits of all earlier bands.
  for (const HostBand& hb : host_bands) {
    const int64_t* e = t + hb.offset;
    const Band band{e, e + hb.count, e + 2 * hb.count, e + 3 * hb.count + 1, hb.count, hb.row0, band_rows};
    const int mask_grid = static_cast<int>(std::min<int64_t>(hb.tiles, int64_t(1) << 20));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, seg.scalar_type(), "temporal_nms_mask_cuda", [&] {
      nms_band_mask_kernel<scalar_t><<<mask_grid, kWord, 0, stream>>>(
          seg.const_data_ptr<scalar_t>(), gr, band, hb.tiles, iou_threshold, remv_ptr, mask_ptr);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    nms_band_scan_kernel<<<static_cast<unsigned>(hb.count), kScanThreads, 0, stream>>>(mask_ptr, gr, band, remv_ptr,
                                                                                      keep_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (hb.tasks > 0) {
      const int grid = static_cast<int>(
          std::min<int64_t>((hb.tasks + kPropagateThreads - 1) / kPropagateThreads, int64_t(1) << 16));
      nms_band_propagate_kernel<<<grid, kPropagateThreads, 0, stream>>>(mask_ptr, gr, band, hb.tasks, keep_ptr,
                                                                       remv_ptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
  return keep;
}

void check_nms_inputs(const at::Tensor& segments, const at::Tensor& scores, const char* op) {
  check_segments(segments, op, "segments", 2);
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == segments.size(0), op,
                    ": scores must be a 1-d tensor [N] matching segments [N, 2], got ", scores.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(scores.scalar_type()), op, ": scores must be floating point, got ",
                    scores.scalar_type());
  TORCH_CHECK_VALUE(scores.device() == segments.device(), op, ": segments and scores must be on the same device, got ",
                    segments.device(), " and ", scores.device());
  TORCH_CHECK_VALUE(!at::isnan(scores).any().item<bool>(), op, ": scores must not contain NaN");
}

// Rank order: decreasing score, ties by lower index (a stable descending sort).
at::Tensor rank_order(const at::Tensor& scores) {
  return std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/0, /*descending=*/true));
}

at::Tensor temporal_nms_cuda(const at::Tensor& segments, const at::Tensor& scores, double iou_threshold) {
  c10::cuda::CUDAGuard guard(segments.device());
  check_nms_inputs(segments, scores, "temporal_nms");
  const int64_t n = segments.size(0);
  if (n == 0) return at::empty({0}, segments.options().dtype(at::kLong));
  at::Tensor order = rank_order(scores);
  at::Tensor keep = nms_grouped(segments.index_select(0, order).contiguous(), {n}, iou_threshold);
  return order.masked_select(keep);
}

at::Tensor batched_temporal_nms_cuda(const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& idxs,
                                     double iou_threshold) {
  const char* op = "batched_temporal_nms";
  c10::cuda::CUDAGuard guard(segments.device());
  check_nms_inputs(segments, scores, op);
  TORCH_CHECK_VALUE(idxs.dim() == 1 && idxs.size(0) == segments.size(0), op,
                    ": idxs must be a 1-d tensor [N] matching segments [N, 2], got ", idxs.sizes());
  TORCH_CHECK_VALUE(at::isIntegralType(idxs.scalar_type(), /*includeBool=*/false), op,
                    ": idxs must be an integer tensor of group ids, got ", idxs.scalar_type());
  TORCH_CHECK_VALUE(idxs.device() == segments.device(), op, ": idxs must be on ", segments.device(), ", got ",
                    idxs.device());
  const int64_t n = segments.size(0);
  if (n == 0) return at::empty({0}, segments.options().dtype(at::kLong));
  at::Tensor by_rank = rank_order(scores);
  // Stable sort of the rank order by group id: grouped, rank order kept inside each group.
  at::Tensor perm = std::get<1>(at::sort(idxs.to(at::kLong).index_select(0, by_rank), /*stable=*/true, 0, false));
  at::Tensor grouped = by_rank.index_select(0, perm);
  at::Tensor sorted_ids = idxs.to(at::kLong).index_select(0, grouped);
  at::Tensor counts = std::get<2>(at::unique_consecutive(sorted_ids, false, true)).cpu();
  std::vector<int64_t> sizes(counts.const_data_ptr<int64_t>(), counts.const_data_ptr<int64_t>() + counts.numel());
  at::Tensor keep_grouped = nms_grouped(segments.index_select(0, grouped).contiguous(), sizes, iou_threshold);
  at::Tensor keep_index = at::zeros({n}, keep_grouped.options());
  keep_index.index_put_({grouped}, keep_grouped);
  return by_rank.masked_select(keep_index.index_select(0, by_rank));
}

// ----------------------------------------------------------------------------------------------
// temporal_nms_padded

constexpr int kTile = 256;  // candidates per step = threads per block
constexpr int kTileWords = kTile / kWord;

// One block per row b. order [B, n]: the row's positions in rank order; alive [B, n]: valid and
// not NaN. Writes the kept positions (at most max_keep) to out_idx / out_ok [B, max_keep], which
// the caller filled with -1 / false; kept_seg [B, cap, 2] (cap = min(max_keep, n)) is scratch.
template <typename scalar_t>
__global__ void __launch_bounds__(kTile)
    nms_padded_kernel(const scalar_t* __restrict__ seg, const bool* __restrict__ alive,
                      const int64_t* __restrict__ order, int64_t n, int64_t max_keep, int64_t cap,
                      double iou_threshold, at::opmath_type<scalar_t>* __restrict__ kept_seg,
                      int64_t* __restrict__ out_idx, bool* __restrict__ out_ok) {
  using T = at::opmath_type<scalar_t>;
  __shared__ T ts[kTile], te[kTile];      // this tile's candidates
  __shared__ T cs[kTile], ce[kTile];      // a chunk of the kept segments
  __shared__ int64_t tidx[kTile];         // candidates' positions in the row
  __shared__ word_t sup[kTile][kTileWords];  // sup[i]: later candidates of the tile that i suppresses
  __shared__ unsigned live_bits[kTile / 32];
  __shared__ int64_t kept_shared;
  const int64_t row = blockIdx.x;
  const int t = threadIdx.x;
  const T thr = static_cast<T>(iou_threshold);
  const scalar_t* rs = seg + row * n * 2;
  const int64_t* ro = order + row * n;
  const bool* ra = alive + row * n;
  T* ks = kept_seg + row * cap * 2;
  int64_t* oi = out_idx + row * max_keep;
  bool* ook = out_ok + row * max_keep;
  int64_t kept = 0;  // uniform over the block
  for (int64_t t0 = 0; t0 < n && kept < max_keep; t0 += kTile) {
    const int cnt = static_cast<int>(iou1d::min_<int64_t>(kTile, n - t0));
    bool live = false;
    T s = T(0), e = T(0);
    int64_t pos = -1;
    if (t < cnt) {
      pos = ro[t0 + t];
      live = ra[pos];
      s = static_cast<T>(rs[2 * pos]);
      e = static_cast<T>(rs[2 * pos + 1]);
    }
    ts[t] = s;
    te[t] = e;
    tidx[t] = pos;
    // Against every segment kept in earlier tiles (all rank before this tile).
    for (int64_t c0 = 0; c0 < kept; c0 += kTile) {
      __syncthreads();  // the previous chunk is no longer read
      if (c0 + t < kept) {
        cs[t] = ks[2 * (c0 + t)];
        ce[t] = ks[2 * (c0 + t) + 1];
      }
      __syncthreads();
      const int cc = static_cast<int>(iou1d::min_<int64_t>(kTile, kept - c0));
      if (live)
        for (int q = 0; q < cc; ++q)
          if (nms1d::suppresses<T>(cs[q], ce[q], s, e, thr)) {
            live = false;
            break;
          }
    }
    __syncthreads();  // ts / te / tidx of the tile are complete
    for (int w = 0; w < kTileWords; ++w) {
      word_t bits = 0;
      if (live) {
        const int k_end = min(w * kWord + kWord, cnt);
        for (int k = max(w * kWord, t + 1); k < k_end; ++k)
          if (nms1d::suppresses<T>(s, e, ts[k], te[k], thr)) bits |= 1ULL << (k - w * kWord);
      }
      sup[t][w] = bits;
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, live);
    if ((t & 31) == 0) live_bits[t >> 5] = ballot;
    __syncthreads();
    if (t == 0) {
      // The tile's greedy order: a live candidate is kept unless a kept one before it in this
      // tile suppresses it.
      word_t open[kTileWords];
      for (int w = 0; w < kTileWords; ++w)
        open[w] = static_cast<word_t>(live_bits[2 * w]) | (static_cast<word_t>(live_bits[2 * w + 1]) << 32);
      int64_t k = kept;
      for (int i = 0; i < cnt && k < max_keep; ++i) {
        if (!((open[i / kWord] >> (i % kWord)) & 1ULL)) continue;
        oi[k] = tidx[i];
        ook[k] = true;
        ks[2 * k] = ts[i];
        ks[2 * k + 1] = te[i];
        ++k;
        for (int w = 0; w < kTileWords; ++w) open[w] &= ~sup[i][w];
      }
      kept_shared = k;
    }
    __syncthreads();
    kept = kept_shared;
  }
}

std::tuple<at::Tensor, at::Tensor> temporal_nms_padded_cuda(const at::Tensor& segments, const at::Tensor& scores,
                                                             double iou_threshold, int64_t max_keep,
                                                             const std::optional<at::Tensor>& valid_mask) {
  const char* op = "temporal_nms_padded";
  c10::cuda::CUDAGuard guard(segments.device());
  const int64_t k_out = check_padded_nms_inputs(segments, scores, valid_mask, max_keep, op);
  const int64_t b_rows = segments.size(0), n = segments.size(1);
  at::Tensor out_idx = at::full({b_rows, k_out}, -1, segments.options().dtype(at::kLong));
  at::Tensor out_ok = at::zeros({b_rows, k_out}, segments.options().dtype(at::kBool));
  if (b_rows == 0 || n == 0 || k_out == 0) return {out_idx, out_ok};
  TORCH_CHECK_VALUE(b_rows <= std::numeric_limits<int32_t>::max(), op, ": at most 2^31 - 1 rows, got ", b_rows);
  // No host synchronisation below: NaN scores cannot raise here, they count as masked out.
  at::Tensor alive = at::isnan(scores).logical_not();
  if (valid_mask.has_value()) alive = alive.logical_and(*valid_mask);
  alive = alive.contiguous();
  at::Tensor order = std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/1, /*descending=*/true)).contiguous();
  at::Tensor seg = segments.contiguous();
  const int64_t cap = std::min(k_out, n);
  at::Tensor kept_seg = at::empty({b_rows, cap, 2}, seg.options().dtype(at::toOpMathType(seg.scalar_type())));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, seg.scalar_type(), "temporal_nms_padded_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    nms_padded_kernel<scalar_t><<<static_cast<unsigned>(b_rows), kTile, 0, stream>>>(
        seg.const_data_ptr<scalar_t>(), alive.const_data_ptr<bool>(), order.const_data_ptr<int64_t>(), n, k_out,
        cap, iou_threshold, kept_seg.mutable_data_ptr<T>(), out_idx.mutable_data_ptr<int64_t>(),
        out_ok.mutable_data_ptr<bool>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out_idx, out_ok};
}

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("temporal_nms", &temporal_nms_cuda);
  m.impl("batched_temporal_nms", &batched_temporal_nms_cuda);
  m.impl("temporal_nms_padded", &temporal_nms_padded_cuda);
}

}  // namespace vgops
