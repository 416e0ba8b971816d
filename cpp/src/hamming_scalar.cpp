// hamming_scalar.cpp: reference scan kernel (64-bit POPCNT, baseline ISA) and the
// level -> kernel table. Needs: POPCNT on x86-64 (the project's x86-64-v2 floor).
#include <cstring>

#include "deephash/code_width.hpp"
#include "deephash/hamming.hpp"

namespace deephash {
namespace {

inline std::uint64_t load_u64(const std::uint64_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);  // the block may be a view of a uint8 array
  return v;
}

// kWords > 0: width fixed at compile time; kWords == 0: n_words at run time.
template <std::size_t kWords>
void scan(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words, const std::uint64_t* query,
          idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  const std::size_t w = kWords != 0 ? kWords : n_words;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t d = 0;
    for (std::size_t j = 0; j < w; ++j)
      d += static_cast<std::uint64_t>(__builtin_popcountll(load_u64(words + j * ld + i) ^ query[j]));
    if (d < static_cast<std::uint64_t>(threshold))
      threshold = emit(sink, static_cast<dist_t>(d), base + static_cast<idx_t>(i));
  }
}

// One code in row layout: full words, then the zero-padded tail.
template <std::size_t kWords>
inline std::uint64_t row_distance(const std::uint8_t* row, std::size_t code_bytes, const std::uint64_t* query) {
  const std::size_t full = kWords != 0 ? kWords : code_bytes / 8;
  std::uint64_t d = 0;
  for (std::size_t j = 0; j < full; ++j) {
    std::uint64_t word;
    std::memcpy(&word, row + 8 * j, 8);
    d += static_cast<std::uint64_t>(__builtin_popcountll(word ^ query[j]));
  }
  if (kWords == 0 && full * 8 < code_bytes) {
    std::uint64_t last = 0;
    std::memcpy(&last, row + 8 * full, code_bytes - 8 * full);
    d += static_cast<std::uint64_t>(__builtin_popcountll(last ^ query[full]));
  }
  return d;
}

template <std::size_t kWords>
void scan_rows(const std::uint8_t* rows, std::size_t stride, std::size_t n, std::size_t code_bytes,
               const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t d = row_distance<kWords>(rows + i * stride, code_bytes, query);
    if (d < static_cast<std::uint64_t>(threshold))
      threshold = emit(sink, static_cast<dist_t>(d), base + static_cast<idx_t>(i));
  }
}

}  // namespace

void scan_rows_scalar(const std::uint8_t* rows, std::size_t stride, std::size_t n, std::size_t code_bytes,
                      const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  with_code_bytes(code_bytes, [&](auto width) {
    scan_rows<decltype(width)::value>(rows, stride, n, code_bytes, query, base, threshold, emit, sink);
  });
}

ScanRowsFn scan_rows_kernel(SimdLevel level) {
#if defined(DEEPHASH_HAVE_X86_KERNELS)
  if (level == SimdLevel::AVX512) return &scan_rows_avx512;
#else
  (void)level;
#endif
  return &scan_rows_scalar;
}

void scan_word_major_scalar(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words,
                            const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  with_word_count(n_words, [&](auto width) {
    scan<decltype(width)::value>(words, ld, n, n_words, query, base, threshold, emit, sink);
  });
}

ScanFn scan_kernel(SimdLevel level) {
#if defined(DEEPHASH_HAVE_X86_KERNELS)
  if (level == SimdLevel::AVX512) return &scan_word_major_avx512;
  if (level == SimdLevel::AVX2) return &scan_word_major_avx2;
#else
  (void)level;
#endif
  return &scan_word_major_scalar;
}

}  // namespace deephash
