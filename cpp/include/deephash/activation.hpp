// deephash/activation.hpp: the logistic sigmoid of the RBM, shared by the CPU core and the
// CUDA kernels (compiled there without FMA contraction, so both give the same floats).
#pragma once
#include <cstdint>
#include <cstring>

#include "deephash/host_device.hpp"

namespace deephash {

// exp(x) to ~1 ulp for |x| <= 87 (Cephes expf: x = n ln2 + r, degree-6 polynomial in r),
// branch-free so that loops over it vectorise; the caller clamps x.
DEEPHASH_HD inline float exp_poly(float x) {
  const float t = x * 1.44269504088896341f;
  const int n = static_cast<int>(t + 128.5f) - 128;  // round to nearest: t + 128.5 > 0 for |x| <= 87
  const float fn = static_cast<float>(n);
  const float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (n + 127) << 23;
#if defined(__CUDA_ARCH__)
  const float scale = __int_as_float(bits);
#else
  float scale;
  std::memcpy(&scale, &bits, 4);
#endif
  return p * scale;
}

DEEPHASH_HD inline float sigmoid(float x) {
  float e = -x;
  e = e > 87.0f ? 87.0f : e;  // plain selects, so that the loops vectorise
  e = e < -87.0f ? -87.0f : e;
  return 1.0f / (1.0f + exp_poly(e));
}

}  // namespace deephash
