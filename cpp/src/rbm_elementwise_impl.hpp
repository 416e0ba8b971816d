// rbm_elementwise_impl.hpp: the loops behind RbmElementwise (rbm_elementwise.hpp), included
// by one file per ISA. Everything here has internal linkage, so each file keeps its own
// copy compiled with its own flags.
#pragma once
#include <cstddef>
#include <cstdint>

#include "deephash/activation.hpp"
#include "deephash/rbm_elementwise.hpp"
#include "deephash/rng.hpp"

namespace deephash {
namespace {

void sigmoid_shift(float* a, std::size_t n, float bias) {
  for (std::size_t i = 0; i < n; ++i) a[i] = sigmoid(a[i] + bias);
}

void sigmoid_bias(float* a, std::size_t n, const float* bias) {
  for (std::size_t i = 0; i < n; ++i) a[i] = sigmoid(a[i] + bias[i]);
}

void bernoulli(const float* p, std::size_t n, std::uint64_t key, std::uint64_t first, std::uint64_t stride,
               float* out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = uniform(key, first + i * stride) < p[i] ? 1.0f : 0.0f;
}

void accumulate_difference(double* sum, const float* a, const float* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) sum[i] += static_cast<double>(a[i] - b[i]);
}

constexpr RbmElementwise kTable{&sigmoid_shift, &sigmoid_bias, &bernoulli, &accumulate_difference};

}  // namespace
}  // namespace deephash
