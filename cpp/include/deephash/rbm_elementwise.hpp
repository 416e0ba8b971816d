// deephash/rbm_elementwise.hpp: the RBM's element-wise loops, one table per SIMD level.
//
// Every level computes bit-identical results: the loops are the same source
// (src/rbm_elementwise_impl.hpp) compiled with each file's ISA flags, with no FMA
// contraction and no reassociation, and IEEE single-precision +, *, / and the
// conversions round the same way in every vector width. The vector levels only make the
// sigmoid and the 64-bit counter RNG wider. cd_train picks the table once per call.
#pragma once
#include <cstddef>
#include <cstdint>

#include "deephash/simd.hpp"

namespace deephash {

struct RbmElementwise {
  /// a[i] = sigmoid(a[i] + bias) for i < n.
  void (*sigmoid_shift)(float* a, std::size_t n, float bias);
  /// a[i] = sigmoid(a[i] + bias[i]) for i < n.
  void (*sigmoid_bias)(float* a, std::size_t n, const float* bias);
  /// out[i] = 1 if uniform(key, first + i * stride) < p[i] else 0, for i < n.
  void (*bernoulli)(const float* p, std::size_t n, std::uint64_t key, std::uint64_t first, std::uint64_t stride,
                    float* out);
  /// sum[i] += double(a[i] - b[i]) (the difference rounded to float first), for i < n.
  void (*accumulate_difference)(double* sum, const float* a, const float* b, std::size_t n);
};

extern const RbmElementwise kRbmElementwiseScalar;
extern const RbmElementwise kRbmElementwiseAvx2;
extern const RbmElementwise kRbmElementwiseAvx512;

/// The table of a level (the baseline one where a level is not compiled in).
const RbmElementwise& rbm_elementwise(SimdLevel level);

}  // namespace deephash
