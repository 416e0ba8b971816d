// deephash/rng.hpp: counter-based uniform random numbers.
//
// uniform(seed, stream, index) is a pure function (SplitMix64 finaliser applied to the
// counter), so a value depends only on its coordinates, never on which thread asks or in
// which order: training is reproducible for a given random_state at any thread count.
// The NumPy reference (tests/reference.py) reproduces it bit for bit, and the CUDA kernels
// call these same functions (DEEPHASH_HD), so GPU training draws the same numbers.
#pragma once
#include <cstdint>

#include "deephash/host_device.hpp"

namespace deephash {

DEEPHASH_HD inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Key of one stream (for the RBM: one training step) of a seed.
DEEPHASH_HD inline std::uint64_t stream_key(std::uint64_t seed, std::uint64_t stream) {
  return mix64(seed ^ mix64(stream + 0xD1B54A32D192ED03ull));
}

/// Uniform float in [0, 1) with 24 random bits: element `index` of the keyed stream.
DEEPHASH_HD inline float uniform(std::uint64_t key, std::uint64_t index) {
  const std::uint64_t bits = mix64(key + 0x9E3779B97F4A7C15ull * (index + 1)) >> 40;
  // bits < 2^24, so the int32 route is exact and lets the loops vectorise without AVX-512.
  return static_cast<float>(static_cast<std::int32_t>(bits)) * (1.0f / 16777216.0f);
}

}  // namespace deephash
