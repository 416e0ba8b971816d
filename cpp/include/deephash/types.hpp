// deephash/types.hpp: scalar types and the packed-code contract shared by every part.
//
// Packed codes (docs/algorithms.md, sec. 1):
//   * a code of nbits bits is code_bytes = nbits / 8 bytes (uint8), one row per item;
//   * bit j of a row is bit (j % 8) of byte (j / 8): least significant bit first, the
//     layout of faiss binary indexes and numpy.packbits(..., bitorder="little");
//   * rows are addressed by a row stride in bytes (>= code_bytes), so row slices of a
//     larger array need no copy;
//   * distance = popcount(a XOR b), as dist_t (int32); item ids are idx_t (int64);
//   * results are ranked by (distance, index): ties go to the smaller index.
#pragma once
#include <cstddef>
#include <cstdint>

namespace deephash {

using idx_t = std::int64_t;
using dist_t = std::int32_t;

/// Number of 64-bit words that hold code_bytes bytes (the tail word is zero padded).
inline std::size_t words_for_bytes(std::size_t code_bytes) { return (code_bytes + 7) / 8; }

}  // namespace deephash
