// C++ test of the vgops library as a libtorch user sees it: only the public header
// <vgops/vgops.h> and the dispatcher. Hand-computed answers; exits non-zero on any failure.
// Run by ctest (see CMakeLists.txt); no test framework needed. On CPU always; on CUDA too when
// the library was built with VGOPS_WITH_CUDA and a GPU is present.
#include <ATen/ATen.h>
#include <vgops/vgops.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

int g_checks = 0;
int g_failures = 0;

void expect(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) ++g_failures;
  std::printf("[%s] %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

// Values of `got` (any floating dtype) against `want`, within atol.
void expect_close(const at::Tensor& got, const std::vector<double>& want, double atol, const std::string& what) {
  at::Tensor g = got.to(at::kDouble).cpu().contiguous().reshape({-1});
  bool ok = g.numel() == static_cast<int64_t>(want.size());
  std::string detail = " got [";
  for (int64_t i = 0; i < g.numel(); ++i) {
    const double v = g[i].item<double>();
    detail += (i ? ", " : "") + std::to_string(v);
    if (ok && !(std::fabs(v - want[i]) <= atol)) ok = false;
  }
  detail += "]";
  expect(ok, what + detail);
}

void expect_indices(const at::Tensor& got_in, const std::vector<int64_t>& want, const std::string& what) {
  at::Tensor got = got_in.cpu();
  bool ok = got.scalar_type() == at::kLong && got.dim() == 1 && got.numel() == static_cast<int64_t>(want.size());
  std::string detail = " got [";
  for (int64_t i = 0; i < got.numel(); ++i) {
    const int64_t v = got[i].item<int64_t>();
    detail += (i ? ", " : "") + std::to_string(v);
    if (ok && v != want[i]) ok = false;
  }
  detail += "]";
  expect(ok, what + detail);
}

at::Tensor segs(const std::vector<double>& flat, at::ScalarType dtype, std::vector<int64_t> shape,
                at::Device dev) {
  return at::tensor(flat, at::TensorOptions().dtype(at::kDouble)).reshape(shape).to(dev, dtype);
}

std::string tag(at::ScalarType dtype, at::Device dev) {
  return std::string(" [") + c10::toString(dtype) + ", " + dev.str() + "]";
}

void test_temporal_iou(at::ScalarType dtype, double atol, at::Device dev) {
  const std::string t = tag(dtype, dev);
  // a: [0,2], [5,6]; b: [1,3], [0,2], [5.5,7]
  // [0,2]-[1,3]: inter 1, union 3 -> 1/3;  [0,2]-[0,2] -> 1;  [0,2]-[5.5,7]: disjoint -> 0
  // [5,6]-[1,3] -> 0;  [5,6]-[0,2] -> 0;  [5,6]-[5.5,7]: inter 0.5, union 2 -> 0.25
  at::Tensor a = segs({0, 2, 5, 6}, dtype, {1, 2, 2}, dev);
  at::Tensor b = segs({1, 3, 0, 2, 5.5, 7}, dtype, {1, 3, 2}, dev);
  at::Tensor iou = vgops::temporal_iou(a, b);
  expect(iou.sizes() == at::IntArrayRef({1, 2, 3}) && iou.scalar_type() == dtype && iou.device() == dev,
         "temporal_iou pairwise: shape [1, 2, 3], input dtype and device" + t);
  expect_close(iou, {1.0 / 3, 1, 0, 0, 0, 0.25}, atol, "temporal_iou pairwise values" + t);

  // aligned: [0,2]-[1,3] -> 1/3, [5,6]-[5.5,7] -> 0.25
  at::Tensor b2 = segs({1, 3, 5.5, 7}, dtype, {1, 2, 2}, dev);
  at::Tensor al = vgops::temporal_iou(a, b2, /*aligned=*/true);
  expect(al.sizes() == at::IntArrayRef({1, 2}), "temporal_iou aligned: shape [1, 2]" + t);
  expect_close(al, {1.0 / 3, 0.25}, atol, "temporal_iou aligned values" + t);

  // zero-length segments: union 0 -> IoU 0 (not NaN); touching segments: inter 0 -> 0
  at::Tensor z = vgops::temporal_iou(segs({4, 4, 0, 1}, dtype, {1, 2, 2}, dev),
                                     segs({4, 4, 1, 2}, dtype, {1, 2, 2}, dev), true);
  expect_close(z, {0, 0}, 0.0, "temporal_iou zero-length and touching segments -> 0" + t);
}

void test_temporal_iou_edges(at::Device dev) {
  const std::string t = tag(at::kFloat, dev);
  const auto opt = at::TensorOptions().device(dev);
  at::Tensor e = vgops::temporal_iou(at::empty({2, 0, 2}, opt), at::empty({2, 5, 2}, opt));
  expect(e.sizes() == at::IntArrayRef({2, 0, 5}), "temporal_iou empty input -> shape [2, 0, 5]" + t);
  bool threw = false;
  try {
    vgops::temporal_iou(at::zeros({1, 2, 3}, opt), at::zeros({1, 2, 2}, opt));
  } catch (const c10::Error&) {
    threw = true;
  }
  expect(threw, "temporal_iou rejects a [1, 2, 3] input with c10::Error" + t);
}

void test_temporal_nms(at::ScalarType dtype, at::Device dev) {
  const std::string t = tag(dtype, dev);
  // 0:[0,10] s.9   1:[1,11] s.8   2:[20,30] s.7   3:[0,5] s.95, threshold 0.5
  // rank 3,0,1,2: keep 3; IoU(0,3) = 5/10 = 0.5 is not > 0.5 -> keep 0;
  // IoU(1,0) = 9/11 > 0.5 -> drop 1; 2 overlaps nothing -> keep 2.  => [3, 0, 2]
  at::Tensor s = segs({0, 10, 1, 11, 20, 30, 0, 5}, dtype, {4, 2}, dev);
  at::Tensor sc = at::tensor(std::vector<double>{0.9, 0.8, 0.7, 0.95}).to(dev, dtype);
  expect_indices(vgops::temporal_nms(s, sc, 0.5), {3, 0, 2}, "temporal_nms keeps [3, 0, 2]" + t);
  // groups {0, 3} and {1, 2}: 1 is no longer suppressed by 0 => [3, 0, 1, 2]
  at::Tensor idxs = at::tensor(std::vector<int64_t>{0, 1, 1, 0}).to(dev);
  expect_indices(vgops::batched_temporal_nms(s, sc, idxs, 0.5), {3, 0, 1, 2},
                 "batched_temporal_nms keeps [3, 0, 1, 2]" + t);
  // threshold 0.4: IoU(0,3) = 0.5 > 0.4 -> drop 0; IoU(1,3) = 4 / (10 + 5 - 4) = 4/11 <= 0.4 and
  // 0 is gone -> keep 1; keep 2.  => [3, 1, 2]
  expect_indices(vgops::temporal_nms(s, sc, 0.4), {3, 1, 2}, "temporal_nms threshold 0.4 keeps [3, 1, 2]" + t);
  const auto opt = at::TensorOptions().dtype(dtype).device(dev);
  expect_indices(vgops::temporal_nms(at::empty({0, 2}, opt), at::empty({0}, opt), 0.5), {},
                 "temporal_nms empty input -> []" + t);
}

void run_all(at::Device dev) {
  test_temporal_iou(at::kFloat, 1e-6, dev);
  test_temporal_iou(at::kDouble, 1e-12, dev);
  test_temporal_iou_edges(dev);
  test_temporal_nms(at::kFloat, dev);
  test_temporal_nms(at::kDouble, dev);
}

}  // namespace

int main() {
  try {
    run_all(at::kCPU);
#ifdef VGOPS_WITH_CUDA
    if (at::hasCUDA()) {
      run_all(at::Device(at::kCUDA, 0));
    } else {
      std::printf("[skip] CUDA checks: built with CUDA kernels but no GPU is present\n");
    }
#endif
  } catch (const std::exception& e) {
    std::printf("[FAIL] unexpected exception: %s\n", e.what());
    return 1;
  }
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
