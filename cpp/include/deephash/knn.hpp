// deephash/knn.hpp: exact Hamming search over packed codes (layout in types.hpp).
//
// Stateless: the database is a caller-owned array scanned in cache-sized blocks; each
// block is laid out word-major once and reused by every query of the batch. A batch of
// queries is split across threads; a few queries split the database and merge.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "deephash/simd.hpp"
#include "deephash/types.hpp"

namespace deephash {

/// A packed-code matrix view: n rows of code_bytes bytes, `stride` bytes apart.
struct CodeView {
  const std::uint8_t* data;
  std::size_t n;
  std::size_t code_bytes;
  std::size_t stride;
};

/**
 * Optional removed-row bitmap of a database of n rows: row i is removed (never returned)
 * when bit i % 64 of word i / 64 is set; words_for_rows(n) words, bits past n ignored.
 * nullptr: no row is removed.
 */
using RemovedRows = const std::uint64_t*;

/// Words of a removed-row bitmap for n rows.
constexpr std::size_t words_for_rows(std::size_t n) { return (n + 63) / 64; }

/// Rows of [0, n) whose bit is clear in `removed` (n when removed is nullptr).
std::size_t count_live_rows(RemovedRows removed, std::size_t n);

/**
 * Checks the arguments of knn_hamming without scanning: equal code widths, valid row
 * strides and 1 <= k <= the live rows; throws std::invalid_argument naming the parameter.
 * Callers that allocate the outputs call it first (knn_hamming calls it too).
 */
void check_knn_args(const CodeView& queries, const CodeView& database, idx_t k, RemovedRows removed = nullptr);

/**
 * Exact k nearest live neighbours by Hamming distance, sorted by (distance, index).
 * @param distances  nq * k, row-major
 * @param indices    nq * k, row-major (row numbers of `database`)
 * @param removed    rows never returned (see RemovedRows), or nullptr
 * Requires the arguments check_knn_args accepts (std::invalid_argument otherwise).
 */
void knn_hamming(const CodeView& queries, const CodeView& database, idx_t k, dist_t* distances, idx_t* indices,
                 SimdLevel level, int n_threads, RemovedRows removed = nullptr);

/// Radius search result: query q's hits are [lims[q], lims[q + 1]) of distances/indices.
struct RangeResult {
  std::vector<idx_t> lims;
  std::vector<dist_t> distances;
  std::vector<idx_t> indices;
};

/// Checks the code widths and row strides of two code matrices (std::invalid_argument).
void check_code_views(const CodeView& queries, const CodeView& database);

/**
 * Every live item with distance <= max_distance (inclusive), sorted by (distance, index).
 * Requires max_distance >= 0 (any larger than the code's bits means all of them) and equal
 * code_bytes (std::invalid_argument otherwise).
 */
RangeResult range_hamming(const CodeView& queries, const CodeView& database, std::int64_t max_distance, SimdLevel level,
                          int n_threads, RemovedRows removed = nullptr);

}  // namespace deephash
