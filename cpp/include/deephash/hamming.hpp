// deephash/hamming.hpp: the per-ISA Hamming scan kernels and their contract.
//
// Kernels read a block of codes in "word-major" layout: the code is split into
// n_words 64-bit words (little-endian, tail word zero padded, see types.hpp) and
// word j of code i sits at words[j * ld + i]. In this layout a vector register holds
// the same word of 8 (AVX-512) or 4 (AVX2) consecutive codes, so a distance is a sum of
// vertical popcounts with no horizontal reduction. For 8-byte codes the packed rows
// already are word-major (ld = n); longer codes are transposed once per block
// (transpose_block) and the block is reused across every query of a batch.
//
// Emit contract: for every code whose distance is < the current threshold, in increasing
// code order, the kernel calls emit(sink, distance, base + i) and continues with the
// threshold emit returns (a collector lowers it as its top-k fills).
#pragma once
#include <cstddef>
#include <cstdint>

#include "deephash/simd.hpp"
#include "deephash/types.hpp"

namespace deephash {

/// Bytes of one word-major block: it stays in L1 while every query of a batch scans it.
constexpr std::size_t kBlockBytes = 32 * 1024;

/// Codes per word-major block, which is also its row pitch `ld`: kernels have fast paths
/// for this pitch (constant address offsets), and accept any other.
constexpr std::size_t block_pitch(std::size_t n_words) {
  return kBlockBytes / (8 * n_words) / 8 * 8 > 8 ? kBlockBytes / (8 * n_words) / 8 * 8 : 8;
}

/// Receives one candidate; returns the threshold for the rest of the scan.
using EmitFn = dist_t (*)(void* sink, dist_t distance, idx_t index);

/**
 * Scan kernel signature.
 * @param words     word-major block, n_words rows of ld words (ld >= n)
 * @param n         codes in the block
 * @param n_words   64-bit words per code (>= 1)
 * @param query     n_words words of the query, zero padded like the codes
 * @param base      index of the block's first code
 * @param threshold only codes with distance < threshold are emitted
 */
using ScanFn = void (*)(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words,
                        const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink);

void scan_word_major_scalar(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words,
                            const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink);
void scan_word_major_avx2(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words,
                          const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink);
void scan_word_major_avx512(const std::uint64_t* words, std::size_t ld, std::size_t n, std::size_t n_words,
                            const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink);

/// The scan kernel of a level (resolved once per call by the entry points).
ScanFn scan_kernel(SimdLevel level);

/**
 * Row-layout scan: the same contract as ScanFn over n packed rows (row stride `stride`
 * bytes, code_bytes bytes each) read in place. Used when too few queries share a block
 * to repay its transposition (a single query streams the database once from memory).
 */
using ScanRowsFn = void (*)(const std::uint8_t* rows, std::size_t stride, std::size_t n, std::size_t code_bytes,
                            const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink);

void scan_rows_scalar(const std::uint8_t* rows, std::size_t stride, std::size_t n, std::size_t code_bytes,
                      const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink);
/// Vector path for contiguous rows of 16, 32, 64 or 128 bytes; other layouts go to scalar.
void scan_rows_avx512(const std::uint8_t* rows, std::size_t stride, std::size_t n, std::size_t code_bytes,
                      const std::uint64_t* query, idx_t base, dist_t threshold, EmitFn emit, void* sink);

/// The row-layout kernel of a level (AVX2 has no vector popcount: it uses scalar POPCNT).
ScanRowsFn scan_rows_kernel(SimdLevel level);

/**
 * Copies n packed rows (row stride `stride` bytes, code_bytes bytes each) into word-major
 * layout: out[j * ld + i] = word j of row i, tail bytes zero, rows n..ld-1 zero.
 */
void transpose_block(const std::uint8_t* rows, std::size_t stride, std::size_t n, std::size_t code_bytes,
                     std::uint64_t* out, std::size_t ld);

/// One code's packed bytes as zero-padded words (words_for_bytes(code_bytes) of them).
void load_words(const std::uint8_t* code, std::size_t code_bytes, std::uint64_t* out);

}  // namespace deephash
