// hamming_avx512.cpp: AVX-512 scan kernel. The only file built with
// -mavx512f -mavx512bw -mavx512vl -mavx512vpopcntdq; it runs only when simd_detect.cpp
// found AVX512F, AVX512BW, AVX512VL, AVX512_VPOPCNTDQ and OS-enabled zmm state.
// Instructions: VPXORQ, VPOPCNTQ (one popcount per 64-bit lane), VPADDQ, VPMINUQ,
// VPCMPUQ into a mask register, masked loads for the block tail.
// No standard-library code is instantiated here (it could leak AVX-512 into shared code).
#include <immintrin.h>

#include "deephash/code_width.hpp"
#include "deephash/hamming.hpp"

namespace deephash {
namespace {

// Emits the lanes of `dist` selected by `mask`, in lane order; returns the new threshold.
inline dist_t emit_lanes(__m512i dist, unsigned mask, idx_t base, dist_t threshold, EmitFn emit, void* sink) {
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
template <std::size_t kWords, std::size_t kPitch>
inline __m512i distances8(const std::uint64_t* words, std::size_t ld_runtime, std::size_t i, std::size_t n_words,
                          const __m512i* q, const std::uint64_t* query) {
  const std::size_t ld = kPitch != 0 ? kPitch : ld_runtime;
  if constexpr (kWords != 0) {
    __m512i acc = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(words + i), q[0]));
    for (std::size_t j = 1; j < kWords; ++j)
      acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(words + j * ld + i), q[j])));
    return acc;
  } else {
    __m512i acc = _mm512_setzero_si512();
    for (std::size_t j = 0; j < n_words; ++j) {
      const __m512i qj = _mm512_set1_epi64(static_cast<long long>(query[j]));
      acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(words + j * ld + i), qj)));
    }
    return acc;
  }
}

// Same for the n < 8 codes of a block tail; missing lanes read as zero and are masked off.
template <std::size_t kWords>
inline __m512i distances_tail(const std::uint64_t* words, std::size_t ld, std::size_t i, __mmask8 valid,
                              std::size_t n_words, const std::uint64_t* query) {
  const std::size_t w = kWords != 0 ? kWords : n_words;
  __m512i acc = _mm512_setzero_si512();
  for (std::size_t j = 0; j < w; ++j) {
    const __m512i qj = _mm512_set1_epi64(static_cast<long long>(query[j]));
    acc = _mm512_add_epi64(
        acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(valid, words + j * ld + i), qj)));
  }
  return acc;
}

// Rare path, kept out of line so the hot loop holds no distance vector across its branch:
// recomputes `groups` groups of 8 codes from column i and emits those below the threshold.
template <std::size_t kWords, std::size_t kPitch>
__attribute__((noinline)) dist_t emit_groups(const std::uint64_t* words, std::size_t ld, std::size_t i,
                                             std::size_t groups, std::size_t n_words, const std::uint64_t* query,
                                             idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  __m512i q[kWords != 0 ? kWords : 1];
  if constexpr (kWords != 0)
    for (std::size_t j = 0; j < kWords; ++j) q[j] = _mm512_set1_epi64(static_cast<long long>(query[j]));
  for (std::size_t g = 0; g < groups; ++g) {
    const __m512i d = distances8<kWords, kPitch>(words, ld, i + 8 * g, n_words, q, query);
    const unsigned mask = _mm512_cmplt_epu64_mask(d, _mm512_set1_epi64(threshold));
    if (mask != 0) threshold = emit_lanes(d, mask, base + static_cast<idx_t>(i + 8 * g), threshold, emit, sink);
  }
  return threshold;
}

// kUnroll groups of 8 codes are tested with one compare on their lane-wise minimum.
template <std::size_t kWords, std::size_t kUnroll, std::size_t kPitch = 0>
void scan(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words, const std::uint64_t* query,
          idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  __m512i q[kWords != 0 ? kWords : 1];
  if constexpr (kWords != 0)
    for (std::size_t j = 0; j < kWords; ++j) q[j] = _mm512_set1_epi64(static_cast<long long>(query[j]));
  __m512i limit = _mm512_set1_epi64(threshold);
  std::size_t i = 0;
  for (; i + 8 * kUnroll <= n; i += 8 * kUnroll) {
    __m512i lowest = distances8<kWords, kPitch>(words, ld, i, n_words, q, query);
    for (std::size_t u = 1; u < kUnroll; ++u)
      // (the masked form names its pass-through operand: GCC 12 warns about the plain one's)
      lowest = _mm512_mask_min_epu64(lowest, 0xFF, lowest,
                                     distances8<kWords, kPitch>(words, ld, i + 8 * u, n_words, q, query));
    if (_mm512_cmplt_epu64_mask(lowest, limit) == 0) continue;
    threshold = emit_groups<kWords, kPitch>(words, ld, i, kUnroll, n_words, query, base, threshold, emit, sink);
    limit = _mm512_set1_epi64(threshold);
  }
  for (; i + 8 <= n; i += 8) {
    const __m512i d = distances8<kWords, kPitch>(words, ld, i, n_words, q, query);
    if (_mm512_cmplt_epu64_mask(d, limit) == 0) continue;
    threshold = emit_groups<kWords, kPitch>(words, ld, i, 1, n_words, query, base, threshold, emit, sink);
    limit = _mm512_set1_epi64(threshold);
  }
  if (i < n) {
    const auto valid = static_cast<__mmask8>((1u << (n - i)) - 1u);
    const __m512i d = distances_tail<kWords>(words, ld, i, valid, n_words, query);
    const unsigned mask = _mm512_cmplt_epu64_mask(d, limit) & valid;
    if (mask != 0) emit_lanes(d, mask, base + static_cast<idx_t>(i), threshold, emit, sink);
  }
}

}  // namespace

namespace {

// ---- Row layout: 8 contiguous codes of kWords words are loaded as kWords registers
// (8 / kWords codes each, kWords = 2, 4, 8) or 16 registers (kWords = 16, two per code).
// Lane popcounts are summed per code by a pairwise tree: each level takes the even and
// the odd lanes of two registers (VPERMT2Q) and adds them, halving the lanes per code,
// until one register holds the 8 distances in code order.

inline __m512i fold_pair(__m512i a, __m512i b) {
  const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_add_epi64(_mm512_permutex2var_epi64(a, even, b), _mm512_permutex2var_epi64(a, odd, b));
}

template <std::size_t kWords>
inline __m512i row_distances8(const std::uint8_t* rows, const __m512i* pattern) {
  constexpr std::size_t kRegs = kWords == 16 ? 8 : kWords;
  __m512i p[kRegs];
  for (std::size_t r = 0; r < kRegs; ++r) {
    if constexpr (kWords == 16) {  // two registers per code, added first
      const __m512i lo = _mm512_loadu_si512(rows + 128 * r), hi = _mm512_loadu_si512(rows + 128 * r + 64);
      p[r] = _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(lo, pattern[0])),
                              _mm512_popcnt_epi64(_mm512_xor_si512(hi, pattern[1])));
    } else {
      p[r] = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(rows + 64 * r), pattern[0]));
    }
  }
  for (std::size_t live = kRegs; live > 1; live /= 2)
    for (std::size_t r = 0; r < live / 2; ++r) p[r] = fold_pair(p[2 * r], p[2 * r + 1]);
  return p[0];
}

template <std::size_t kWords>
void scan_rows(const std::uint8_t* rows, std::size_t n, const std::uint64_t* query, idx_t base, dist_t threshold,
               EmitFn emit, void* sink) {
  // The query repeated to fill a register (for 16 words: its two halves).
  __m512i pattern[2];
  for (std::size_t h = 0; h < (kWords == 16 ? 2 : 1); ++h) {
    alignas(64) std::uint64_t lanes[8];
    for (std::size_t l = 0; l < 8; ++l) lanes[l] = query[(8 * h + l) % kWords];
    pattern[h] = _mm512_load_si512(lanes);
  }
  __m512i limit = _mm512_set1_epi64(threshold);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m512i d = row_distances8<kWords>(rows + i * 8 * kWords, pattern);
    const unsigned mask = _mm512_cmplt_epu64_mask(d, limit);
    if (mask != 0) {
      threshold = emit_lanes(d, mask, base + static_cast<idx_t>(i), threshold, emit, sink);
      limit = _mm512_set1_epi64(threshold);
    }
  }
  if (i < n)  // tail of < 8 codes
    scan_rows_scalar(rows + i * 8 * kWords, 8 * kWords, n - i, 8 * kWords, query, base + static_cast<idx_t>(i),
                     threshold, emit, sink);
}

}  // namespace

void scan_rows_avx512(const std::uint8_t* rows, std::size_t stride, std::size_t n, std::size_t code_bytes,
                      const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  with_code_bytes(code_bytes, [&](auto width) {
    constexpr std::size_t kWords = decltype(width)::value;
    if constexpr (kWords >= 2) {  // 16, 32, 64 or 128 contiguous bytes
      if (stride == code_bytes) return scan_rows<kWords>(rows, n, query, base, threshold, emit, sink);
    }
    scan_rows_scalar(rows, stride, n, code_bytes, query, base, threshold, emit, sink);
  });
}

void scan_word_major_avx512(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words,
                            const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink) {
  with_word_count(n_words, [&](auto width) {
    // Short codes test several groups of 8 per compare (kUnroll * kWords <= 8 words).
    constexpr std::size_t kWords = decltype(width)::value;
    constexpr std::size_t kUnroll = kWords == 0 || kWords >= 8 ? 1 : 8 / kWords;
    if constexpr (kWords >= 2) {  // the constant-pitch fast path (block_pitch)
      if (ld == block_pitch(kWords))
        return scan<kWords, kUnroll, block_pitch(kWords)>(words, ld, n, n_words, query, base, threshold, emit, sink);
    }
    scan<kWords, kUnroll>(words, ld, n, n_words, query, base, threshold, emit, sink);
  });
}

}  // namespace deephash
