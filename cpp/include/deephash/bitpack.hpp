// deephash/bitpack.hpp: float rows -> packed codes (layout in types.hpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace deephash {

/**
 * Thresholded packing: bit j of row i is 1 iff x[i * ld + j] > thresholds[j].
 * A NaN value gives bit 0 (the comparison is false); callers reject NaN beforehand.
 * @param x           n rows of d floats, row stride ld floats (ld >= d)
 * @param thresholds  d floats
 * @param d           bits per code, a positive multiple of 8
 * @param out         n * d / 8 bytes, written row-major
 * @param n_threads   threads to use (>= 1)
 */
void pack_threshold(const float* x, std::size_t n, std::size_t d, std::size_t ld, const float* thresholds,
                    std::uint8_t* out, int n_threads);

}  // namespace deephash
