// hamming_avx2.cpp: AVX2 scan kernel. The only file built with -mavx2; it runs only when
// simd_detect.cpp found AVX2 and OS-enabled ymm state. AVX2 has no vector popcount:
// bytes are counted with the nibble lookup table (VPSHUFB), byte counts are summed over
// up to 31 words (31 * 8 < 256), then VPSADBW folds them into 64-bit lane sums.
// Block tails (< 4 codes) go to the scalar kernel.
// No standard-library code is instantiated here (it could leak AVX2 into shared code).
#include <immintrin.h>

#include "deephash/code_width.hpp"
#include "deephash/hamming.hpp"

namespace deephash {
namespace {

constexpr std::size_t kMaxByteSums = 31;

inline __m256i popcount_bytes(__m256i x) {
  const __m256i table =
      _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(x, low4));
  const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), low4));
  return _mm256_add_epi8(lo, hi);
}

template <std::size_t kWords>
inline __m256i distances4(const std::uint64_t* words, std::size_t ld, std::size_t i, std::size_t n_words,
                          const __m256i* q, const std::uint64_t* query) {
  const std::size_t w = kWords != 0 ? kWords : n_words;
  const __m256i zero = _mm256_setzero_si256();
  __m256i total = zero, bytes = zero;
  for (std::size_t j = 0; j < w; ++j) {
    __m256i qj;
    if constexpr (kWords != 0)
      qj = q[j];
    else
      qj = _mm256_set1_epi64x(static_cast<long long>(query[j]));
    const __m256i x = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + j * ld + i)), qj);
    bytes = _mm256_add_epi8(bytes, popcount_bytes(x));
    if ((j + 1) % kMaxByteSums == 0) {
      total = _mm256_add_epi64(total, _mm256_sad_epu8(bytes, zero));
      bytes = zero;
    }
  }
  return _mm256_add_epi64(total, _mm256_sad_epu8(bytes, zero));
}

template <std::size_t kWords>
void scan(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words, const std::uint64_t* query,
          idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  __m256i q[kWords != 0 ? kWords : 1];
  if constexpr (kWords != 0)
    for (std::size_t j = 0; j < kWords; ++j) q[j] = _mm256_set1_epi64x(static_cast<long long>(query[j]));
  __m256i limit = _mm256_set1_epi64x(threshold);
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256i d = distances4<kWords>(words, ld, i, n_words, q, query);
    unsigned mask = static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(limit, d))));
    if (mask == 0) continue;
    alignas(32) std::uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), d);
    while (mask != 0) {
      const int lane = __builtin_ctz(mask);
      if (lanes[lane] < static_cast<std::uint64_t>(threshold))
        threshold = emit(sink, static_cast<dist_t>(lanes[lane]), base + static_cast<idx_t>(i) + lane);
      mask &= mask - 1;
    }
    limit = _mm256_set1_epi64x(threshold);
  }
  if (i < n)  // the last < 4 codes: scalar POPCNT on the same block
    scan_word_major_scalar(words + i, ld, n - i, n_words, query, base + static_cast<idx_t>(i), threshold, emit, sink);
}

}  // namespace

void scan_word_major_avx2(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words,
                          const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  with_word_count(n_words, [&](auto width) {
    scan<decltype(width)::value>(words, ld, n, n_words, query, base, threshold, emit, sink);
  });
}

}  // namespace deephash
