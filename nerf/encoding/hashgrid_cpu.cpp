// Hash-grid encoding on the CPU (float32, 3-D positions), with tiny-cuda-nn's semantics.
// Built on first use by nerfstage.nerf.encoding.cpp (torch.utils.cpp_extension.load_inline); the pure-torch
// reference in reference.py defines the maths and the tests compare the two (values and gradients).
//
// Parallelism: ATen's intra-op pool (torch.set_num_threads) with dynamic scheduling (threads take the next chunk
// from an atomic counter, so a thread the OS descheduled on a busy machine delays one chunk, not half the work).
// Forward and the position gradient split the points into chunks; the table gradient gives each thread whole
// levels (no atomics on the table, deterministic sums), finest levels first.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr uint32_t kPrimeY = 2654435761u;
constexpr uint32_t kPrimeZ = 805459861u;

struct Level {
  float scale;          // positions map to x * scale + 0.5 grid units
  uint32_t resolution;  // vertices per side
  uint32_t size;        // table entries
  bool hashed;          // spatial hash (size is a power of two) instead of dense row-major index
};

struct Cell {        // one point at one level
  uint32_t g[3];     // integer grid vertex below the point
  float f[3];        // fractional position inside the cell
};

inline Cell locate(const float* p, float scale) {
  Cell c;
  for (int d = 0; d < 3; ++d) {
    const float v = p[d] * scale + 0.5f;
    const float fl = std::floor(v);
    c.g[d] = static_cast<uint32_t>(static_cast<int32_t>(fl));
    c.f[d] = v - fl;
  }
  return c;
}

inline uint32_t row_of(const Cell& c, int k, const Level& lv) {
  const uint32_t x = c.g[0] + (k & 1), y = c.g[1] + ((k >> 1) & 1), z = c.g[2] + ((k >> 2) & 1);
  if (lv.hashed) return (x ^ (y * kPrimeY) ^ (z * kPrimeZ)) & (lv.size - 1u);
  return (x + y * lv.resolution + z * lv.resolution * lv.resolution) % lv.size;
}

inline float weight_of(const Cell& c, int k) {
  return ((k & 1) ? c.f[0] : 1.0f - c.f[0]) * (((k >> 1) & 1) ? c.f[1] : 1.0f - c.f[1]) *
         (((k >> 2) & 1) ? c.f[2] : 1.0f - c.f[2]);
}

std::vector<Level> make_levels(const std::vector<double>& scales, const std::vector<int64_t>& resolutions,
                               const std::vector<int64_t>& sizes, const std::vector<int64_t>& hashed) {
  std::vector<Level> levels(scales.size());
  for (size_t l = 0; l < levels.size(); ++l) {
    levels[l] = {static_cast<float>(scales[l]), static_cast<uint32_t>(resolutions[l]),
                 static_cast<uint32_t>(sizes[l]), hashed[l] != 0};
  }
  return levels;
}

// Runs fn(begin, end) over [0, n) in chunks of `chunk`, the threads taking chunks dynamically.
template <typename Fn>
void parallel_chunks(int64_t n, int64_t chunk, const Fn& fn) {
  const int64_t num_chunks = (n + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), num_chunks), 1, [&](int64_t, int64_t) {
    for (int64_t c = next++; c < num_chunks; c = next++) fn(c * chunk, std::min(n, (c + 1) * chunk));
  });
}

constexpr int64_t kChunk = 2048;  // points per chunk: one level's corners for a chunk stay in L1/L2

void check_inputs(const torch::Tensor& x, const std::vector<torch::Tensor>& tables, size_t n_levels, int64_t F) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.is_contiguous() && x.dim() == 2 &&
                  x.size(1) == 3,
              "hashgrid_cpu: positions must be a contiguous float32 CPU tensor [N, 3], got ", x.sizes());
  TORCH_CHECK(tables.size() == n_levels, "hashgrid_cpu: expected ", n_levels, " tables, got ", tables.size());
  for (const auto& t : tables) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous() && t.dim() == 2 &&
                    t.size(1) == F,
                "hashgrid_cpu: tables must be contiguous float32 CPU tensors [size, F]");
  }
}

template <int F>
void forward_kernel(const float* x, int64_t n, const std::vector<const float*>& tables,
                    const std::vector<Level>& levels, float* out) {
  const int64_t L = static_cast<int64_t>(levels.size()), D = L * F;
  parallel_chunks(n, kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t l = 0; l < L; ++l) {  // level-major inside a chunk: one table at a time stays in cache
      const Level lv = levels[l];
      const float* table = tables[l];
      for (int64_t i = begin; i < end; ++i) {
        const Cell c = locate(x + 3 * i, lv.scale);
        float acc[F] = {};
        for (int k = 0; k < 8; ++k) {
          const float w = weight_of(c, k);
          const float* v = table + static_cast<int64_t>(row_of(c, k, lv)) * F;
          for (int f = 0; f < F; ++f) acc[f] += w * v[f];
        }
        for (int f = 0; f < F; ++f) out[i * D + l * F + f] = acc[f];
      }
    }
  });
}

template <int F>
void table_grad_level(const float* x, int64_t n, const Level& lv, const float* grad_out, int64_t col, int64_t D,
                      float* grad) {
  std::fill(grad, grad + static_cast<int64_t>(lv.size) * F, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const Cell c = locate(x + 3 * i, lv.scale);
    const float* g = grad_out + i * D + col;
    for (int k = 0; k < 8; ++k) {
      const float w = weight_of(c, k);
      float* dst = grad + static_cast<int64_t>(row_of(c, k, lv)) * F;
      for (int f = 0; f < F; ++f) dst[f] += w * g[f];
    }
  }
}

template <int F>
void table_grad_kernel(const float* x, int64_t n, const std::vector<Level>& levels, const float* grad_out,
                       const std::vector<float*>& grads) {
  const int64_t L = static_cast<int64_t>(levels.size()), D = L * F;
  parallel_chunks(L, 1, [&](int64_t j, int64_t) {
    const int64_t l = L - 1 - j;  // finest (slowest) levels first balances the threads
    table_grad_level<F>(x, n, levels[l], grad_out, l * F, D, grads[l]);
  });
}

template <int F>
void position_grad_kernel(const float* x, int64_t n, const std::vector<const float*>& tables,
                          const std::vector<Level>& levels, const float* grad_out, float* grad_x) {
  const int64_t L = static_cast<int64_t>(levels.size()), D = L * F;
  parallel_chunks(n, kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float gx[3] = {0.0f, 0.0f, 0.0f};
      for (int64_t l = 0; l < L; ++l) {
        const Level& lv = levels[l];
        const Cell c = locate(x + 3 * i, lv.scale);
        const float* g = grad_out + i * D + l * F;
        for (int k = 0; k < 8; ++k) {
          const float* v = tables[l] + static_cast<int64_t>(row_of(c, k, lv)) * F;
          float s = 0.0f;  // dL/d(corner value) summed over features
          for (int f = 0; f < F; ++f) s += g[f] * v[f];
          for (int d = 0; d < 3; ++d) {  // d weight / d frac_d = +-(product of the other two axes' weights)
            float dw = ((k >> d) & 1) ? 1.0f : -1.0f;
            for (int e = 0; e < 3; ++e) {
              if (e != d) dw *= ((k >> e) & 1) ? c.f[e] : 1.0f - c.f[e];
            }
            gx[d] += lv.scale * dw * s;
          }
        }
      }
      for (int d = 0; d < 3; ++d) grad_x[3 * i + d] = gx[d];
    }
  });
}

template <typename Fn>
void dispatch_features(int64_t F, Fn&& fn) {
  switch (F) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 8: fn(std::integral_constant<int, 8>{}); break;
    default: TORCH_CHECK(false, "hashgrid_cpu: features per level must be 1, 2, 4 or 8, got ", F);
  }
}

std::vector<const float*> const_pointers(const std::vector<torch::Tensor>& tables) {
  std::vector<const float*> out;
  for (const auto& t : tables) out.push_back(t.data_ptr<float>());
  return out;
}

}  // namespace

torch::Tensor hashgrid_forward(torch::Tensor x, std::vector<torch::Tensor> tables, std::vector<double> scales,
                               std::vector<int64_t> resolutions, std::vector<int64_t> sizes,
                               std::vector<int64_t> hashed) {
  const auto levels = make_levels(scales, resolutions, sizes, hashed);
  const int64_t F = tables.empty() ? 0 : tables[0].size(1);
  check_inputs(x, tables, levels.size(), F);
  auto out = torch::empty({x.size(0), static_cast<int64_t>(levels.size()) * F}, x.options());
  const auto ptrs = const_pointers(tables);
  dispatch_features(F, [&](auto f) {
    forward_kernel<decltype(f)::value>(x.data_ptr<float>(), x.size(0), ptrs, levels, out.data_ptr<float>());
  });
  return out;
}

std::vector<torch::Tensor> hashgrid_backward_tables(torch::Tensor x, torch::Tensor grad_out,
                                                    std::vector<torch::Tensor> tables, std::vector<double> scales,
                                                    std::vector<int64_t> resolutions, std::vector<int64_t> sizes,
                                                    std::vector<int64_t> hashed) {
  const auto levels = make_levels(scales, resolutions, sizes, hashed);
  const int64_t F = tables.empty() ? 0 : tables[0].size(1);
  check_inputs(x, tables, levels.size(), F);
  grad_out = grad_out.contiguous();
  std::vector<torch::Tensor> grads;
  std::vector<float*> ptrs;
  for (const auto& t : tables) {
    grads.push_back(torch::empty_like(t));  // zero-filled inside the worker that owns the level
    ptrs.push_back(grads.back().data_ptr<float>());
  }
  dispatch_features(F, [&](auto f) {
    table_grad_kernel<decltype(f)::value>(x.data_ptr<float>(), x.size(0), levels, grad_out.data_ptr<float>(), ptrs);
  });
  return grads;
}

torch::Tensor hashgrid_backward_positions(torch::Tensor x, torch::Tensor grad_out, std::vector<torch::Tensor> tables,
                                          std::vector<double> scales, std::vector<int64_t> resolutions,
                                          std::vector<int64_t> sizes, std::vector<int64_t> hashed) {
  const auto levels = make_levels(scales, resolutions, sizes, hashed);
  const int64_t F = tables.empty() ? 0 : tables[0].size(1);
  check_inputs(x, tables, levels.size(), F);
  grad_out = grad_out.contiguous();
  auto grad_x = torch::empty_like(x);
  const auto ptrs = const_pointers(tables);
  dispatch_features(F, [&](auto f) {
    position_grad_kernel<decltype(f)::value>(x.data_ptr<float>(), x.size(0), ptrs, levels, grad_out.data_ptr<float>(),
                                             grad_x.data_ptr<float>());
  });
  return grad_x;
}
