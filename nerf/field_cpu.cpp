// Fused inference of the proposal path on the CPU (float32, no autograd): the whole path of a ray in one loop --
// per proposal network the hash-grid encoding, MLP and density of its samples (in blocks of columns, with early ray
// termination), the compositing weights and the inverse-CDF resampling; then the radiance field's densities, the
// compositing and the colour MLP on the samples that weigh -- with no tensor per stage and no [N, 32] / [N, 64]
// intermediates. Built on first use by nerfstage.nerf.field_cpu (torch.utils.cpp_extension.load_inline). The
// pure-torch path of fast_proposal.py (proposal.py's s_to_t / pdf_sample / dense_weights, contraction.py,
// _stage_density, _composite) defines the maths; the tests compare the two.
//
// The hash-grid maths (locate / row_of / weight_of) are those of encoding/hashgrid_cpu.cpp (tiny-cuda-nn's).
// Dense layers take transposed weights padded to whole vectors: Wt [in, out_pad] with out_pad a multiple of kV,
// bias [out_pad] (the Python side pads with zeros), so every output block is one compile-time-width vector and the
// accumulators of a block of samples stay in registers.
// Parallelism: ATen's pool, rays taken in chunks from an atomic counter (a descheduled thread delays one chunk).

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
constexpr int kV = 16;         // output columns per vector block of a dense layer
constexpr int kMaxBlock = 16;  // most samples of a ray evaluated together (larger blocks: in batches of this)
constexpr int kMaxWidth = 256; // widest layer (inputs or padded outputs)
constexpr int kMaxLevels = 64; // most levels of one hash grid

struct Level {
  float scale;
  uint32_t resolution;
  uint32_t size;
  bool hashed;
};

struct Grid {  // one hash-grid encoding
  std::vector<Level> levels;
  std::vector<const float*> tables;  // [size_l, F] each
  int F = 2;
  int dim() const { return static_cast<int>(levels.size()) * F; }
};

struct Dense {  // y = Wt^T x + b over padded columns
  const float* wt = nullptr;  // [in, out_pad]
  const float* b = nullptr;   // [out_pad]
  int in = 0, out_pad = 0;
};

// `count` points at once, in two passes: first every corner's row of every level (prefetched) and the fractional
// positions, then the interpolation. The corner reads are most of the kernel's time, and one point's
// arithmetic leaves the core too few of them in flight; the first pass requests a whole batch's rows before any
// is used. F is a compile-time constant so the accumulators stay in registers: with a runtime F they lived on
// the stack and every corner's add waited for the previous one through memory (measured: 63 % of the kernel's
// time on that chain). The tests compare the encoding with the torch encoder's.
template <int F>
inline void encode_batch_f(const Grid& g, const float* p, int count, float* out, uint32_t* rows, float* fr) {
  const int L = static_cast<int>(g.levels.size());
  for (int s = 0; s < count; ++s) {
    float q[3];
    for (int d = 0; d < 3; ++d) q[d] = std::min(std::max(p[3 * s + d], 0.0f), 1.0f);
    for (int l = 0; l < L; ++l) {
      const Level& lv = g.levels[l];
      uint32_t gi[3];
      float* f = fr + (s * L + l) * 3;
      for (int d = 0; d < 3; ++d) {
        const float v = q[d] * lv.scale + 0.5f;
        const float fl = std::floor(v);
        gi[d] = static_cast<uint32_t>(static_cast<int32_t>(fl));
        f[d] = v - fl;
      }
      uint32_t* r = rows + (s * L + l) * 8;
      const float* table = g.tables[l];
      for (int k = 0; k < 8; ++k) {
        const uint32_t x = gi[0] + (k & 1), y = gi[1] + ((k >> 1) & 1), z = gi[2] + ((k >> 2) & 1);
        r[k] = lv.hashed ? ((x ^ (y * kPrimeY) ^ (z * kPrimeZ)) & (lv.size - 1u))
                         : (x + y * lv.resolution + z * lv.resolution * lv.resolution) % lv.size;
        __builtin_prefetch(table + static_cast<int64_t>(r[k]) * F);
      }
    }
  }
  for (int s = 0; s < count; ++s) {
    for (int l = 0; l < L; ++l) {
      const float* f = fr + (s * L + l) * 3;
      const uint32_t* r = rows + (s * L + l) * 8;
      const float* table = g.tables[l];
      float acc[F] = {};
      for (int k = 0; k < 8; ++k) {
        const float w = ((k & 1) ? f[0] : 1.0f - f[0]) * (((k >> 1) & 1) ? f[1] : 1.0f - f[1]) *
                        (((k >> 2) & 1) ? f[2] : 1.0f - f[2]);
        const float* v = table + static_cast<int64_t>(r[k]) * F;
        for (int c = 0; c < F; ++c) acc[c] += w * v[c];
      }
      for (int c = 0; c < F; ++c) out[s * kMaxWidth + l * F + c] = acc[c];
    }
  }
}

inline void encode_batch(const Grid& g, const float* p, int count, float* out, uint32_t* rows, float* fr) {
  switch (g.F) {
    case 1: encode_batch_f<1>(g, p, count, out, rows, fr); break;
    case 2: encode_batch_f<2>(g, p, count, out, rows, fr); break;
    case 4: encode_batch_f<4>(g, p, count, out, rows, fr); break;
    default: encode_batch_f<8>(g, p, count, out, rows, fr); break;
  }
}

// A block of kV output columns as one GCC vector (one zmm with AVX-512, two ymm with AVX2): the accumulators of
// a block of samples then stay in registers; as a float array the compiler kept them on the stack and each FMA
// waited for the previous one's store (perf: ~10 % of the kernel on one store/FMA pair).
typedef float VecV __attribute__((vector_size(kV * sizeof(float))));

inline VecV load_v(const float* p) {
  VecV v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// out[s, :] = (relu?)(Wt^T in[s, :] + b) for s < S; in and out rows have stride kMaxWidth.
template <int S>
inline void dense(const Dense& layer, const float* in, float* out, bool relu) {
  for (int j0 = 0; j0 < layer.out_pad; j0 += kV) {
    VecV acc[S];
    const VecV bias = load_v(layer.b + j0);
    for (int s = 0; s < S; ++s) acc[s] = bias;
    for (int k = 0; k < layer.in; ++k) {
      const VecV w = load_v(layer.wt + static_cast<int64_t>(k) * layer.out_pad + j0);
      for (int s = 0; s < S; ++s) acc[s] += in[s * kMaxWidth + k] * w;
    }
    const VecV zero = {};
    for (int s = 0; s < S; ++s) {
      const VecV y = relu ? (acc[s] < zero ? zero : acc[s]) : acc[s];  // std::max(acc, 0): NaN stays
      __builtin_memcpy(out + s * kMaxWidth + j0, &y, sizeof(y));
    }
  }
}

// The same for any s_count <= kMaxBlock: full groups of 8, then 4, then singles.
inline void dense_n(const Dense& layer, const float* in, float* out, int s_count, bool relu) {
  int s = 0;
  for (; s + 8 <= s_count; s += 8) dense<8>(layer, in + s * kMaxWidth, out + s * kMaxWidth, relu);
  for (; s + 4 <= s_count; s += 4) dense<4>(layer, in + s * kMaxWidth, out + s * kMaxWidth, relu);
  for (; s < s_count; ++s) dense<1>(layer, in + s * kMaxWidth, out + s * kMaxWidth, relu);
}

struct Scratch {  // per-thread tile buffers: kMaxBlock rows of kMaxWidth floats each; the batch encoder's rows
  std::vector<float> a, b, fr;
  std::vector<uint32_t> rows;
  Scratch()
      : a(kMaxBlock * kMaxWidth), b(kMaxBlock * kMaxWidth), fr(kMaxBlock * kMaxLevels * 3),
        rows(kMaxBlock * kMaxLevels * 8) {}
};

template <typename Fn>
void parallel_chunks(int64_t n, int64_t chunk, const Fn& fn) {
  const int64_t num_chunks = (n + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), num_chunks), 1, [&](int64_t, int64_t) {
    Scratch scratch;
    for (int64_t c = next++; c < num_chunks; c = next++) fn(c * chunk, std::min(n, (c + 1) * chunk), scratch);
  });
}

constexpr int64_t kRayChunk = 32;  // rays per work item: neighbouring pixels share cache lines of the tables

Grid make_grid(const std::vector<torch::Tensor>& tables, const std::vector<double>& scales,
               const std::vector<int64_t>& resolutions, const std::vector<int64_t>& sizes,
               const std::vector<int64_t>& hashed) {
  Grid g;
  TORCH_CHECK(!tables.empty() && tables.size() == scales.size(), "field_cpu: one table per level expected");
  g.F = static_cast<int>(tables[0].size(1));
  TORCH_CHECK(g.F == 1 || g.F == 2 || g.F == 4 || g.F == 8, "field_cpu: 1, 2, 4 or 8 features per level, got ", g.F);
  for (size_t l = 0; l < tables.size(); ++l) {
    const auto& t = tables[l];
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous() && t.dim() == 2 &&
                    t.size(1) == g.F, "field_cpu: tables must be contiguous float32 CPU tensors [size, F]");
    g.levels.push_back({static_cast<float>(scales[l]), static_cast<uint32_t>(resolutions[l]),
                        static_cast<uint32_t>(sizes[l]), hashed[l] != 0});
    g.tables.push_back(t.data_ptr<float>());
  }
  TORCH_CHECK(g.dim() <= kMaxWidth && static_cast<int>(g.levels.size()) <= kMaxLevels,
              "field_cpu: encoding wider than ", kMaxWidth, " or more than ", kMaxLevels, " levels");
  return g;
}

Dense make_dense(const torch::Tensor& wt, const torch::Tensor& b) {
  TORCH_CHECK(wt.device().is_cpu() && wt.scalar_type() == torch::kFloat32 && wt.is_contiguous() && wt.dim() == 2,
              "field_cpu: weights must be contiguous float32 CPU tensors [in, out_pad]");
  TORCH_CHECK(wt.size(1) % kV == 0 && wt.size(1) <= kMaxWidth && wt.size(0) <= kMaxWidth,
              "field_cpu: padded layer width must be a multiple of ", kV, " up to ", kMaxWidth, ", got ", wt.sizes());
  TORCH_CHECK(b.is_contiguous() && b.scalar_type() == torch::kFloat32 && b.numel() == wt.size(1),
              "field_cpu: bias must be float32 [out_pad]");
  return {wt.data_ptr<float>(), b.data_ptr<float>(), static_cast<int>(wt.size(0)), static_cast<int>(wt.size(1))};
}

std::vector<Dense> make_layers(const std::vector<torch::Tensor>& weights, const std::vector<torch::Tensor>& biases) {
  TORCH_CHECK(weights.size() == biases.size() && !weights.empty(), "field_cpu: one bias per weight expected");
  std::vector<Dense> layers;
  for (size_t i = 0; i < weights.size(); ++i) layers.push_back(make_dense(weights[i], biases[i]));
  return layers;
}

// Encode + MLP of `count` samples at positions p [count, 3]: the last layer's outputs (rows of stride kMaxWidth
// in one of the scratch buffers).
const float* network(const Grid& grid, const std::vector<Dense>& layers, const float* p, int count, Scratch& sc) {
  encode_batch(grid, p, count, sc.a.data(), sc.rows.data(), sc.fr.data());
  float* in = sc.a.data();
  float* out = sc.b.data();
  for (size_t i = 0; i < layers.size(); ++i) {
    dense_n(layers[i], in, out, count, i + 1 < layers.size());
    std::swap(in, out);
  }
  return in;
}

}  // namespace

// The path of one ray: uniform
// bins in the spacing coordinate s, then per proposal network: distances t (s_to_t), bin midpoints -> normalised
// positions (scene box -> [-1, 1]^3 -> contraction -> [0, 1]^3, or the box -> [0, 1]^3 clamped when bounded),
// densities (early termination as proposal_stage), compositing weights and deterministic inverse-CDF resampling
// (pdf_sample with its padding); then the radiance field's densities and geometry features the same way (deltas of
// midpoints outside the box zeroed when bounded), the compositing, and the colour MLP on samples of weight >=
// min_weight (its first layer split: `base` per ray, the geometry part per sample), as _composite.

namespace {

inline float spacing_f(float t) { return t < 1.0f ? 0.5f * t : 1.0f - 0.5f / std::max(t, 1.0f); }
inline float spacing_inv(float g) { return g < 0.5f ? 2.0f * g : 0.5f / std::max(1.0f - g, 1e-12f); }

struct Scene {
  float lo[3], hi[3];
  bool bounded, l2;
};

inline void normalise(const Scene& sc, const float* p, float* out) {
  float y[3];
  for (int d = 0; d < 3; ++d) y[d] = (p[d] - sc.lo[d]) / (sc.hi[d] - sc.lo[d]);
  if (sc.bounded) {
    for (int d = 0; d < 3; ++d) out[d] = std::min(std::max(y[d], 0.0f), 1.0f);
    return;
  }
  for (int d = 0; d < 3; ++d) y[d] = y[d] * 2.0f - 1.0f;
  const float big = std::max(std::max(std::fabs(y[0]), std::fabs(y[1])), std::fabs(y[2]));
  float norm = big;
  if (sc.l2) {
    const float b = std::max(big, 1e-30f);
    float s2 = 0.0f;
    for (int d = 0; d < 3; ++d) s2 += (y[d] / b) * (y[d] / b);
    norm = b * std::sqrt(std::max(s2, 1e-20f));
  }
  const float scale = norm > 1.0f ? (2.0f - 1.0f / norm) / norm : 1.0f;
  for (int d = 0; d < 3; ++d) out[d] = y[d] * scale * 0.25f + 0.5f;
}

// pdf_sample (evaluation): `m` = u.size() new edges from the histogram w [k] over edges e [k + 1].
void resample(const float* e, const float* w, int k, const float* u, int m, float padding, float* cdf, float* out) {
  float total = 0.0f;
  for (int i = 0; i < k; ++i) total += w[i] + padding;
  cdf[0] = 0.0f;
  float run = 0.0f;
  for (int i = 0; i < k; ++i) {
    run += (w[i] + padding) / total;
    cdf[i + 1] = std::min(run, 1.0f);
  }
  int idx = 0;  // searchsorted(cdf, u, right=True): first index with cdf > u
  for (int j = 0; j < m; ++j) {
    while (idx <= k && cdf[idx] <= u[j]) ++idx;
    const int below = std::min(std::max(idx - 1, 0), k), above = std::min(idx, k);
    const float c0 = cdf[below], c1 = cdf[above];
    float frac = (u[j] - c0) / (c1 - c0);
    if (std::isnan(frac)) frac = 0.0f;
    frac = std::min(std::max(frac, 0.0f), 1.0f);
    out[j] = e[below] + frac * (e[above] - e[below]);
  }
}

struct Stage {  // one network of the path
  Grid grid;
  std::vector<Dense> layers;
};

struct RayBuffers {  // per thread
  std::vector<float> edges, next, t, x, deltas, mids, sigma, w, cdf, geo, hidden, hidden2, wkeep;
  std::vector<int> keep;
  explicit RayBuffers(int kmax, int G)
      : edges(kmax + 1), next(kmax + 1), t(kmax + 1), x(3 * kmax), deltas(kmax), mids(kmax), sigma(kmax), w(kmax),
        cdf(kmax + 1), geo(kmax * G), hidden(kMaxBlock * kMaxWidth), hidden2(kMaxBlock * kMaxWidth), wkeep(kmax),
        keep(kmax) {}
};

// Bins `e` [k + 1] in s -> t, deltas, mids and normalised midpoints of ray (o, d) in `b`; with `mask` (the
// field's stage) bounded scenes zero the deltas of midpoints outside the box.
void stage_points(const Scene& sc, const float* o, const float* d, float g0, float g1, const float* e, int k,
                  bool mask, RayBuffers& b) {
  for (int i = 0; i <= k; ++i) b.t[i] = spacing_inv(g0 + e[i] * (g1 - g0));
  for (int i = 0; i < k; ++i) {
    const float mid = 0.5f * (b.t[i + 1] + b.t[i]);
    b.mids[i] = mid;
    b.deltas[i] = b.t[i + 1] - b.t[i];
    float p[3];
    for (int c = 0; c < 3; ++c) p[c] = o[c] + d[c] * mid;
    normalise(sc, p, b.x.data() + 3 * i);
    if (mask && sc.bounded) {
      bool inside = true;
      for (int c = 0; c < 3; ++c) inside = inside && p[c] >= sc.lo[c] && p[c] <= sc.hi[c];
      if (!inside) b.deltas[i] = 0.0f;
    }
  }
}

// Densities of one stage into b.sigma (0 past early termination; the field's geometry features into b.geo).
int64_t stage_density(const Stage& st, bool field, int G, int k, int64_t block, double stop, RayBuffers& b,
                      Scratch& sc) {
  std::fill(b.sigma.begin(), b.sigma.begin() + k, 0.0f);
  double optical = 0.0;
  int64_t queries = 0;
  for (int64_t c0 = 0; c0 < k && optical < stop; c0 += block) {  // the alive test between blocks
    const int64_t c_end = std::min<int64_t>(c0 + block, k);
    for (int64_t s0 = c0; s0 < c_end; s0 += kMaxBlock) {  // a block in batches of at most kMaxBlock samples
      const int count = static_cast<int>(std::min<int64_t>(kMaxBlock, c_end - s0));
      const float* out = network(st.grid, st.layers, b.x.data() + 3 * s0, count, sc);
      for (int s = 0; s < count; ++s) {
        const float* h = out + s * kMaxWidth;
        const float v = field ? std::exp(h[0]) : std::exp(std::min(h[0], 15.0f));
        b.sigma[s0 + s] = v;
        if (field) std::copy(h + 1, h + 1 + G, b.geo.data() + (s0 + s) * G);
        optical += static_cast<double>(v * b.deltas[s0 + s]);
      }
    }
    queries += c_end - c0;
  }
  return queries;
}

void weights_of(const RayBuffers& b, int k, float* w) {
  float excl = 0.0f;
  for (int i = 0; i < k; ++i) {
    const float tau = b.sigma[i] * b.deltas[i];
    w[i] = std::exp(-excl) * (1.0f - std::exp(-tau));
    excl += tau;
  }
}

// Colour of the kept samples of one ray (first colour layer: geometry part + per-ray base), weighted sum.
void shade(const std::vector<Dense>& clayers, const float* base, int G, int kept, RayBuffers& b, Scratch& sc,
           float* col) {
  const int Hc = clayers[0].out_pad;
  for (int j0 = 0; j0 < kept; j0 += kMaxBlock) {
    const int count = std::min(kMaxBlock, kept - j0);
    for (int s = 0; s < count; ++s)
      std::copy(b.geo.data() + b.keep[j0 + s] * G, b.geo.data() + b.keep[j0 + s] * G + G,
                sc.a.data() + s * kMaxWidth);
    dense_n(clayers[0], sc.a.data(), b.hidden.data(), count, false);
    for (int s = 0; s < count; ++s)
      for (int t = 0; t < Hc; ++t) b.hidden[s * kMaxWidth + t] = std::max(b.hidden[s * kMaxWidth + t] + base[t], 0.0f);
    float* in = b.hidden.data();
    float* out = b.hidden2.data();
    for (size_t i = 1; i < clayers.size(); ++i) {
      dense_n(clayers[i], in, out, count, i + 1 < clayers.size());
      std::swap(in, out);
    }
    for (int s = 0; s < count; ++s)
      for (int c = 0; c < 3; ++c) col[c] += b.wkeep[j0 + s] / (1.0f + std::exp(-in[s * kMaxWidth + c]));
  }
}

}  // namespace

// Returns (rgb [n, 3] over background, accumulation [n], depth [n], queries [n], coloured samples [n]).
// `quantiles[i]` holds linspace(0, 1, counts[i] + 1) (the first: the uniform bins; the others: pdf_sample's u).
std::vector<torch::Tensor> proposal_render(
    torch::Tensor origins, torch::Tensor directions, torch::Tensor near, torch::Tensor far, torch::Tensor background,
    torch::Tensor base, std::vector<double> box, int64_t bounded, int64_t l2, std::vector<torch::Tensor> quantiles,
    std::vector<std::vector<torch::Tensor>> stage_tables, std::vector<std::vector<double>> stage_scales,
    std::vector<std::vector<int64_t>> stage_resolutions, std::vector<std::vector<int64_t>> stage_sizes,
    std::vector<std::vector<int64_t>> stage_hashed, std::vector<std::vector<torch::Tensor>> stage_w,
    std::vector<std::vector<torch::Tensor>> stage_b, std::vector<torch::Tensor> color_w,
    std::vector<torch::Tensor> color_b, int64_t block, double stop, double min_weight, double padding) {
  const size_t n_stages = stage_tables.size();  // proposal networks, then the field (last)
  TORCH_CHECK(n_stages >= 1 && quantiles.size() == n_stages && box.size() == 6,
              "field_cpu: one quantile set per stage and a box [lo, hi] expected");
  std::vector<Stage> stages;
  for (size_t s = 0; s < n_stages; ++s)
    stages.push_back({make_grid(stage_tables[s], stage_scales[s], stage_resolutions[s], stage_sizes[s],
                                stage_hashed[s]),
                      make_layers(stage_w[s], stage_b[s])});
  const auto clayers = make_layers(color_w, color_b);
  const int G = clayers[0].in;
  const int64_t n = origins.size(0);
  for (const auto& t : {origins, directions, background})
    TORCH_CHECK(t.is_contiguous() && t.scalar_type() == torch::kFloat32 && t.dim() == 2 && t.size(0) == n &&
                    t.size(1) == 3, "field_cpu: origins, directions, background must be contiguous float32 [n, 3]");
  TORCH_CHECK(near.is_contiguous() && far.is_contiguous() && near.numel() == n && far.numel() == n &&
                  base.is_contiguous() && base.size(0) == n && base.size(1) == clayers[0].out_pad &&
                  G + 1 <= stages.back().layers.back().out_pad,
              "field_cpu: near, far [n], base [n, Hc_pad] expected");
  std::vector<int> counts;
  std::vector<const float*> qs;
  for (const auto& q : quantiles) {
    TORCH_CHECK(q.is_contiguous() && q.scalar_type() == torch::kFloat32 && q.numel() >= 2 && q.numel() <= 4097,
                "field_cpu: quantiles must be float32 [count + 1], count <= 4096");
    counts.push_back(static_cast<int>(q.numel()) - 1);
    qs.push_back(q.data_ptr<float>());
  }
  const int kmax = *std::max_element(counts.begin(), counts.end());
  Scene scene;
  for (int d = 0; d < 3; ++d) {
    scene.lo[d] = static_cast<float>(box[d]);
    scene.hi[d] = static_cast<float>(box[3 + d]);
  }
  scene.bounded = bounded != 0;
  scene.l2 = l2 != 0;
  block = std::max<int64_t>(1, block);
  auto rgb = torch::empty({n, 3}, origins.options());
  auto acc_t = torch::empty({n}, origins.options());
  auto depth = torch::empty({n}, origins.options());
  auto queries = torch::zeros({n}, origins.options().dtype(torch::kInt64));
  auto coloured = torch::zeros({n}, origins.options().dtype(torch::kInt64));
  const float *po = origins.data_ptr<float>(), *pdir = directions.data_ptr<float>();
  const float *pn = near.data_ptr<float>(), *pf = far.data_ptr<float>(), *pbg = background.data_ptr<float>();
  const float* pbase = base.data_ptr<float>();
  float *prgb = rgb.data_ptr<float>(), *pacc = acc_t.data_ptr<float>(), *pdepth = depth.data_ptr<float>();
  int64_t *pq = queries.data_ptr<int64_t>(), *pc = coloured.data_ptr<int64_t>();
  const int Hc = clayers[0].out_pad;
  parallel_chunks(n, kRayChunk, [&](int64_t begin, int64_t end, Scratch& sc) {
    RayBuffers b(kmax, G);
    for (int64_t r = begin; r < end; ++r) {
      const float *o = po + 3 * r, *d = pdir + 3 * r;
      const float g0 = spacing_f(pn[r]), g1 = spacing_f(pf[r]);
      int k = counts[0];
      std::copy(qs[0], qs[0] + k + 1, b.edges.data());
      int64_t q = 0;
      for (size_t s = 0; s + 1 < n_stages; ++s) {
        stage_points(scene, o, d, g0, g1, b.edges.data(), k, false, b);
        q += stage_density(stages[s], false, G, k, block, stop, b, sc);
        weights_of(b, k, b.w.data());
        const int m = counts[s + 1];
        resample(b.edges.data(), b.w.data(), k, qs[s + 1], m + 1, static_cast<float>(padding), b.cdf.data(),
                 b.next.data());
        std::swap(b.edges, b.next);
        k = m;
      }
      stage_points(scene, o, d, g0, g1, b.edges.data(), k, true, b);
      q += stage_density(stages.back(), true, G, k, block, stop, b, sc);
      weights_of(b, k, b.w.data());
      float acc = 0.0f, dsum = 0.0f;
      int kept = 0;
      for (int i = 0; i < k; ++i) {
        acc += b.w[i];
        dsum += b.w[i] * b.mids[i];
        if (b.w[i] >= min_weight) {
          b.keep[kept] = i;
          b.wkeep[kept++] = b.w[i];
        }
      }
      float col[3] = {0.0f, 0.0f, 0.0f};
      shade(clayers, pbase + r * Hc, G, kept, b, sc, col);
      for (int c = 0; c < 3; ++c) prgb[r * 3 + c] = col[c] + (1.0f - acc) * pbg[r * 3 + c];
      pacc[r] = acc;
      pdepth[r] = dsum / std::max(acc, 1e-10f);
      pq[r] = q;
      pc[r] = kept;
    }
  });
  return {rgb, acc_t, depth, queries, coloured};
}
