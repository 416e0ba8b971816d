// deephash/mih.hpp: exact sublinear Hamming search by multi-index hashing (Norouzi,
// Punjani and Fleet, CVPR 2012).
//
// A code of b bits is cut into m substrings; substring j is bits [begin_j, begin_j +
// width_j) of the code (bit i is bit i % 8 of byte i / 8, types.hpp), width_j <= 32, or,
// with a bit order (a permutation of the b bits, e.g. learned to decorrelate the bits of
// each substring), bits bit_order[begin_j .. begin_j + width_j) in that order. Table
// j is a counting sort of the rows by their substring j: the rows of bucket `key` are
// rows[offsets[key] .. offsets[key + 1]) (ascending row numbers), offsets has 2^width_j + 1
// entries. Tables are stored back to back: all offsets in one array (table j's after the
// 2^width_i + 1 entries of every table i < j), all rows in another (table j's at j * n).
//
// Pigeonhole: with r_j = floor((r - j) / m) (no probe when negative), sum_j (r_j + 1) =
// r + 1, so a row within distance r of the query is within r_j of it on some substring j.
// Probing every key within r_j of the query's substring j in table j, and verifying each
// candidate with the full distance, finds every row within r: radius search is exact, and
// k-NN grows r one step at a time (one table's radius grows per step) until k rows are
// known within r, when the top-k by (distance, row) is exact.
//
// Budget: a query whose probes plus verified candidates exceed `max_work`, or whose search
// has run longer than `max_ns` nanoseconds (0: no time limit; the clock is read every 32
// units of work), stops and is reported in `fallback` (its outputs are unspecified); the
// caller answers it with the flat scan. Results never depend on the budget, only the path.
#pragma once
#include <cstddef>
#include <cstdint>

#include "deephash/knn.hpp"
#include "deephash/types.hpp"

namespace deephash {

/// What one query may spend before it is handed back to the scan.
struct MihBudget {
  std::uint64_t max_work;
  std::uint64_t max_ns;  // 0: no time limit
};

/// The tables of a MIH index over n rows (views of caller-owned arrays).
struct MihTables {
  std::size_t n_tables;
  const std::uint32_t* begins;     // n_tables: first bit of each substring
  const std::uint32_t* widths;     // n_tables: bits of each substring, in [1, 32]
  const std::uint32_t* bit_order;  // nullptr (bits in code order) or a permutation of the code's bits
  const std::uint32_t* offsets;    // sum_j (2^widths[j] + 1)
  const std::uint32_t* rows;       // n_tables * n
  std::size_t n;                   // rows indexed (the first n rows of the database)
};

/// Offsets entries of a table layout (sum of 2^width + 1); throws std::invalid_argument for
/// a width outside [1, 32] or substrings outside a code of code_bytes bytes.
std::size_t mih_offsets_size(const std::uint32_t* begins, const std::uint32_t* widths, std::size_t n_tables,
                             std::size_t code_bytes);

/// Checks a table layout against a database (at least one table, tables.n <= database.n
/// and < 2^32, substrings inside the code, bit_order a permutation); std::invalid_argument
/// otherwise. The arrays'
/// contents are checked while searching (a bucket or row outside the rows throws).
void check_mih_tables(const CodeView& database, const MihTables& tables);

/// The checks of mih_knn before anything is allocated: code widths, tables, and 1 <= k <=
/// the live indexed rows.
void check_mih_knn_args(const CodeView& queries, const CodeView& database, const MihTables& tables, idx_t k,
                        RemovedRows removed);

/**
 * Builds the tables of the first `codes.n` rows (requires codes.n < 2^32).
 * @param offsets  mih_offsets_size(...) entries
 * @param rows     n_tables * codes.n entries
 */
void mih_build(const CodeView& codes, const std::uint32_t* begins, const std::uint32_t* widths,
               const std::uint32_t* bit_order, std::size_t n_tables, std::uint32_t* offsets, std::uint32_t* rows,
               int n_threads);

/**
 * Exact k-NN of each query among the first tables.n rows of `database` that `removed`
 * does not mark, sorted by (distance, row). Requires 1 <= k <= those live rows.
 * @param distances, indices  nq * k
 * @param fallback            nq flags: 1 where the query exceeded its budget (outputs unset)
 */
void mih_knn(const CodeView& queries, const CodeView& database, const MihTables& tables, idx_t k, MihBudget budget,
             dist_t* distances, idx_t* indices, std::uint8_t* fallback, int n_threads, RemovedRows removed = nullptr);

/**
 * Every live row among the first tables.n within max_distance of each query, sorted by
 * (distance, row); fallback as in mih_knn (such a query has no results in the output).
 */
RangeResult mih_range(const CodeView& queries, const CodeView& database, const MihTables& tables,
                      std::int64_t max_distance, MihBudget budget, std::uint8_t* fallback, int n_threads,
                      RemovedRows removed = nullptr);

}  // namespace deephash
