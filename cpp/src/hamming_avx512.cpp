// hamming_avx512.cpp: AVX-512 scan kernel. The only file built with
// -mavx512f -mavx512bw -mavx512vl -mavx512vpopcntdq; it runs only when simd_detect.cpp
// found AVX512F, AVX512BW, AVX512VL, AVX512_VPOPCNTDQ and OS-enabled zmm state.
// Instructions: VPXORQ, VPOPCNTQ (one popcount per 64-bit lane), VPADDQ, VPMINUQ,
// VPCMPUQ into a mask register, masked loads for the block tail.
// No standard-library code is instantiated here (it could leak AVX-512 into shared code).
#include <immintrin.h>

#include "deephash/hamming.hpp"

namespace deephash {
namespace {

// Emits the lanes of `dist` selected by `mask`, in lane order; returns the new threshold.
inline dist_t emit_lanes(__m512i dist, unsigned mask, idx_t base, dist_t threshold, EmitFn emit,
                         void* sink) {
  alignas(64) std::uint64_t lanes[8];
  _mm512_store_si512(lanes, dist);
  while (mask != 0) {
    const int lane = __builtin_ctz(mask);
    if (lanes[lane] < static_cast<std::uint64_t>(threshold))
      threshold = emit(sink, static_cast<dist_t>(lanes[lane]), base + lane);
    mask &= mask - 1;
  }
  return threshold;
}

// Distances of the 8 codes starting at column i (kWords == 0: n_words at run time).
template <std::size_t kWords>
inline __m512i distances8(const std::uint64_t* words, std::size_t ld, std::size_t i,
                          std::size_t n_words, const __m512i* q, const std::uint64_t* query) {
  if constexpr (kWords != 0) {
    __m512i acc = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(words + i), q[0]));
    for (std::size_t j = 1; j < kWords; ++j)
      acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                                      _mm512_loadu_si512(words + j * ld + i), q[j])));
    return acc;
  } else {
    __m512i acc = _mm512_setzero_si512();
    for (std::size_t j = 0; j < n_words; ++j) {
      const __m512i qj = _mm512_set1_epi64(static_cast<long long>(query[j]));
      acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                                      _mm512_loadu_si512(words + j * ld + i), qj)));
    }
    return acc;
  }
}

// Same for the n < 8 codes of a block tail; missing lanes read as zero and are masked off.
template <std::size_t kWords>
inline __m512i distances_tail(const std::uint64_t* words, std::size_t ld, std::size_t i,
                              __mmask8 valid, std::size_t n_words, const std::uint64_t* query) {
  const std::size_t w = kWords != 0 ? kWords : n_words;
  __m512i acc = _mm512_setzero_si512();
  for (std::size_t j = 0; j < w; ++j) {
    const __m512i qj = _mm512_set1_epi64(static_cast<long long>(query[j]));
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                                    _mm512_maskz_loadu_epi64(valid, words + j * ld + i), qj)));
  }
  return acc;
}

// kUnroll groups of 8 codes are tested with one compare on their lane-wise minimum.
template <std::size_t kWords, std::size_t kUnroll>
void scan(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words,
          const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  __m512i q[kWords != 0 ? kWords : 1];
  if constexpr (kWords != 0)
    for (std::size_t j = 0; j < kWords; ++j) q[j] = _mm512_set1_epi64(static_cast<long long>(query[j]));
  __m512i limit = _mm512_set1_epi64(threshold);
  std::size_t i = 0;
  for (; i + 8 * kUnroll <= n; i += 8 * kUnroll) {
    __m512i d[kUnroll];
    d[0] = distances8<kWords>(words, ld, i, n_words, q, query);
    __m512i lowest = d[0];
    for (std::size_t u = 1; u < kUnroll; ++u) {
      d[u] = distances8<kWords>(words, ld, i + 8 * u, n_words, q, query);
      lowest = _mm512_min_epu64(lowest, d[u]);
    }
    if (_mm512_cmplt_epu64_mask(lowest, limit) == 0) continue;
    for (std::size_t u = 0; u < kUnroll; ++u) {
      const unsigned mask = _mm512_cmplt_epu64_mask(d[u], limit);
      if (mask != 0)
        threshold = emit_lanes(d[u], mask, base + static_cast<idx_t>(i + 8 * u), threshold, emit, sink);
    }
    limit = _mm512_set1_epi64(threshold);
  }
  for (; i + 8 <= n; i += 8) {
    const __m512i d = distances8<kWords>(words, ld, i, n_words, q, query);
    const unsigned mask = _mm512_cmplt_epu64_mask(d, limit);
    if (mask != 0) {
      threshold = emit_lanes(d, mask, base + static_cast<idx_t>(i), threshold, emit, sink);
      limit = _mm512_set1_epi64(threshold);
    }
  }
  if (i < n) {
    const auto valid = static_cast<__mmask8>((1u << (n - i)) - 1u);
    const __m512i d = distances_tail<kWords>(words, ld, i, valid, n_words, query);
    const unsigned mask = _mm512_cmplt_epu64_mask(d, limit) & valid;
    if (mask != 0) emit_lanes(d, mask, base + static_cast<idx_t>(i), threshold, emit, sink);
  }
}

}  // namespace

void scan_word_major_avx512(const std::uint64_t* words, std::size_t ld, std::size_t n,
                            std::size_t n_words, const std::uint64_t* query, idx_t base,
                            dist_t threshold, EmitFn emit, void* sink) {
  switch (n_words) {
    case 1: return scan<1, 4>(words, ld, n, n_words, query, base, threshold, emit, sink);
    case 2: return scan<2, 4>(words, ld, n, n_words, query, base, threshold, emit, sink);
    case 4: return scan<4, 2>(words, ld, n, n_words, query, base, threshold, emit, sink);
    case 8: return scan<8, 1>(words, ld, n, n_words, query, base, threshold, emit, sink);
    case 16: return scan<16, 1>(words, ld, n, n_words, query, base, threshold, emit, sink);
    default: return scan<0, 1>(words, ld, n, n_words, query, base, threshold, emit, sink);
  }
}

}  // namespace deephash
