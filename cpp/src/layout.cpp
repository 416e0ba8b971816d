// layout.cpp: packed rows -> 64-bit words, row-major and word-major (see hamming.hpp).
#include <cstring>

#include "deephash/hamming.hpp"

namespace deephash {

void load_words(const std::uint8_t* code, std::size_t code_bytes, std::uint64_t* out) {
  const std::size_t full = code_bytes / 8, tail = code_bytes % 8;
  std::memcpy(out, code, full * 8);
  if (tail != 0) {
    out[full] = 0;
    std::memcpy(&out[full], code + full * 8, tail);  // little-endian: bytes fill the low bits
  }
}

void transpose_block(const std::uint8_t* rows, std::size_t stride, std::size_t n, std::size_t code_bytes,
                     std::uint64_t* out, std::size_t ld) {
  const std::size_t n_words = words_for_bytes(code_bytes);
  const std::size_t full = code_bytes / 8;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* row = rows + i * stride;
    for (std::size_t j = 0; j < full; ++j) std::memcpy(&out[j * ld + i], row + j * 8, 8);
    if (full < n_words) {
      std::uint64_t last = 0;
      std::memcpy(&last, row + full * 8, code_bytes - full * 8);
      out[full * ld + i] = last;
    }
  }
  for (std::size_t j = 0; j < n_words; ++j)
    for (std::size_t i = n; i < ld; ++i) out[j * ld + i] = 0;
}

}  // namespace deephash
