// bitpack.cpp: thresholded packing (baseline ISA; the compiler vectorises the compares).
#include "deephash/bitpack.hpp"

#include "deephash/errors.hpp"
#include "deephash/threads.hpp"

namespace deephash {

void pack_threshold(const float* x, std::size_t n, std::size_t d, std::size_t ld, const float* thresholds,
                    std::uint8_t* out, int n_threads) {
  DH_REQUIRE(d > 0 && d % 8 == 0, "the number of bits must be a positive multiple of 8, got ", d);
  DH_REQUIRE(ld >= d, "row stride ", ld, " is smaller than the row length ", d);
  const std::size_t code_bytes = d / 8;
  for_ranges(n, d, n_threads, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      const float* row = x + i * ld;
      std::uint8_t* code = out + i * code_bytes;
      for (std::size_t byte = 0; byte < code_bytes; ++byte) {
        unsigned value = 0;
        for (unsigned bit = 0; bit < 8; ++bit) {
          const std::size_t j = byte * 8 + bit;
          value |= static_cast<unsigned>(row[j] > thresholds[j]) << bit;
        }
        code[byte] = static_cast<std::uint8_t>(value);
      }
    }
  });
}

}  // namespace deephash
