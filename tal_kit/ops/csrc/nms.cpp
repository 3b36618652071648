// Python bindings of the NMS extension: checks the tensors, then runs the CPU kernels (nms_cpu.cpp) or orchestrates
// the CUDA kernels (nms_cuda.cu; compiled in when TAL_KIT_WITH_CUDA is defined).
// ATen + torch's pybind11 glue instead of <torch/extension.h>: the same bindings at half the compile time.
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <vector>

#include "nms.h"
#include "nms_cpu.h"

#ifdef TAL_KIT_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "nms_cuda.h"
#endif

namespace {

using at::Tensor;
using tal_nms::Settings;

void check_inputs(const Tensor& segs, const Tensor& scores, const Tensor& labels, const Tensor& offsets) {
  TORCH_CHECK(segs.dim() == 2 && segs.size(1) == 2, "segments must be [N, 2]");
  TORCH_CHECK(segs.scalar_type() == at::kFloat && scores.scalar_type() == at::kFloat,
              "segments and scores must be float32");
  TORCH_CHECK(labels.scalar_type() == at::kLong && offsets.scalar_type() == at::kLong,
              "labels and video_offsets must be int64");
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == segs.size(0), "scores must be [N]");
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == segs.size(0), "labels must be [N]");
  TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) >= 1, "video_offsets must be [V + 1]");
  TORCH_CHECK(segs.is_contiguous() && scores.is_contiguous() && labels.is_contiguous() && offsets.is_contiguous(),
              "inputs must be contiguous");
  TORCH_CHECK(scores.device() == segs.device() && labels.device() == segs.device() &&
                  offsets.device() == segs.device(),
              "inputs must be on one device");
}

std::vector<Tensor> nms_packed_cpu(const Tensor& segs, const Tensor& scores, const Tensor& labels,
                                   const Tensor& offsets, const Settings& s, int64_t num_threads) {
  const int64_t num_videos = offsets.size(0) - 1;
  const int64_t* video_offsets = offsets.data_ptr<int64_t>();
  std::vector<int64_t> out_offsets(num_videos + 1, 0);
  for (int64_t v = 0; v < num_videos; ++v) {
    out_offsets[v + 1] = out_offsets[v] + tal_nms::output_capacity(video_offsets[v + 1] - video_offsets[v], s);
  }
  const int64_t capacity = out_offsets[num_videos];
  Tensor rows = at::empty({capacity}, labels.options());
  Tensor kept_scores = at::empty({capacity}, scores.options());
  Tensor kept_segs = at::empty({capacity, 2}, segs.options());
  Tensor counts = at::zeros({num_videos}, labels.options());
  {
    pybind11::gil_scoped_release no_gil;
    tal_nms::nms_videos_cpu(segs.data_ptr<float>(), scores.data_ptr<float>(), labels.data_ptr<int64_t>(),
                            video_offsets, num_videos, s, out_offsets.data(), rows.data_ptr<int64_t>(),
                            kept_scores.data_ptr<float>(), kept_segs.data_ptr<float>(), counts.data_ptr<int64_t>(),
                            static_cast<int>(num_threads));
  }
  // Close the gaps between videos' reserved output rows.
  const int64_t* count = counts.data_ptr<int64_t>();
  int64_t* row_ptr = rows.data_ptr<int64_t>();
  float* score_ptr = kept_scores.data_ptr<float>();
  float* seg_ptr = kept_segs.data_ptr<float>();
  int64_t total = 0;
  for (int64_t v = 0; v < num_videos; ++v) {
    for (int64_t k = 0; k < count[v]; ++k, ++total) {
      const int64_t from = out_offsets[v] + k;
      row_ptr[total] = row_ptr[from];
      score_ptr[total] = score_ptr[from];
      seg_ptr[2 * total] = seg_ptr[2 * from];
      seg_ptr[2 * total + 1] = seg_ptr[2 * from + 1];
    }
  }
  return {rows.slice(0, 0, total).clone(), kept_scores.slice(0, 0, total).clone(),
          kept_segs.slice(0, 0, total).clone(), counts};
}

#ifdef TAL_KIT_WITH_CUDA
// Stable sort of `order` by key[order] (ascending, or descending), keeping earlier positions first among equals.
Tensor stable_reorder(const Tensor& order, const Tensor& key, bool descending) {
  return order.index_select(0, std::get<1>(key.index_select(0, order).sort(/*stable=*/true, 0, descending)));
}

std::vector<Tensor> nms_packed_cuda(const Tensor& segs, const Tensor& scores, const Tensor& labels,
                                    const Tensor& offsets, const Settings& s) {
  const c10::cuda::CUDAGuard guard(segs.device());
  const int64_t num = segs.size(0), num_videos = offsets.size(0) - 1;
  const auto long_opts = labels.options();
  Tensor video_of_row = at::repeat_interleave(at::arange(num_videos, long_opts), offsets.diff(), 0, num);
  if (num == 0) {
    return {at::empty({0}, long_opts), at::empty({0}, scores.options()), at::empty({0, 2}, segs.options()),
            at::zeros({num_videos}, long_opts)};
  }

  // Row order: video, then class (multiclass), then score (hard NMS) / input order (soft-NMS).
  Tensor order = at::arange(num, long_opts);
  if (s.method != tal_nms::kSoft) order = stable_reorder(order, scores, /*descending=*/true);
  if (s.multiclass && s.method != tal_nms::kNone) order = stable_reorder(order, labels, false);
  order = stable_reorder(order, video_of_row, false);

  Tensor rows, kept_scores;
  if (s.method == tal_nms::kNone) {
    rows = order;
    kept_scores = scores.index_select(0, rows);
  } else {
    // Groups: runs of equal (video, class) in `order`.
    Tensor group_video = video_of_row.index_select(0, order);
    Tensor is_start = at::ones({num}, segs.options().dtype(at::kBool));
    if (num > 1) {
      Tensor change = group_video.slice(0, 1).ne(group_video.slice(0, 0, num - 1));
      if (s.multiclass) {
        Tensor group_label = labels.index_select(0, order);
        change = change.logical_or(group_label.slice(0, 1).ne(group_label.slice(0, 0, num - 1)));
      }
      is_start.slice(0, 1).copy_(change);
    }
    Tensor starts = is_start.nonzero().squeeze(1);
    const int64_t num_groups = starts.size(0);
    Tensor group_offsets = at::cat({starts, at::full({1}, num, long_opts)});
    Tensor sizes = group_offsets.diff();
    Tensor capacity = s.cap > 0 ? sizes.clamp_max(s.cap) : sizes;
    Tensor out_offsets = at::cat({at::zeros({1}, long_opts), capacity.cumsum(0)});
    const int64_t total_capacity = out_offsets[num_groups].item<int64_t>();

    Tensor work_f = at::empty({4, num}, scores.options());
    Tensor work_row = at::empty({num}, long_opts);
    Tensor work_i = at::empty({2, num}, long_opts.dtype(at::kInt));
    tal_nms::GroupBuffers buffers{work_f[0].data_ptr<float>(), work_f[1].data_ptr<float>(),
                                  work_f[2].data_ptr<float>(), work_f[3].data_ptr<float>(),
                                  work_row.data_ptr<int64_t>(), work_i[0].data_ptr<int>(), work_i[1].data_ptr<int>()};
    Tensor group_rows = at::empty({total_capacity}, long_opts);
    Tensor group_scores = at::empty({total_capacity}, scores.options());
    Tensor group_counts = at::empty({num_groups}, long_opts);
    auto stream = c10::cuda::getCurrentCUDAStream();
    cudaError_t err = tal_nms::launch_group_nms(
        segs.data_ptr<float>(), scores.data_ptr<float>(), order.data_ptr<int64_t>(), group_offsets.data_ptr<int64_t>(),
        out_offsets.data_ptr<int64_t>(), num_groups, s, buffers, group_rows.data_ptr<int64_t>(),
        group_scores.data_ptr<float>(), group_counts.data_ptr<int64_t>(), stream.stream());
    TORCH_CHECK(err == cudaSuccess, "NMS CUDA kernel launch failed: ", cudaGetErrorString(err));

    // Gather the picks, group after group (video, class ascending, pick order).
    Tensor slot_rank = at::arange(total_capacity, long_opts) -
                       at::repeat_interleave(out_offsets.slice(0, 0, num_groups), capacity, 0, total_capacity);
    Tensor valid = slot_rank.lt(at::repeat_interleave(group_counts, capacity, 0, total_capacity));
    rows = group_rows.masked_select(valid);
    kept_scores = group_scores.masked_select(valid);
  }

  // Final merge per video: stable descending sort by score, then truncation to max_seg_num.
  Tensor pick_video = video_of_row.index_select(0, rows);
  Tensor final_order = stable_reorder(at::arange(rows.size(0), long_opts), kept_scores, true);
  final_order = stable_reorder(final_order, pick_video, false);
  rows = rows.index_select(0, final_order);
  kept_scores = kept_scores.index_select(0, final_order);
  pick_video = pick_video.index_select(0, final_order);
  if (s.cap > 0 && s.method != tal_nms::kNone) {
    Tensor per_video = at::bincount(pick_video, {}, num_videos);
    Tensor first = per_video.cumsum(0) - per_video;
    Tensor rank = at::arange(rows.size(0), long_opts) - first.index_select(0, pick_video);
    Tensor keep = rank.lt(s.cap);
    rows = rows.masked_select(keep);
    kept_scores = kept_scores.masked_select(keep);
    pick_video = pick_video.masked_select(keep);
  }
  Tensor counts = at::bincount(pick_video, {}, num_videos);
  Tensor kept_segs;
  if (s.voting_thresh > 0.f && s.method != tal_nms::kNone && !s.multiclass) {
    kept_segs = at::empty({rows.size(0), 2}, segs.options());
    cudaError_t err = tal_nms::launch_voting(segs.data_ptr<float>(), scores.data_ptr<float>(),
                                             offsets.data_ptr<int64_t>(), rows.data_ptr<int64_t>(),
                                             pick_video.data_ptr<int64_t>(), rows.size(0), s,
                                             kept_segs.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == cudaSuccess, "NMS CUDA voting kernel launch failed: ", cudaGetErrorString(err));
  } else {
    kept_segs = segs.index_select(0, rows);
  }
  return {rows, kept_scores, kept_segs, counts};
}
#endif

std::vector<Tensor> nms_packed(Tensor segs, Tensor scores, Tensor labels, Tensor video_offsets, int64_t method,
                               int64_t soft_kind, double iou_threshold, double sigma, double min_score, int64_t cap,
                               bool multiclass, double voting_thresh, int64_t voting_weight, int64_t num_threads) {
  check_inputs(segs, scores, labels, video_offsets);
  TORCH_CHECK(method >= 0 && method <= 2 && soft_kind >= 0 && soft_kind <= 1 && voting_weight >= 0 &&
                  voting_weight <= 1,
              "unknown NMS method, soft kind or voting weight code");
  const Settings s{static_cast<int>(method), static_cast<int>(soft_kind), static_cast<float>(iou_threshold),
                   static_cast<float>(sigma), static_cast<float>(min_score), cap, multiclass,
                   static_cast<float>(voting_thresh), static_cast<int>(voting_weight)};
  if (segs.is_cuda()) {
#ifdef TAL_KIT_WITH_CUDA
    return nms_packed_cuda(segs, scores, labels, video_offsets, s);
#else
    TORCH_CHECK(false, "this build of the tal_kit NMS extension has no CUDA kernels");
#endif
  }
  return nms_packed_cpu(segs, scores, labels, video_offsets, s, num_threads);
}

bool has_cuda() {
#ifdef TAL_KIT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "tal_kit 1-D NMS kernels (see tal_kit/ops/nms.py for the Python API)";
  m.def("nms_packed", &nms_packed, "NMS over videos packed end to end: returns (rows, scores, segments, counts)",
        py::arg("segments"), py::arg("scores"), py::arg("labels"), py::arg("video_offsets"), py::arg("method"),
        py::arg("soft_kind"), py::arg("iou_threshold"), py::arg("sigma"), py::arg("min_score"), py::arg("cap"),
        py::arg("multiclass"), py::arg("voting_thresh"), py::arg("voting_weight"), py::arg("num_threads"));
  m.def("has_cuda", &has_cuda, "whether the CUDA kernels are compiled in");
}
