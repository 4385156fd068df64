// Inference ray marching on the CPU: from each ray's current step, find its next K steps whose midpoint lies in
// an occupied cell of the occupancy grid, skipping empty coarse cells in one jump.
// Built on first use by nerfstage.nerf.march_cpu (torch.utils.cpp_extension.load_inline); the pure-torch
// marcher in nerf/inference.py defines the maths and the tests compare the two.
//
// Steps live in the warped coordinate s of nerf/sampler.py (StepWarp): step k of a ray spans [s, s + 1] with
// t = s * step below t_switch and t = t_switch * exp(cone * (s - s_switch)) beyond it. A step is taken while its
// midpoint is before s_end, and kept when the fine cell of its midpoint is occupied (single cascade: the cell
// arithmetic of OccupancyGrid.lookup_cell_units; several cascades: OccupancyGrid.cell_index). When the coarse
// (pooled, dilated) cell of a midpoint is empty, the ray jumps to that coarse cell's exit: the dilation makes
// every fine cell within one coarse cell of it empty too, so landing a little past the exit skips nothing.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>

namespace {

struct Grid {
  const bool* occupied;  // [L * R^3]
  const bool* coarse;    // [L * Rc^3]
  float center[3], half[3];
  int64_t res, factor, coarse_res, cascades;
};

struct Warp {
  float step, cone, t_switch, s_switch;
  float t_of_s(float s) const {
    if (cone <= 0.f || s < s_switch) return s * step;
    return t_switch * std::exp(cone * (s - s_switch));
  }
  float s_of_t(float t) const {
    if (cone <= 0.f || t <= t_switch) return t / step;
    return t_switch / step + std::log(t / t_switch) / cone;
  }
};

// Cascade of a point and its position in that cascade's cell units (cells of the fine grid); false if outside.
inline bool cell_units(const Grid& g, const float* p, int64_t& level, float* u) {
  float local[3];
  float extent = 0.f;
  for (int d = 0; d < 3; ++d) {
    local[d] = (p[d] - g.center[d]) / g.half[d];
    extent = std::max(extent, std::fabs(local[d]));
  }
  level = 0;
  if (g.cascades > 1) {
    level = (int64_t)std::ceil(std::log2(std::max(extent, 1e-12f)));
    level = std::min<int64_t>(std::max<int64_t>(level, 0), g.cascades - 1);
    const float scale = std::ldexp(1.f, -(int)level);
    extent *= scale;
    for (int d = 0; d < 3; ++d) local[d] *= scale;
  }
  for (int d = 0; d < 3; ++d) u[d] = (local[d] + 1.f) * (0.5f * (float)g.res);
  return extent <= 1.f;
}

inline int64_t flat_index(const float* u, int64_t res, float inv_factor) {
  int64_t ijk[3];
  for (int d = 0; d < 3; ++d) {
    const int64_t i = (int64_t)std::floor(u[d] * inv_factor);
    ijk[d] = std::min<int64_t>(std::max<int64_t>(i, 0), res - 1);
  }
  return (ijk[0] * res + ijk[1]) * res + ijk[2];
}

// Distance along the ray at which it leaves the coarse cell holding cell-unit position u of cascade `level`.
inline float coarse_exit(const Grid& g, const float* u, int64_t level, const float* o, const float* dir) {
  const float cascade = std::ldexp(1.f, (int)level);
  float t_exit = INFINITY;
  for (int d = 0; d < 3; ++d) {
    if (std::fabs(dir[d]) < 1e-12f) continue;
    const float c = std::floor(u[d] / (float)g.factor) + (dir[d] > 0.f ? 1.f : 0.f);  // coarse boundary index
    const float lo = g.center[d] - g.half[d] * cascade;
    const float bound = lo + c * (float)g.factor * 2.f * g.half[d] * cascade / (float)g.res;
    t_exit = std::min(t_exit, (bound - o[d]) / dir[d]);
  }
  return t_exit;
}

struct Ray {
  const float* o;
  const float* d;
  float a[3], b[3];  // single cascade: the ray in cell units, as OccupancyGrid.to_cell_units
};

// Whether step midpoint t is occupied; sets `skip_to` (a distance) when its coarse cell is empty.
inline bool occupied_at(const Grid& g, const Ray& r, float t, float& skip_to) {
  float u[3];
  int64_t level = 0;
  bool inside = true;
  if (g.cascades == 1) {
    for (int d = 0; d < 3; ++d) u[d] = r.a[d] + r.b[d] * t;
  } else {
    float p[3];
    for (int d = 0; d < 3; ++d) p[d] = r.o[d] + r.d[d] * t;
    inside = cell_units(g, p, level, u);
  }
  if (!inside) return false;
  if (g.factor > 1) {
    const int64_t c = flat_index(u, g.coarse_res, 1.f / (float)g.factor);
    if (!g.coarse[level * g.coarse_res * g.coarse_res * g.coarse_res + c]) {
      skip_to = coarse_exit(g, u, level, r.o, r.d);
      return false;
    }
  }
  return g.occupied[level * g.res * g.res * g.res + flat_index(u, g.res, 1.f)];
}

}  // namespace

// For each ray i: from step start s[i], the next (at most) k occupied steps before s_end[i].
// Returns t_starts [n, k], t_ends [n, k], count [n] (int32) and the next step start [n].
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> march_next(
    torch::Tensor origins, torch::Tensor directions, torch::Tensor s, torch::Tensor s_end,
    torch::Tensor occupied, torch::Tensor coarse, torch::Tensor center, torch::Tensor half,
    int64_t res, int64_t factor, double step, double cone, double t_switch, int64_t k) {
  TORCH_CHECK(origins.dtype() == torch::kFloat32 && directions.dtype() == torch::kFloat32, "float32 rays");
  origins = origins.contiguous(); directions = directions.contiguous();
  s = s.contiguous(); s_end = s_end.contiguous();
  occupied = occupied.contiguous(); coarse = coarse.contiguous();
  const int64_t n = origins.size(0);
  Grid g;
  g.occupied = occupied.data_ptr<bool>();
  g.coarse = coarse.data_ptr<bool>();
  auto c = center.contiguous(), h = half.contiguous();
  for (int d = 0; d < 3; ++d) { g.center[d] = c.data_ptr<float>()[d]; g.half[d] = h.data_ptr<float>()[d]; }
  g.res = res; g.factor = std::max<int64_t>(factor, 1); g.coarse_res = (res + g.factor - 1) / g.factor;
  g.cascades = occupied.numel() / (res * res * res);
  Warp w{(float)step, (float)cone, (float)t_switch, (float)(t_switch / step)};
  auto opts = origins.options();
  auto t0 = torch::zeros({n, k}, opts), t1 = torch::zeros({n, k}, opts);
  auto count = torch::zeros({n}, opts.dtype(torch::kInt32));
  auto s_next = torch::empty({n}, opts);
  const float* O = origins.data_ptr<float>(); const float* D = directions.data_ptr<float>();
  const float* S = s.data_ptr<float>(); const float* E = s_end.data_ptr<float>();
  float* T0 = t0.data_ptr<float>(); float* T1 = t1.data_ptr<float>();
  int32_t* C = count.data_ptr<int32_t>(); float* SN = s_next.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Ray r;
      r.o = O + 3 * i; r.d = D + 3 * i;
      for (int d = 0; d < 3; ++d) {  // (o - (center - half)) * (res / (2 half)), as to_cell_units
        const float inv_cell = (float)res / (2.f * g.half[d]);
        r.a[d] = (r.o[d] - (g.center[d] - g.half[d])) * inv_cell;
        r.b[d] = r.d[d] * inv_cell;
      }
      float si = S[i];
      int32_t found = 0;
      while (found < k && si + 0.5f < E[i]) {
        float skip_to = -1.f;
        if (occupied_at(g, r, w.t_of_s(si + 0.5f), skip_to)) {
          T0[i * k + found] = w.t_of_s(si);
          T1[i * k + found] = w.t_of_s(si + 1.f);
          ++found;
          si += 1.f;
        } else if (skip_to > 0.f) {  // first step whose midpoint is past the coarse cell's exit
          const float steps = std::ceil(w.s_of_t(skip_to) - 0.5f - si);
          si += std::max(1.f, steps);
        } else {
          si += 1.f;
        }
      }
      C[i] = found;
      SN[i] = si;
    }
  });
  return {t0, t1, count, s_next};
}
