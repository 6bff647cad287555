#pragma once
// Parallel loop over independent problems (rows of a padded batch, groups) for the CPU kernels.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace vgops {

// Below this many segments in all the problems together (a few ms of work) the problems run on
// the calling thread: on a busy machine (the project's shared 2-core VMs) a parallel region that
// has to wait for a second thread to be scheduled was measured 5-10x slower than the serial loop.
constexpr int64_t kParallelRowsMinSegments = int64_t(1) << 18;

// Calls body(r, scratch) for every r in [0, rows). With at least kParallelRowsMinSegments
// segments in all, on torch's intra-op threads: each thread makes one Scratch (reused across its
// rows) and takes rows one at a time from a shared counter, so a thread that starts late or is
// descheduled does not hold back a fixed share of the rows (at::parallel_for alone gives every
// thread one fixed chunk). Otherwise serially.
template <typename Scratch, typename Body>
void parallel_rows(int64_t rows, int64_t total_segments, const Body& body) {
  if (total_segments < kParallelRowsMinSegments || at::get_num_threads() <= 1) {
    Scratch scratch;
    for (int64_t r = 0; r < rows; ++r) body(r, scratch);
    return;
  }
  std::atomic<int64_t> next{0};
  const int64_t tasks = std::min<int64_t>(rows, at::get_num_threads());
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) {
    Scratch scratch;
    for (int64_t r = next.fetch_add(1); r < rows; r = next.fetch_add(1)) body(r, scratch);
  });
}

}  // namespace vgops
