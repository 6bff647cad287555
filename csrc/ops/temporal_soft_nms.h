#pragma once
// Per-element math of temporal soft-NMS, shared by the CPU and CUDA kernels.
//
// Soft-NMS (Bodla et al., 2017) as mmcv's softnms_cpu and ActionFormer's 1-D softnms implement
// it: after a segment is selected, every remaining segment's score is multiplied by a weight of
// its IoU with the selected one, and a segment whose score falls below min_score is dropped.
// C is the compute type: float, or double when segments or scores are double.
#include <math.h>

#include "temporal_nms.h"

namespace vgops {
namespace soft_nms1d {

// Method codes (mmcv's): 0 hard, 1 linear, 2 gaussian.
enum Method : int { kHard = 0, kLinear = 1, kGaussian = 2 };

VGOPS_HOST_DEVICE inline float exp_(float x) { return expf(x); }
VGOPS_HOST_DEVICE inline double exp_(double x) { return exp(x); }

// Weight of a remaining segment whose IoU with the selected one is `iou`:
//   gaussian: exp(-iou^2 / sigma)                  (mmcv, ActionFormer; the Soft-NMS paper)
//   linear:   1 - iou where iou >= iou_threshold, else 1                 (mmcv, ActionFormer)
//   hard:     0 where iou > iou_threshold, else 1   (temporal_nms's strict rule; mmcv uses >=)
// exp(-0 / sigma) == 1 exactly, so the exp is skipped where the segments do not overlap.
template <typename C>
VGOPS_HOST_DEVICE inline C weight(int method, C iou, C iou_threshold, C sigma) {
  if (method == kGaussian) return iou > C(0) ? exp_(-(iou * iou) / sigma) : C(1);
  if (method == kLinear) return iou >= iou_threshold ? C(1) - iou : C(1);
  return iou > iou_threshold ? C(0) : C(1);
}

// Score of segment (s2, e2) after the selected segment (s1, e1) decays it.
template <typename C>
VGOPS_HOST_DEVICE inline C decayed(int method, C s1, C e1, C s2, C e2, C score, C iou_threshold, C sigma) {
  return score * weight<C>(method, iou1d::segment_iou<C>(s1, e1, s2, e2), iou_threshold, sigma);
}

// A remaining segment takes part while its (decayed) score is >= min_score.
template <typename C>
VGOPS_HOST_DEVICE inline bool survives(C score, C min_score) {
  return score >= min_score;
}

// Selection order: the highest current score, ties by lower index (nms1d's rank order).
template <typename C>
VGOPS_HOST_DEVICE inline bool selects_before(C score_i, long long i, C score_j, long long j) {
  return nms1d::ranks_before<C>(score_i, i, score_j, j);
}

}  // namespace soft_nms1d
}  // namespace vgops
