// CPU kernels: videos in parallel (each thread takes the next video); within a video, one NMS run per class (or one
// class-agnostic run). Plain C++ on raw pointers (no torch headers): nms.cpp owns the tensors.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "nms.h"
#include "nms_cpu.h"

namespace tal_nms {
namespace {

struct Pick {
  int64_t row;   // row in the packed input
  float score;   // score when picked (decayed by earlier picks in soft-NMS)
};

// Working copy of one group of candidates, in the order the algorithm sees them.
struct Group {
  std::vector<float> x1, x2, area, score;
  std::vector<int64_t> row;

  void load(const float* segs, const float* scores, const int64_t* rows, int64_t n) {
    x1.resize(n), x2.resize(n), area.resize(n), score.resize(n), row.resize(n);
    for (int64_t k = 0; k < n; ++k) {
      int64_t r = rows[k];
      x1[k] = segs[2 * r];
      x2[k] = segs[2 * r + 1];
      area[k] = (x2[k] - x1[k]) + kIouEps;
      score[k] = scores[r];
      row[k] = r;
    }
  }

  void move(int64_t to, int64_t from) {
    x1[to] = x1[from], x2[to] = x2[from], area[to] = area[from], score[to] = score[from], row[to] = row[from];
  }

  void swap(int64_t a, int64_t b) {
    std::swap(x1[a], x1[b]), std::swap(x2[a], x2[b]), std::swap(area[a], area[b]);
    std::swap(score[a], score[b]), std::swap(row[a], row[b]);
  }
};

// Selection-sort soft-NMS (SPEC §E.4), stopping after `cap` picks (later steps cannot change earlier picks).
// The arg-max of step i+1 is found during the decay pass of step i: survivors are examined in increasing position,
// at the position they keep, so the first maximum seen is the one the next step's strict '<' scan would find.
void soft_nms(Group& g, const Settings& s, int64_t cap, std::vector<Pick>& picks) {
  int64_t n = static_cast<int64_t>(g.score.size());
  int64_t picked = 0;
  int64_t best = 0;
  for (int64_t p = 1; p < n; ++p) {
    if (g.score[best] < g.score[p]) best = p;  // strict: ties stay with the earliest position
  }
  for (int64_t i = 0; i < n && picked < cap; ++i) {
    g.swap(i, best);
    picks.push_back({g.row[i], g.score[i]});
    if (++picked == cap) break;
    const float ix1 = g.x1[i], ix2 = g.x2[i], iarea = g.area[i];
    best = i + 1;
    for (int64_t p = i + 1; p < n;) {
      g.score[p] *= decay_weight(nms_iou(ix1, ix2, iarea, g.x1[p], g.x2[p], g.area[p]), s);
      if (g.score[p] < s.min_score) {
        g.move(p, --n);  // drop: the last candidate takes the slot and is examined next
      } else {
        if (g.score[best] < g.score[p]) best = p;
        ++p;
      }
    }
  }
}

// Greedy NMS (SPEC §E.3) on a stable descending sort of the scores, scores > min_score when min_score > 0.
void hard_nms(Group& g, const Settings& s, int64_t cap, std::vector<int64_t>& order, std::vector<char>& alive,
              std::vector<Pick>& picks) {
  const int64_t n = static_cast<int64_t>(g.score.size());
  order.clear();
  for (int64_t k = 0; k < n; ++k) {
    if (!(s.min_score > 0.f) || g.score[k] > s.min_score) order.push_back(k);
  }
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return g.score[a] > g.score[b]; });
  const int64_t m = static_cast<int64_t>(order.size());
  alive.assign(m, 1);
  int64_t picked = 0;
  for (int64_t a = 0; a < m && picked < cap; ++a) {
    if (!alive[a]) continue;
    const int64_t i = order[a];
    picks.push_back({g.row[i], g.score[i]});
    ++picked;
    for (int64_t b = a + 1; b < m; ++b) {
      const int64_t j = order[b];
      if (alive[b] && nms_iou(g.x1[i], g.x2[i], g.area[i], g.x1[j], g.x2[j], g.area[j]) >= s.iou_threshold) {
        alive[b] = 0;
      }
    }
  }
}

// Segment voting: weighted mean of the video's candidates with voting IoU >= voting_thresh (float64 sums).
void vote(const float* segs, const float* scores, int64_t begin, int64_t end, const Settings& s, float start_in,
          float end_in, float* out) {
  double sum_w = 0.0, sum_start = 0.0, sum_end = 0.0;
  for (int64_t j = begin; j < end; ++j) {
    const float sj = segs[2 * j], ej = segs[2 * j + 1];
    const float iou = voting_iou(start_in, end_in, sj, ej);
    if (iou >= s.voting_thresh) {
      double w = static_cast<double>(scores[j]);
      if (s.voting_weight == kScoreIou) w *= static_cast<double>(iou);
      sum_w += w;
      sum_start += w * static_cast<double>(sj);
      sum_end += w * static_cast<double>(ej);
    }
  }
  if (sum_w > 0.0) {
    out[0] = static_cast<float>(sum_start / sum_w);
    out[1] = static_cast<float>(sum_end / sum_w);
  } else {
    out[0] = start_in, out[1] = end_in;
  }
}

struct Scratch {
  Group group;
  std::vector<int64_t> rows, order;
  std::vector<char> alive;
  std::vector<Pick> picks;
  std::vector<int64_t> final_order;
};

// One video: rows [begin, end) of the packed input. Writes at most output_capacity() detections; returns the count.
int64_t nms_one_video(const float* segs, const float* scores, const int64_t* labels, int64_t begin, int64_t end,
                      const Settings& s, Scratch& w, int64_t* out_row, float* out_score, float* out_seg) {
  const int64_t n = end - begin;
  if (n <= 0) return 0;
  const int64_t cap = s.cap > 0 ? s.cap : n;
  w.rows.resize(n);
  for (int64_t k = 0; k < n; ++k) w.rows[k] = begin + k;
  w.picks.clear();

  if (s.method == kNone) {
    for (int64_t r : w.rows) w.picks.push_back({r, scores[r]});
  } else {
    if (s.multiclass) {  // classes ascending, each in input order
      std::stable_sort(w.rows.begin(), w.rows.end(), [&](int64_t a, int64_t b) { return labels[a] < labels[b]; });
    }
    for (int64_t first = 0; first < n;) {
      int64_t last = first + 1;
      if (s.multiclass) {
        while (last < n && labels[w.rows[last]] == labels[w.rows[first]]) ++last;
      } else {
        last = n;
      }
      w.group.load(segs, scores, w.rows.data() + first, last - first);
      if (s.method == kSoft) {
        soft_nms(w.group, s, cap, w.picks);
      } else {
        hard_nms(w.group, s, cap, w.order, w.alive, w.picks);
      }
      first = last;
    }
  }

  // Final merge: stable descending sort by score (ties: lower class, then pick order), truncated to the cap.
  const int64_t num_picks = static_cast<int64_t>(w.picks.size());
  w.final_order.resize(num_picks);
  for (int64_t k = 0; k < num_picks; ++k) w.final_order[k] = k;
  std::stable_sort(w.final_order.begin(), w.final_order.end(),
                   [&](int64_t a, int64_t b) { return w.picks[a].score > w.picks[b].score; });
  const int64_t count = s.method == kNone ? num_picks : std::min(num_picks, cap);
  for (int64_t k = 0; k < count; ++k) {
    const Pick& pick = w.picks[w.final_order[k]];
    out_row[k] = pick.row;
    out_score[k] = pick.score;
    const float start = segs[2 * pick.row], stop = segs[2 * pick.row + 1];
    if (s.voting_thresh > 0.f && s.method != kNone && !s.multiclass) {
      vote(segs, scores, begin, end, s, start, stop, out_seg + 2 * k);
    } else {
      out_seg[2 * k] = start, out_seg[2 * k + 1] = stop;
    }
  }
  return count;
}

}  // namespace

int64_t output_capacity(int64_t num_candidates, const Settings& s) {
  if (s.method == kNone || s.cap <= 0) return num_candidates;
  return std::min(num_candidates, s.cap);
}

// Plain threads pulling videos from a shared counter rather than an OpenMP team: idle threads sleep in join()
// instead of spin-waiting at a barrier, which on a busy (oversubscribed) machine made OpenMP slower than one thread.
void nms_videos_cpu(const float* segs, const float* scores, const int64_t* labels, const int64_t* video_offsets,
                    int64_t num_videos, const Settings& s, const int64_t* out_offsets, int64_t* out_row,
                    float* out_score, float* out_seg, int64_t* out_count, int num_threads) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(num_threads, num_videos));
  std::atomic<int64_t> next_video{0};
  std::exception_ptr failure;
  std::mutex failure_lock;
  auto work = [&]() {
    try {
      Scratch scratch;
      for (int64_t v = next_video++; v < num_videos; v = next_video++) {
        const int64_t o = out_offsets[v];
        out_count[v] = nms_one_video(segs, scores, labels, video_offsets[v], video_offsets[v + 1], s, scratch,
                                     out_row + o, out_score + o, out_seg + 2 * o);
      }
    } catch (...) {  // e.g. bad_alloc: hand it to the calling thread
      std::lock_guard<std::mutex> guard(failure_lock);
      if (!failure) failure = std::current_exception();
      next_video = num_videos;
    }
  };
  std::vector<std::thread> helpers;
  for (int64_t t = 1; t < workers; ++t) helpers.emplace_back(work);
  work();
  for (auto& helper : helpers) helper.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace tal_nms
