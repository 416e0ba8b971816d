/* Benchmark-only reference: a plain AVX-512 exact Hamming top-k loop (single-threaded).
 * Codes are rows of code_bytes bytes (a multiple of 8). Results are sorted by
 * (distance, index); out_d/out_i double as the per-query top-k state across blocks. */
#include <immintrin.h>
#include <stdint.h>

static void insert(int32_t* d, int64_t* ix, int64_t k, int32_t dist, int64_t id) {
  int64_t p = k - 1; /* candidates arrive in increasing index order: ties stay behind */
  while (p > 0 && d[p - 1] > dist) {
    d[p] = d[p - 1];
    ix[p] = ix[p - 1];
    p--;
  }
  d[p] = dist;
  ix[p] = id;
}

/* Hamming distance of one code of W > 1 words to the query held in qv. */
static inline uint64_t code_dist(const uint64_t* cw, const __m512i* qv, int64_t W, int64_t nchunk) {
  if (W == 2) { /* 128-bit codes: one xmm */
    __m128i p = _mm_popcnt_epi64(_mm_xor_si128(_mm_loadu_si128((const __m128i*)cw), _mm512_castsi512_si128(qv[0])));
    return (uint64_t)(_mm_cvtsi128_si64(p) + _mm_extract_epi64(p, 1));
  }
  if (W == 4) { /* 256-bit codes: one ymm */
    __m256i p =
        _mm256_popcnt_epi64(_mm256_xor_si256(_mm256_loadu_si256((const __m256i*)cw), _mm512_castsi512_si256(qv[0])));
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    return (uint64_t)(_mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1));
  }
  __m512i acc = _mm512_setzero_si512(); /* 512 bits and wider: zmm chunks, masked tail */
  for (int64_t c = 0; c < nchunk; c++) {
    __mmask8 m = (W - 8 * c >= 8) ? 0xFF : (__mmask8)((1u << (W - 8 * c)) - 1);
    __m512i x = _mm512_maskz_loadu_epi64(m, cw + 8 * c);
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[c])));
  }
  return (uint64_t)_mm512_reduce_add_epi64(acc);
}

void naive_knn(const uint8_t* db, int64_t n, int64_t code_bytes, const uint8_t* queries, int64_t nq, int64_t k,
               int32_t* out_d, int64_t* out_i) {
  const int64_t W = code_bytes / 8, nchunk = (W + 7) / 8; /* block: ~32 KiB of codes */
  const int64_t block = code_bytes <= 4096 ? (32768 / code_bytes) & ~(int64_t)7 : 8;
  for (int64_t j = 0; j < nq * k; j++) {
    out_d[j] = INT32_MAX;
    out_i[j] = -1;
  }
  __m512i qv[nchunk];
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t b1 = (b0 + block < n) ? b0 + block : n;
    for (int64_t q = 0; q < nq; q++) {
      const uint64_t* qw = (const uint64_t*)(queries + q * code_bytes);
      int32_t* d = out_d + q * k;
      int64_t* ix = out_i + q * k;
      for (int64_t c = 0; c < nchunk; c++) {
        __mmask8 m = (W - 8 * c >= 8) ? 0xFF : (__mmask8)((1u << (W - 8 * c)) - 1);
        qv[c] = (W == 1) ? _mm512_set1_epi64((long long)qw[0]) : _mm512_maskz_loadu_epi64(m, qw + 8 * c);
      }
      int64_t i = b0;
      if (W == 1) { /* 64-bit codes: the tight loop, threshold kept in a register */
        __m512i lim = _mm512_set1_epi64(d[k - 1]);
        for (; i + 8 <= b1; i += 8) {
          __m512i dv = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(db + i * 8), qv[0]));
          __mmask8 pass = _mm512_cmplt_epu64_mask(dv, lim);
          if (!pass) continue;
          uint64_t dd[8];
          _mm512_storeu_si512(dd, dv);
          for (int l = 0; l < 8; l++)
            if (((pass >> l) & 1) && (int32_t)dd[l] < d[k - 1]) insert(d, ix, k, (int32_t)dd[l], i + l);
          lim = _mm512_set1_epi64(d[k - 1]);
        }
      }
      for (; i < b1; i += 8) {
        const int64_t rem = b1 - i;
        const __mmask8 valid = rem >= 8 ? 0xFF : (__mmask8)((1u << rem) - 1);
        __m512i dv;
        if (W == 1) {
          __m512i x = _mm512_maskz_loadu_epi64(valid, db + i * 8);
          dv = _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[0]));
        } else {
          uint64_t dd[8] = {0};
          for (int l = 0; l < 8 && l < rem; l++)
            dd[l] = code_dist((const uint64_t*)(db + (i + l) * code_bytes), qv, W, nchunk);
          dv = _mm512_loadu_si512(dd);
        }
        __mmask8 pass = _mm512_mask_cmplt_epu64_mask(valid, dv, _mm512_set1_epi64(d[k - 1]));
        if (!pass) continue;
        uint64_t dd[8];
        _mm512_storeu_si512(dd, dv);
        for (int l = 0; l < 8; l++)
          if (((pass >> l) & 1) && (int32_t)dd[l] < d[k - 1]) insert(d, ix, k, (int32_t)dd[l], i + l);
      }
    }
  }
}
