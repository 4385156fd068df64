// Tile rasteriser of projected 2-D Gaussians on the CPU (float32): forward and backward.
// Built on first use by nerfstage.render.splats.raster (torch.utils.cpp_extension.load_inline); the pure-torch
// reference in raster.py (``composite_torch``) defines the maths and the tests compare the two (values and
// gradients).
//
// Inputs (n Gaussians, already projected by raster.py): means2d [n, 2] pixels, conics [n, 3] (a, b, c of the
// inverse 2-D covariance: power = -0.5 (a dx^2 + c dy^2) - b dx dy), features [n, C] (colour, plus any extra
// channel composited the same way), opacities [n] in (0, 1), order [m] int64 (the visible Gaussians, nearest
// first), rects [n, 4] int32 (tile x0, y0, x1, y1, half-open) of each Gaussian's 3-sigma footprint.
// A pixel (col, row) is sampled at its centre (col + 0.5, row + 0.5).
//
// Per pixel, front to back: alpha = min(0.99, opacity * exp(power)); skipped when power > 0 or alpha < 1/255;
// stops before the Gaussian that would take the transmittance below 1e-4 (3DGS's rules).
//
// Parallelism: ATen's pool (torch.set_num_threads); worker w takes tiles w, w + W, w + 2W, ... (static, so a
// given thread count always sums in the same order: deterministic). The backward gives every worker its own
// gradient buffer (no atomics) and sums them in worker order.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int kTile = 16;
constexpr float kMinAlpha = 1.0f / 255.0f;
constexpr float kMaxAlpha = 0.99f;
constexpr float kMinTransmittance = 1e-4f;

struct Bins {
  torch::Tensor offsets;  // [tiles + 1] int64: the Gaussians of tile t are list[offsets[t] : offsets[t + 1]]
  torch::Tensor list;     // [pairs] int32 Gaussian indices, nearest first within each tile
};

Bins bin_tiles(const torch::Tensor& order, const torch::Tensor& rects, int tiles_x, int tiles_y) {
  const int64_t tiles = int64_t(tiles_x) * tiles_y;
  auto offsets = torch::zeros({tiles + 1}, torch::kInt64);
  int64_t* off = offsets.data_ptr<int64_t>();
  const int64_t* ord = order.data_ptr<int64_t>();
  const int32_t* r = rects.data_ptr<int32_t>();
  const int64_t m = order.size(0);
  for (int64_t k = 0; k < m; ++k) {
    const int32_t* q = r + 4 * ord[k];
    for (int ty = q[1]; ty < q[3]; ++ty)
      for (int tx = q[0]; tx < q[2]; ++tx) off[int64_t(ty) * tiles_x + tx + 1] += 1;
  }
  for (int64_t t = 0; t < tiles; ++t) off[t + 1] += off[t];
  auto list = torch::empty({off[tiles]}, torch::kInt32);
  int32_t* lst = list.data_ptr<int32_t>();
  std::vector<int64_t> fill(off, off + tiles);
  for (int64_t k = 0; k < m; ++k) {  // in depth order, so each tile's list is nearest first
    const int32_t* q = r + 4 * ord[k];
    for (int ty = q[1]; ty < q[3]; ++ty)
      for (int tx = q[0]; tx < q[2]; ++tx) lst[fill[int64_t(ty) * tiles_x + tx]++] = int32_t(ord[k]);
  }
  return {offsets, list};
}

struct Scene {  // raw pointers of the inputs
  const float* mean;
  const float* conic;
  const float* feat;
  const float* opac;
  int channels;
};

struct Packed {  // one Gaussian of a tile's list, copied contiguously for the pixel loops
  float mx, my, a, b, c, op, cut;  // cut: below this power alpha < 1/255 for sure (exp skipped)
  int32_t id;
};

// The tile's Gaussians in list order, with their features ([count * C]).
void pack_tile(const Scene& s, const int32_t* lst, int64_t begin, int64_t end, std::vector<Packed>& out,
               std::vector<float>& feats) {
  const int C = s.channels;
  out.resize(end - begin);
  feats.resize((end - begin) * C);
  for (int64_t k = begin; k < end; ++k) {
    const int g = lst[k];
    const float op = s.opac[g];
    const float cut = op > kMinAlpha ? std::log(kMinAlpha / op) - 1e-3f : 0.0f;
    out[k - begin] = {s.mean[2 * g], s.mean[2 * g + 1], s.conic[3 * g], s.conic[3 * g + 1], s.conic[3 * g + 2], op,
                      cut, g};
    for (int c = 0; c < C; ++c) feats[(k - begin) * C + c] = s.feat[int64_t(g) * C + c];
  }
}

// alpha of a packed Gaussian at pixel centre (px, py); 0 when skipped. Writes the Gaussian value and offsets.
inline float alpha_at(const Packed& q, float px, float py, float& gauss, float& dx, float& dy) {
  dx = px - q.mx;
  dy = py - q.my;
  const float power = -0.5f * (q.a * dx * dx + q.c * dy * dy) - q.b * dx * dy;
  if (power > 0.0f || power < q.cut) return 0.0f;
  gauss = std::exp(power);
  const float alpha = std::min(kMaxAlpha, q.op * gauss);
  return alpha < kMinAlpha ? 0.0f : alpha;
}

void check_inputs(const torch::Tensor& means2d, const torch::Tensor& conics, const torch::Tensor& features,
                  const torch::Tensor& opacities, const torch::Tensor& rects) {
  const int64_t n = means2d.size(0);
  for (const auto* t : {&means2d, &conics, &features, &opacities})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == torch::kFloat32 && t->is_contiguous() &&
                t->size(0) == n, "splat_raster_cpu: float32 contiguous CPU tensors with n rows expected");
  TORCH_CHECK(means2d.dim() == 2 && means2d.size(1) == 2, "splat_raster_cpu: means2d must be [n, 2]");
  TORCH_CHECK(conics.dim() == 2 && conics.size(1) == 3, "splat_raster_cpu: conics must be [n, 3]");
  TORCH_CHECK(features.dim() == 2 && features.size(1) >= 1, "splat_raster_cpu: features must be [n, C]");
  TORCH_CHECK(rects.scalar_type() == torch::kInt32 && rects.is_contiguous() && rects.size(0) == n,
              "splat_raster_cpu: rects must be int32 [n, 4]");
}

template <typename F>
void for_each_tile(int64_t tiles, F&& body) {
  const int workers = std::max(1, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w)
      for (int64_t t = w; t < tiles; t += workers) body(w, t);
  });
}

}  // namespace

// -> [image [H, W, C] (over background), transmittance [H, W], count [H, W] int32 (list entries visited up to
//     and including the last contributor), tile offsets, tile list]
std::vector<torch::Tensor> splat_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor features,
                                         torch::Tensor opacities, torch::Tensor order, torch::Tensor rects,
                                         int64_t width, int64_t height, torch::Tensor background) {
  check_inputs(means2d, conics, features, opacities, rects);
  const int C = int(features.size(1));
  TORCH_CHECK(background.numel() == C && background.scalar_type() == torch::kFloat32,
              "splat_raster_cpu: background must have C float32 values");
  const int tiles_x = int((width + kTile - 1) / kTile), tiles_y = int((height + kTile - 1) / kTile);
  Bins bins = bin_tiles(order.contiguous(), rects, tiles_x, tiles_y);
  auto image = torch::empty({height, width, C}, torch::kFloat32);
  auto trans = torch::empty({height, width}, torch::kFloat32);
  auto count = torch::empty({height, width}, torch::kInt32);
  const Scene s{means2d.data_ptr<float>(), conics.data_ptr<float>(), features.data_ptr<float>(),
                opacities.data_ptr<float>(), C};
  const int64_t* off = bins.offsets.data_ptr<int64_t>();
  const int32_t* lst = bins.list.data_ptr<int32_t>();
  float* img = image.data_ptr<float>();
  float* tr = trans.data_ptr<float>();
  int32_t* cnt = count.data_ptr<int32_t>();
  const auto bg = background.contiguous();
  const float* bgp = bg.data_ptr<float>();
  for_each_tile(int64_t(tiles_x) * tiles_y, [&](int64_t, int64_t t) {
    const int x0 = int(t % tiles_x) * kTile, y0 = int(t / tiles_x) * kTile;
    std::vector<Packed> tile;
    std::vector<float> feats, acc(C);
    pack_tile(s, lst, off[t], off[t + 1], tile, feats);
    const int64_t count_t = int64_t(tile.size());
    for (int y = y0; y < std::min<int>(y0 + kTile, height); ++y) {
      for (int x = x0; x < std::min<int>(x0 + kTile, width); ++x) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        float T = 1.0f, gauss, dx, dy;
        int32_t last = 0;
        for (int64_t k = 0; k < count_t; ++k) {
          const float alpha = alpha_at(tile[k], x + 0.5f, y + 0.5f, gauss, dx, dy);
          if (alpha == 0.0f) continue;
          const float next = T * (1.0f - alpha);
          if (next < kMinTransmittance) break;
          const float w = alpha * T;
          for (int c = 0; c < C; ++c) acc[c] += w * feats[k * C + c];
          T = next;
          last = int32_t(k + 1);
        }
        const int64_t p = int64_t(y) * width + x;
        for (int c = 0; c < C; ++c) img[p * C + c] = acc[c] + T * bgp[c];
        tr[p] = T;
        cnt[p] = last;
      }
    }
  });
  return {image, trans, count, bins.offsets, bins.list};
}

// Gradients of a loss given d loss / d image [H, W, C] and d loss / d alpha [H, W] (alpha = 1 - transmittance)
// -> [d means2d [n, 2], d conics [n, 3], d features [n, C], d opacities [n]].
std::vector<torch::Tensor> splat_backward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor features,
                                          torch::Tensor opacities, torch::Tensor rects, torch::Tensor offsets,
                                          torch::Tensor list, torch::Tensor trans, torch::Tensor count,
                                          torch::Tensor background, torch::Tensor grad_image,
                                          torch::Tensor grad_alpha) {
  check_inputs(means2d, conics, features, opacities, rects);
  const int64_t n = means2d.size(0);
  const int C = int(features.size(1));
  const int64_t height = trans.size(0), width = trans.size(1);
  const int tiles_x = int((width + kTile - 1) / kTile), tiles_y = int((height + kTile - 1) / kTile);
  const int workers = std::max(1, at::get_num_threads());
  const int stride = 6 + C;  // per Gaussian: mean 2, conic 3, opacity 1, features C
  auto buffers = torch::zeros({workers, n, stride}, torch::kFloat32);
  const Scene s{means2d.data_ptr<float>(), conics.data_ptr<float>(), features.data_ptr<float>(),
                opacities.data_ptr<float>(), C};
  const int64_t* off = offsets.data_ptr<int64_t>();
  const int32_t* lst = list.data_ptr<int32_t>();
  const auto gi = grad_image.contiguous(), ga = grad_alpha.contiguous(), bg = background.contiguous();
  const float *gip = gi.data_ptr<float>(), *gap = ga.data_ptr<float>(), *bgp = bg.data_ptr<float>();
  const float* tr = trans.data_ptr<float>();
  const int32_t* cnt = count.data_ptr<int32_t>();
  float* buf = buffers.data_ptr<float>();
  for_each_tile(int64_t(tiles_x) * tiles_y, [&](int64_t w, int64_t t) {
    float* grad = buf + w * n * stride;
    const int x0 = int(t % tiles_x) * kTile, y0 = int(t / tiles_x) * kTile;
    std::vector<Packed> tile;
    std::vector<float> feats, rec(C), last_feat(C);
    pack_tile(s, lst, off[t], off[t + 1], tile, feats);
    std::vector<float> local(tile.size() * stride, 0.0f);  // this tile's gradients, list order
    for (int y = y0; y < std::min<int>(y0 + kTile, height); ++y) {
      for (int x = x0; x < std::min<int>(x0 + kTile, width); ++x) {
        const int64_t p = int64_t(y) * width + x;
        const float* dpix = gip + p * C;
        const float T_final = tr[p];
        float bg_dot = 0.0f;
        for (int c = 0; c < C; ++c) bg_dot += bgp[c] * dpix[c];
        std::fill(rec.begin(), rec.end(), 0.0f);
        std::fill(last_feat.begin(), last_feat.end(), 0.0f);
        float T = T_final, last_alpha = 0.0f, gauss = 0.0f, dx, dy;
        for (int64_t k = int64_t(cnt[p]) - 1; k >= 0; --k) {  // back to front
          const Packed& q = tile[k];
          const float alpha = alpha_at(q, x + 0.5f, y + 0.5f, gauss, dx, dy);
          if (alpha == 0.0f) continue;
          T = T / (1.0f - alpha);  // transmittance in front of this Gaussian
          const float* f = feats.data() + k * C;
          float* gg = local.data() + k * stride;
          float d_alpha = 0.0f;
          for (int c = 0; c < C; ++c) {
            gg[6 + c] += alpha * T * dpix[c];
            rec[c] = last_alpha * last_feat[c] + (1.0f - last_alpha) * rec[c];
            last_feat[c] = f[c];
            d_alpha += (f[c] - rec[c]) * dpix[c];
          }
          d_alpha = d_alpha * T + (gap[p] - bg_dot) * T_final / (1.0f - alpha);
          last_alpha = alpha;
          if (q.op * gauss > kMaxAlpha) continue;  // clamped: no gradient through alpha
          gg[5] += gauss * d_alpha;
          const float d_power = q.op * gauss * d_alpha;
          gg[0] += d_power * (q.a * dx + q.b * dy);
          gg[1] += d_power * (q.c * dy + q.b * dx);
          gg[2] += -0.5f * dx * dx * d_power;
          gg[3] += -dx * dy * d_power;
          gg[4] += -0.5f * dy * dy * d_power;
        }
      }
    }
    for (size_t k = 0; k < tile.size(); ++k) {
      float* dst = grad + int64_t(tile[k].id) * stride;
      for (int j = 0; j < stride; ++j) dst[j] += local[k * stride + j];
    }
  });
  auto total = buffers.sum(0);  // [n, stride], in worker order
  return {total.slice(1, 0, 2).contiguous(), total.slice(1, 2, 5).contiguous(),
          total.slice(1, 6, 6 + C).contiguous(), total.select(1, 5).contiguous()};
}
