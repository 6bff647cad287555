// CUDA kernels of temporal_nms and batched_temporal_nms; the math is in ../temporal_nms.h.
//
// Segments are put in rank order (decreasing score, ties by lower index) and, for the batched
// op, grouped (a stable sort by group id keeps rank order inside each group). Each group is an
// independent problem:
//   1. mask kernel: for every (row block, col block) tile of 64 x 64 segments inside one group,
//      a 64-bit word per row marks the later segments that row's segment suppresses;
//   2. scan kernel: one CUDA block per group walks its rows in order, 64 at a time, deciding
//      within a word from the diagonal word alone and OR-ing the kept rows' words into the
//      group's "removed" bitset in parallel. No mask ever crosses to the host.
// Memory: sum over groups of n_g * ceil(n_g / 64) * 8 bytes for the mask (N = 5,000 in one
// group: 0.4 MB; N = 100,000: 1.25 GB), plus O(N) for orders and flags.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "../temporal_nms.h"

namespace vgops {
namespace {

constexpr int kWord = 64;  // segments per mask word = threads per mask block
using word_t = unsigned long long;

// Per group g: start in the grouped order, size n, first mask word, first tile, first bitset word.
struct GroupTable {
  const int64_t* start;
  const int64_t* size;
  const int64_t* mask_offset;
  const int64_t* tile_offset;  // length G + 1
  const int64_t* remv_offset;
  int64_t groups;
};

__device__ inline int64_t find_group(const int64_t* tile_offset, int64_t groups, int64_t tile) {
  int64_t lo = 0, hi = groups - 1;  // last g with tile_offset[g] <= tile
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    if (tile_offset[mid] <= tile) lo = mid; else hi = mid - 1;
  }
  return lo;
}

template <typename scalar_t>
__global__ void nms_mask_kernel(const scalar_t* __restrict__ seg, GroupTable gt, int64_t total_tiles,
                                double iou_threshold, word_t* __restrict__ mask) {
  using T = at::opmath_type<scalar_t>;
  __shared__ T cs[kWord], ce[kWord];
  for (int64_t tile = blockIdx.x; tile < total_tiles; tile += gridDim.x) {
    const int64_t g = find_group(gt.tile_offset, gt.groups, tile);
    const int64_t n = gt.size[g], base = gt.start[g];
    const int64_t cb = (n + kWord - 1) / kWord;
    const int64_t local = tile - gt.tile_offset[g];
    const int64_t row_block = local / cb, col_block = local % cb;
    if (row_block > col_block) continue;  // the scan never reads words left of the diagonal
    const int64_t row = row_block * kWord + threadIdx.x, col0 = col_block * kWord;
    const int cols = static_cast<int>(iou1d::min_<int64_t>(kWord, n - col0));
    __syncthreads();
    if (threadIdx.x < cols) {
      cs[threadIdx.x] = static_cast<T>(seg[2 * (base + col0 + threadIdx.x)]);
      ce[threadIdx.x] = static_cast<T>(seg[2 * (base + col0 + threadIdx.x) + 1]);
    }
    __syncthreads();
    if (row < n) {
      const T s = static_cast<T>(seg[2 * (base + row)]), e = static_cast<T>(seg[2 * (base + row) + 1]);
      const T thr = static_cast<T>(iou_threshold);
      word_t bits = 0;
      for (int k = (row_block == col_block ? threadIdx.x + 1 : 0); k < cols; ++k)
        if (nms1d::suppresses<T>(s, e, cs[k], ce[k], thr)) bits |= 1ULL << k;
      mask[gt.mask_offset[g] + row * cb + col_block] = bits;
    }
  }
}

// One block per group. remv must be zero on entry; keep[grouped position] is set to 1 for kept.
__global__ void nms_scan_kernel(const word_t* __restrict__ mask, GroupTable gt, word_t* __restrict__ remv,
                                bool* __restrict__ keep) {
  const int64_t g = blockIdx.x;
  const int64_t n = gt.size[g], base = gt.start[g];
  const int64_t cb = (n + kWord - 1) / kWord;
  const word_t* m = mask + gt.mask_offset[g];
  word_t* r = remv + gt.remv_offset[g];
  __shared__ word_t diag[kWord];
  __shared__ word_t kept_bits;
  for (int64_t blk = 0; blk < cb; ++blk) {
    const int rows = static_cast<int>(iou1d::min_<int64_t>(kWord, n - blk * kWord));
    // Decisions inside this word depend only on the diagonal words of its rows: load them
    // together, then decide serially from shared memory.
    if (threadIdx.x < rows) diag[threadIdx.x] = m[(blk * kWord + threadIdx.x) * cb + blk];
    __syncthreads();
    if (threadIdx.x == 0) {
      word_t removed = r[blk], kept = 0;
      for (int k = 0; k < rows; ++k) {
        if (removed & (1ULL << k)) continue;
        kept |= 1ULL << k;
        keep[base + blk * kWord + k] = true;
        removed |= diag[k];
      }
      kept_bits = kept;
    }
    __syncthreads();
    const word_t kept = kept_bits;
    // Later words: OR in the rows kept in this word, one word per thread.
    for (int64_t w = blk + 1 + threadIdx.x; w < cb; w += blockDim.x) {
      word_t acc = r[w];
      for (int k = 0; k < kWord; ++k)
        if (kept & (1ULL << k)) acc |= m[(blk * kWord + k) * cb + w];
      r[w] = acc;
    }
    __syncthreads();
  }
}

// Runs NMS on `seg` ([N, 2], grouped and rank ordered) with groups of the given host sizes;
// returns keep flags [N] (bool) in the same order.
at::Tensor nms_grouped(const at::Tensor& seg, const std::vector<int64_t>& sizes, double iou_threshold) {
  const int64_t G = static_cast<int64_t>(sizes.size());
  // Host table: [start | size | mask_offset | tile_offset (G + 1) | remv_offset].
  std::vector<int64_t> table(5 * G + 1);
  int64_t start = 0, words = 0, tiles = 0, remv = 0;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t n = sizes[g], cb = (n + kWord - 1) / kWord;
    table[g] = start;
    table[G + g] = n;
    table[2 * G + g] = words;
    table[3 * G + g] = tiles;
    table[4 * G + 1 + g] = remv;
    start += n; words += n * cb; tiles += cb * cb; remv += cb;
  }
  table[4 * G] = tiles;
  at::Tensor table_dev = at::tensor(table, at::TensorOptions().dtype(at::kLong)).to(seg.device(), /*non_blocking=*/false);
  const int64_t* t = table_dev.const_data_ptr<int64_t>();
  GroupTable gt{t, t + G, t + 2 * G, t + 3 * G, t + 4 * G + 1, G};

  at::Tensor mask = at::empty({words}, seg.options().dtype(at::kLong));
  at::Tensor remv_bits = at::zeros({remv}, seg.options().dtype(at::kLong));
  at::Tensor keep = at::zeros({start}, seg.options().dtype(at::kBool));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int grid = static_cast<int>(std::min<int64_t>(tiles, 1 << 20));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, seg.scalar_type(), "temporal_nms_mask_cuda", [&] {
    nms_mask_kernel<scalar_t><<<grid, kWord, 0, stream>>>(
        seg.const_data_ptr<scalar_t>(), gt, tiles, iou_threshold,
        reinterpret_cast<word_t*>(mask.mutable_data_ptr<int64_t>()));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  nms_scan_kernel<<<static_cast<unsigned>(G), 128, 0, stream>>>(
      reinterpret_cast<const word_t*>(mask.const_data_ptr<int64_t>()), gt,
      reinterpret_cast<word_t*>(remv_bits.mutable_data_ptr<int64_t>()), keep.mutable_data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
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

}  // namespace

TORCH_LIBRARY_IMPL(vgops, CUDA, m) {
  m.impl("temporal_nms", &temporal_nms_cuda);
  m.impl("batched_temporal_nms", &batched_temporal_nms_cuda);
}

}  // namespace vgops
