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
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "deephash/knn.hpp"
#include "deephash/simd.hpp"
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

/// How one MihSearcher call may use the tables (the policy of BinaryIndex, _mih.py).
struct MihPlan {
  MihBudget budget;         // what each query may spend before it is handed to the scan
  std::int64_t max_radius;  // range: larger radii are scanned without trying MIH (-1: every radius)
  bool adaptive;            // skip MIH while queries of the same k or radius keep giving up (below)
};

/// Queries a MihSearcher answered, by path, since it was made.
struct MihCounts {
  std::uint64_t mih;      // by the tables (plus the scan of the rows added after them)
  std::uint64_t gave_up;  // tried, over budget, then scanned
  std::uint64_t scanned;  // scanned without trying: radius above max_radius, or skipped (adaptive)
};

/**
 * A whole search through MIH tables in one call: results equal knn_hamming / range_hamming
 * over every live row of `database` (ties by row), whatever the path of each query.
 *
 * The tables index the first tables.n rows of every database passed (a multiple of 64, so
 * the removed-row bitmap of the later rows is a word slice); the rows after them (the
 * "tail", added since the build) are scanned. Each query first searches the tables within
 * plan.budget; the queries that give up (or are not tried) are gathered and scanned over
 * every row in one knn_hamming / range_hamming call; the others are merged with the scan
 * of the tail by (distance, row).
 *
 * Adaptive plans (method "auto"): per class of queries (k-NN: the bit width of k; radius:
 * the radius, up to 63) the searcher counts consecutive queries that gave up; from
 * kGiveUpStreak on, only every kTrialEvery-th query of the class tries the tables (the
 * others are scanned at once), and one that succeeds resets the count. The decisions of a
 * call are taken before it searches, from the previous calls. Results never depend on it.
 *
 * Thread safety: concurrent calls share only counters (relaxed atomics). The tables are
 * views: the caller keeps them alive and unchanged.
 */
class MihSearcher {
 public:
  static constexpr std::uint32_t kGiveUpStreak = 4;
  static constexpr std::uint32_t kTrialEvery = 16;

  /// Checks the layout (as check_mih_tables, for codes of code_bytes bytes; tables.n a
  /// multiple of 64); std::invalid_argument otherwise.
  MihSearcher(const MihTables& tables, std::size_t code_bytes);

  /// Exact k-NN over every live row of database (rows sorted by (distance, row)); the
  /// checks and messages of knn_hamming, and database must hold at least tables.n rows of
  /// code_bytes bytes. distances, indices: nq * k.
  void knn(const CodeView& queries, const CodeView& database, idx_t k, const MihPlan& plan, dist_t* distances,
           idx_t* indices, SimdLevel level, int n_threads, RemovedRows removed = nullptr);

  /// Every live row of database within max_distance, as range_hamming returns them.
  RangeResult range(const CodeView& queries, const CodeView& database, std::int64_t max_distance, const MihPlan& plan,
                    SimdLevel level, int n_threads, RemovedRows removed = nullptr);

  MihCounts counts() const;

 private:
  struct Streak {
    std::atomic<std::uint32_t> failures{0};  // consecutive queries that gave up
    std::atomic<std::uint32_t> skipped{0};   // queries seen while skipping (every kTrialEvery-th tries)
  };
  void check_database(const CodeView& database) const;
  bool should_try(Streak& streak);
  static void record(Streak& streak, bool answered);
  /// Adds one call's queries to the counters: answered by MIH, gave up, scanned untried.
  void count(std::size_t answered, std::size_t attempts, std::size_t nq);

  MihTables tables_;
  std::size_t code_bytes_;
  std::array<Streak, 64> knn_streaks_{}, range_streaks_{};
  std::atomic<std::uint64_t> mih_{0}, gave_up_{0}, scanned_{0};
};

}  // namespace deephash
