// EWA projection of 3D Gaussians into a pinhole view, and SH colour, on the CPU (float32): forward and backward.
// Built on first use by nerfstage.render.splats.raster; the torch reference is raster.project_splats (autograd)
// and the tests compare values and gradients.
//
// Per Gaussian (m rows, all in front of the near plane): p = R x + t (OpenCV camera frame), pixel
// (fx p.x / p.z + cx, fy p.y / p.z + cy); covariance T T^T + blur I with T = J R Rq S (J the projection's
// Jacobian, the tangent clamped to [lo, hi]); conic = its inverse (a, b, c); colour max(Y(d) . sh + 0.5, 0) with
// d = unit(x - centre) and Y the real SH basis of nerfstage.nerf.sh.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

struct View {
  float R[9], t[3], centre[3];
  float fx, fy, cx, cy, lo_x, hi_x, lo_y, hi_y, blur;
};

View make_view(const torch::Tensor& rot, const torch::Tensor& trans, const torch::Tensor& centre,
               const std::vector<double>& k) {
  View v;
  auto r = rot.contiguous(), tr = trans.contiguous(), c = centre.contiguous();
  for (int i = 0; i < 9; ++i) v.R[i] = r.data_ptr<float>()[i];
  for (int i = 0; i < 3; ++i) v.t[i] = tr.data_ptr<float>()[i], v.centre[i] = c.data_ptr<float>()[i];
  v.fx = float(k[0]), v.fy = float(k[1]), v.cx = float(k[2]), v.cy = float(k[3]);
  v.lo_x = float(k[4]), v.hi_x = float(k[5]), v.lo_y = float(k[6]), v.hi_y = float(k[7]), v.blur = float(k[8]);
  return v;
}

constexpr double kC0 = 0.28209479177387814, kC1 = 0.48860251190291987;
constexpr double kC2a = 1.0925484305920792, kC2b = 0.94617469575755997, kC2c = 0.31539156525251999,
                 kC2d = 0.54627421529603959;
constexpr double kK0 = 0.59004358992664352, kK1 = 2.8906114426405538, kK2 = 0.45704579946446572,
                 kK3 = 0.3731763325901154, kK4 = 1.4453057213202769;

// Basis values Y[K] and, when dY is given, derivatives dY[K][3] w.r.t. the direction components.
void sh_basis(const float d[3], int K, float* Y, float (*dY)[3]) {
  const float x = d[0], y = d[1], z = d[2];
  Y[0] = kC0;
  if (dY) dY[0][0] = dY[0][1] = dY[0][2] = 0.0f;
  if (K > 1) {
    Y[1] = -kC1 * y, Y[2] = kC1 * z, Y[3] = -kC1 * x;
    if (dY) {
      const float v[3][3] = {{0, float(-kC1), 0}, {0, 0, float(kC1)}, {float(-kC1), 0, 0}};
      for (int i = 0; i < 3; ++i) for (int j = 0; j < 3; ++j) dY[1 + i][j] = v[i][j];
    }
  }
  if (K > 4) {
    const float xx = x * x, yy = y * y, zz = z * z;
    Y[4] = kC2a * x * y, Y[5] = -kC2a * y * z, Y[6] = kC2b * zz - kC2c, Y[7] = -kC2a * x * z;
    Y[8] = kC2d * (xx - yy);
    if (dY) {
      const float v[5][3] = {{float(kC2a * y), float(kC2a * x), 0},
                             {0, float(-kC2a * z), float(-kC2a * y)},
                             {0, 0, float(2 * kC2b * z)},
                             {float(-kC2a * z), 0, float(-kC2a * x)},
                             {float(2 * kC2d * x), float(-2 * kC2d * y), 0}};
      for (int i = 0; i < 5; ++i) for (int j = 0; j < 3; ++j) dY[4 + i][j] = v[i][j];
    }
  }
  if (K > 9) {
    const float xx = x * x, yy = y * y, zz = z * z;
    Y[9] = kK0 * y * (-3 * xx + yy), Y[10] = kK1 * x * y * z, Y[11] = kK2 * y * (1 - 5 * zz);
    Y[12] = kK3 * z * (5 * zz - 3), Y[13] = kK2 * x * (1 - 5 * zz), Y[14] = kK4 * z * (xx - yy);
    Y[15] = kK0 * x * (-xx + 3 * yy);
    if (dY) {
      const float v[7][3] = {{float(kK0 * -6 * x * y), float(kK0 * (-3 * xx + 3 * yy)), 0},
                             {float(kK1 * y * z), float(kK1 * x * z), float(kK1 * x * y)},
                             {0, float(kK2 * (1 - 5 * zz)), float(kK2 * -10 * y * z)},
                             {0, 0, float(kK3 * (15 * zz - 3))},
                             {float(kK2 * (1 - 5 * zz)), 0, float(kK2 * -10 * x * z)},
                             {float(kK4 * 2 * x * z), float(kK4 * -2 * y * z), float(kK4 * (xx - yy))},
                             {float(kK0 * (-3 * xx + 3 * yy)), float(kK0 * 6 * x * y), 0}};
      for (int i = 0; i < 7; ++i) for (int j = 0; j < 3; ++j) dY[9 + i][j] = v[i][j];
    }
  }
}

void quat_rot(const float* q_raw, float qn[4], float& norm, float Rq[9]) {
  norm = std::sqrt(q_raw[0] * q_raw[0] + q_raw[1] * q_raw[1] + q_raw[2] * q_raw[2] + q_raw[3] * q_raw[3]);
  const float inv = 1.0f / std::max(norm, 1e-12f);
  for (int i = 0; i < 4; ++i) qn[i] = q_raw[i] * inv;
  const float w = qn[0], x = qn[1], y = qn[2], z = qn[3];
  const float r[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                      2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                      2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)};
  std::copy(r, r + 9, Rq);
}

struct Geo {  // the forward quantities of one Gaussian that the backward needs
  float p[3], z, rx, ry;
  bool clamp_x, clamp_y;
  float A[6];  // J R, 2x3
  float M[9];  // Rq S
  float Rq[9], s[3], qn[4], qnorm;
  float T[6];  // A M, 2x3
  float a, b, c, det;
};

void geometry(const View& v, const float* mean, const float* quat, const float* ls, Geo& g) {
  for (int i = 0; i < 3; ++i)
    g.p[i] = v.R[3 * i] * mean[0] + v.R[3 * i + 1] * mean[1] + v.R[3 * i + 2] * mean[2] + v.t[i];
  g.z = g.p[2];
  const float tx = g.p[0] / g.z, ty = g.p[1] / g.z;
  g.rx = std::min(std::max(tx, v.lo_x), v.hi_x);
  g.ry = std::min(std::max(ty, v.lo_y), v.hi_y);
  g.clamp_x = g.rx != tx, g.clamp_y = g.ry != ty;
  const float J[6] = {v.fx / g.z, 0.0f, -v.fx * g.rx / g.z, 0.0f, v.fy / g.z, -v.fy * g.ry / g.z};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      g.A[3 * i + j] = J[3 * i] * v.R[j] + J[3 * i + 1] * v.R[3 + j] + J[3 * i + 2] * v.R[6 + j];
  quat_rot(quat, g.qn, g.qnorm, g.Rq);
  for (int j = 0; j < 3; ++j) g.s[j] = std::exp(ls[j]);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) g.M[3 * i + j] = g.Rq[3 * i + j] * g.s[j];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      g.T[3 * i + j] = g.A[3 * i] * g.M[j] + g.A[3 * i + 1] * g.M[3 + j] + g.A[3 * i + 2] * g.M[6 + j];
  g.a = g.T[0] * g.T[0] + g.T[1] * g.T[1] + g.T[2] * g.T[2] + v.blur;
  g.b = g.T[0] * g.T[3] + g.T[1] * g.T[4] + g.T[2] * g.T[5];
  g.c = g.T[3] * g.T[3] + g.T[4] * g.T[4] + g.T[5] * g.T[5] + v.blur;
  g.det = g.a * g.c - g.b * g.b;
}

void direction(const View& v, const float* mean, float d[3], float& len) {
  float u[3] = {mean[0] - v.centre[0], mean[1] - v.centre[1], mean[2] - v.centre[2]};
  len = std::sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2]);
  const float inv = 1.0f / std::max(len, 1e-12f);
  for (int i = 0; i < 3; ++i) d[i] = u[i] * inv;
}

}  // namespace

// -> [means2d [m, 2], conics [m, 3], colors [m, 3], depths [m], cov abc + det [m, 4]]
std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor log_scales,
                                           torch::Tensor sh, torch::Tensor rot, torch::Tensor trans,
                                           torch::Tensor centre, std::vector<double> k) {
  const int64_t m = means.size(0);
  const int K = int(sh.size(1));
  const View v = make_view(rot, trans, centre, k);
  auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  auto means2d = torch::empty({m, 2}, opts), conics = torch::empty({m, 3}, opts);
  auto colors = torch::empty({m, 3}, opts), depths = torch::empty({m}, opts), cov = torch::empty({m, 4}, opts);
  const float *mp = means.data_ptr<float>(), *qp = quats.data_ptr<float>(), *lp = log_scales.data_ptr<float>();
  const float* shp = sh.data_ptr<float>();
  float *o2 = means2d.data_ptr<float>(), *oc = conics.data_ptr<float>(), *ocol = colors.data_ptr<float>();
  float *od = depths.data_ptr<float>(), *ocov = cov.data_ptr<float>();
  at::parallel_for(0, m, 1024, [&](int64_t begin, int64_t end) {
    Geo g;
    float Y[16], d[3], len;
    for (int64_t i = begin; i < end; ++i) {
      geometry(v, mp + 3 * i, qp + 4 * i, lp + 3 * i, g);
      o2[2 * i] = v.fx * g.p[0] / g.z + v.cx;
      o2[2 * i + 1] = v.fy * g.p[1] / g.z + v.cy;
      const float det = g.det > 0.0f ? g.det : 1.0f;
      oc[3 * i] = g.c / det, oc[3 * i + 1] = -g.b / det, oc[3 * i + 2] = g.a / det;
      od[i] = g.z;
      ocov[4 * i] = g.a, ocov[4 * i + 1] = g.b, ocov[4 * i + 2] = g.c, ocov[4 * i + 3] = g.det;
      direction(v, mp + 3 * i, d, len);
      sh_basis(d, K, Y, nullptr);
      for (int ch = 0; ch < 3; ++ch) {
        float acc = 0.5f;
        for (int j = 0; j < K; ++j) acc += Y[j] * shp[(i * K + j) * 3 + ch];
        ocol[3 * i + ch] = std::max(acc, 0.0f);
      }
    }
  });
  return {means2d, conics, colors, depths, cov};
}

namespace {

// d loss / d (a, b, c) of the covariance from d loss / d conic (conic = (c, -b, a) / det).
void conic_backward(const Geo& g, const float* gc, float& ga, float& gb, float& gcc) {
  if (!(g.det > 0.0f)) {
    ga = gb = gcc = 0.0f;
    return;
  }
  const float a = g.a, b = g.b, c = g.c, id = 1.0f / g.det, id2 = id * id;
  ga = gc[0] * (-c * c * id2) + gc[1] * (b * c * id2) + gc[2] * (id - a * c * id2);
  gb = gc[0] * (2 * b * c * id2) + gc[1] * (-id - 2 * b * b * id2) + gc[2] * (2 * a * b * id2);
  gcc = gc[0] * (id - a * c * id2) + gc[1] * (a * b * id2) + gc[2] * (-a * a * id2);
}

void quat_backward(const Geo& g, const float dR[9], float* dq) {
  const float w = g.qn[0], x = g.qn[1], y = g.qn[2], z = g.qn[3];
  float dn[4];
  dn[0] = 2 * (-z * dR[1] + y * dR[2] + z * dR[3] - x * dR[5] - y * dR[6] + x * dR[7]);
  dn[1] = 2 * (y * dR[1] + z * dR[2] + y * dR[3] - 2 * x * dR[4] - w * dR[5] + z * dR[6] + w * dR[7] - 2 * x * dR[8]);
  dn[2] = 2 * (-2 * y * dR[0] + x * dR[1] + w * dR[2] + x * dR[3] + z * dR[5] - w * dR[6] + z * dR[7] - 2 * y * dR[8]);
  dn[3] = 2 * (-2 * z * dR[0] - w * dR[1] + x * dR[2] + w * dR[3] - 2 * z * dR[4] + y * dR[5] + x * dR[6] + y * dR[7]);
  const float dot = dn[0] * w + dn[1] * x + dn[2] * y + dn[3] * z;
  const float inv = 1.0f / std::max(g.qnorm, 1e-12f);
  for (int i = 0; i < 4; ++i) dq[i] = (dn[i] - g.qn[i] * dot) * inv;
}

}  // namespace

// Gradients -> [d means [m, 3], d quats [m, 4], d log_scales [m, 3], d sh [m, K, 3]].
std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor log_scales,
                                            torch::Tensor sh, torch::Tensor colors, torch::Tensor rot,
                                            torch::Tensor trans, torch::Tensor centre, std::vector<double> k,
                                            torch::Tensor g_means2d, torch::Tensor g_conics,
                                            torch::Tensor g_colors, torch::Tensor g_depths) {
  const int64_t m = means.size(0);
  const int K = int(sh.size(1));
  const View v = make_view(rot, trans, centre, k);
  auto d_means = torch::zeros_like(means), d_quats = torch::zeros_like(quats);
  auto d_ls = torch::zeros_like(log_scales), d_sh = torch::zeros_like(sh);
  const float *mp = means.data_ptr<float>(), *qp = quats.data_ptr<float>(), *lp = log_scales.data_ptr<float>();
  const float *shp = sh.data_ptr<float>(), *colp = colors.data_ptr<float>();
  const float *g2 = g_means2d.data_ptr<float>(), *gcn = g_conics.data_ptr<float>();
  const float *gcol = g_colors.data_ptr<float>(), *gd = g_depths.data_ptr<float>();
  float *dm = d_means.data_ptr<float>(), *dq = d_quats.data_ptr<float>(), *dl = d_ls.data_ptr<float>();
  float* dsh = d_sh.data_ptr<float>();
  at::parallel_for(0, m, 1024, [&](int64_t begin, int64_t end) {
    Geo g;
    float Y[16], dY[16][3], d[3], len;
    for (int64_t i = begin; i < end; ++i) {
      geometry(v, mp + 3 * i, qp + 4 * i, lp + 3 * i, g);
      // covariance -> T -> A (= J R) and M (= Rq S)
      float ga, gb, gc;
      conic_backward(g, gcn + 3 * i, ga, gb, gc);
      float dT[6];
      for (int j = 0; j < 3; ++j) {
        dT[j] = 2 * ga * g.T[j] + gb * g.T[3 + j];
        dT[3 + j] = 2 * gc * g.T[3 + j] + gb * g.T[j];
      }
      float dA[6] = {0}, dM[9] = {0};
      for (int r = 0; r < 2; ++r)
        for (int j = 0; j < 3; ++j)
          for (int l = 0; l < 3; ++l) {
            dA[3 * r + l] += dT[3 * r + j] * g.M[3 * l + j];
            dM[3 * l + j] += g.A[3 * r + l] * dT[3 * r + j];
          }
      float dJ[6] = {0};  // dJ = dA R^T
      for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 3; ++c)
          for (int j = 0; j < 3; ++j) dJ[3 * r + c] += dA[3 * r + j] * v.R[3 * c + j];
      float dp[3] = {0.0f, 0.0f, g_depths.numel() ? gd[i] : 0.0f};
      const float z = g.z, z2 = z * z;
      dp[2] += dJ[0] * (-v.fx / z2) + dJ[4] * (-v.fy / z2) + dJ[2] * (v.fx * g.rx / z2) + dJ[5] * (v.fy * g.ry / z2);
      const float drx = dJ[2] * (-v.fx / z), dry = dJ[5] * (-v.fy / z);
      if (!g.clamp_x) dp[0] += drx / z, dp[2] += -drx * g.p[0] / z2;
      if (!g.clamp_y) dp[1] += dry / z, dp[2] += -dry * g.p[1] / z2;
      const float gu = g2[2 * i], gv = g2[2 * i + 1];
      dp[0] += gu * v.fx / z, dp[1] += gv * v.fy / z;
      dp[2] += -gu * v.fx * g.p[0] / z2 - gv * v.fy * g.p[1] / z2;
      for (int j = 0; j < 3; ++j) dm[3 * i + j] += v.R[j] * dp[0] + v.R[3 + j] * dp[1] + v.R[6 + j] * dp[2];
      // M = Rq S -> quaternion and log scales
      float dRq[9];
      for (int r = 0; r < 3; ++r)
        for (int j = 0; j < 3; ++j) dRq[3 * r + j] = dM[3 * r + j] * g.s[j];
      for (int j = 0; j < 3; ++j)
        dl[3 * i + j] = (dM[j] * g.Rq[j] + dM[3 + j] * g.Rq[3 + j] + dM[6 + j] * g.Rq[6 + j]) * g.s[j];
      quat_backward(g, dRq, dq + 4 * i);
      // colour -> sh and the view direction
      direction(v, mp + 3 * i, d, len);
      sh_basis(d, K, Y, dY);
      float dd[3] = {0, 0, 0};
      for (int ch = 0; ch < 3; ++ch) {
        if (colp[3 * i + ch] <= 0.0f) continue;  // clamped at 0: no gradient
        const float gch = gcol[3 * i + ch];
        for (int j = 0; j < K; ++j) {
          dsh[(i * K + j) * 3 + ch] = Y[j] * gch;
          const float w = shp[(i * K + j) * 3 + ch] * gch;
          dd[0] += w * dY[j][0], dd[1] += w * dY[j][1], dd[2] += w * dY[j][2];
        }
      }
      const float dot = dd[0] * d[0] + dd[1] * d[1] + dd[2] * d[2];
      const float inv = 1.0f / std::max(len, 1e-12f);
      for (int j = 0; j < 3; ++j) dm[3 * i + j] += (dd[j] - d[j] * dot) * inv;
    }
  });
  return {d_means, d_quats, d_ls, d_sh};
}
