// mih.cpp: multi-index hashing (mih.hpp): counting-sort tables, exact radius and k-NN
// search with a work budget. Baseline ISA: verification reads candidate rows at random,
// where a scalar POPCNT per word is as fast as any vector kernel.
#include "deephash/mih.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "deephash/errors.hpp"
#include "deephash/threads.hpp"
#include "deephash/topk.hpp"

namespace deephash {
namespace {

constexpr std::uint32_t kMaxWidth = 32;

// Bits [begin, begin + width) of a code as an integer (bit i of the code is bit i % 8 of
// byte i / 8; width <= 32, so at most five bytes are read).
std::uint64_t substring(const std::uint8_t* code, std::size_t code_bytes, std::uint32_t begin, std::uint32_t width) {
  const std::size_t first = begin / 8;
  const std::size_t last = std::min<std::size_t>(code_bytes, (std::size_t{begin} + width + 7) / 8);
  std::uint64_t value = 0;
  for (std::size_t i = first; i < last; ++i) value |= std::uint64_t{code[i]} << (8 * (i - first));
  return (value >> (begin % 8)) & ((std::uint64_t{1} << width) - 1);
}

// The key of substring (begin, width) under an optional bit order (mih.hpp).
std::uint64_t substring_key(const std::uint8_t* code, std::size_t code_bytes, const std::uint32_t* bit_order,
                            std::uint32_t begin, std::uint32_t width) {
  if (bit_order == nullptr) return substring(code, code_bytes, begin, width);
  std::uint64_t key = 0;
  for (std::uint32_t t = 0; t < width; ++t) {
    const std::uint32_t bit = bit_order[begin + t];
    key |= static_cast<std::uint64_t>((code[bit / 8] >> (bit % 8)) & 1u) << t;
  }
  return key;
}

dist_t full_distance(const std::uint8_t* a, const std::uint8_t* b, std::size_t n_bytes) {
  std::uint64_t total = 0;
  std::size_t i = 0;
  for (; i + 8 <= n_bytes; i += 8) {
    std::uint64_t x, y;
    std::memcpy(&x, a + i, 8);
    std::memcpy(&y, b + i, 8);
    total += static_cast<std::uint64_t>(__builtin_popcountll(x ^ y));
  }
  for (; i < n_bytes; ++i) total += static_cast<std::uint64_t>(__builtin_popcount(static_cast<unsigned>(a[i] ^ b[i])));
  return static_cast<dist_t>(total);
}

bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.distance < b.distance || (a.distance == b.distance && a.index < b.index);
}

// One thread's query state: the rows seen by the current query (a bitmap cleared row by
// row after each query) and the work spent.
class Searcher {
 public:
  Searcher(const CodeView& database, const MihTables& tables, RemovedRows removed, MihBudget budget)
      : db_(database), t_(tables), removed_(removed), budget_(budget), seen_(seen_bitmap(tables.n)) {
    std::size_t base = 0;
    for (std::size_t j = 0; j < t_.n_tables; ++j) {
      table_offsets_.push_back(t_.offsets + base);
      base += (std::size_t{1} << t_.widths[j]) + 1;
    }
  }

  void start(const std::uint8_t* query) {
    query_ = query;
    keys_.clear();
    for (std::size_t j = 0; j < t_.n_tables; ++j)
      keys_.push_back(substring_key(query, db_.code_bytes, t_.bit_order, t_.begins[j], t_.widths[j]));
    work_ = 0;
    next_clock_ = kClockEvery;
    if (budget_.max_ns != 0) started_ = std::chrono::steady_clock::now();
  }

  Searcher(const Searcher&) = delete;
  Searcher& operator=(const Searcher&) = delete;
  ~Searcher() { finish(); }  // also when a corrupt table threw mid-query

  void finish() {
    for (const std::uint32_t row : touched_) seen_[row / 64] &= ~(std::uint64_t{1} << (row % 64));
    touched_.clear();
  }

  // Probes table j at exactly radius s: emit(distance, row) for every live row not seen
  // before. Returns false once the work budget is spent.
  template <class Emit>
  bool probe(std::size_t j, std::uint32_t s, Emit emit) {
    const std::uint32_t width = t_.widths[j];
    if (s > width) return true;
    const std::uint32_t* offsets = table_offsets_[j];
    const std::uint32_t* rows = t_.rows + j * t_.n;
    const std::uint64_t limit = std::uint64_t{1} << width;
    std::uint64_t mask = (std::uint64_t{1} << s) - 1;  // Gosper's hack: every mask of s bits
    while (mask < limit) {
      const std::uint64_t key = keys_[j] ^ mask;
      const std::uint32_t begin = offsets[key], end = offsets[key + 1];
      // Tables are data (they may come from a file): a bucket outside the rows is refused.
      DH_REQUIRE(begin <= end && end <= t_.n, "corrupt MIH table ", j, ": bucket ", key, " spans [", begin, ", ", end,
                 ") of ", t_.n, " rows");
      work_ += 1 + (end - begin);
      if (work_ > budget_.max_work) return false;
      if (budget_.max_ns != 0 && work_ >= next_clock_) {
        next_clock_ = work_ + kClockEvery;
        const auto spent = std::chrono::steady_clock::now() - started_;
        if (static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(spent).count()) >
            budget_.max_ns)
          return false;
      }
      for (std::uint32_t at = begin; at < end; ++at) {
        const std::uint32_t row = rows[at];
        DH_REQUIRE(row < t_.n, "corrupt MIH table ", j, ": row ", row, " of ", t_.n);
        std::uint64_t& word = seen_[row / 64];
        const std::uint64_t bit = std::uint64_t{1} << (row % 64);
        if (word & bit) continue;
        word |= bit;
        touched_.push_back(row);
        if (removed_ != nullptr && ((removed_[row / 64] >> (row % 64)) & 1u)) continue;
        emit(full_distance(query_, db_.data + std::size_t{row} * db_.stride, db_.code_bytes), row);
      }
      if (s == 0) break;
      const std::uint64_t lowest = mask & (~mask + 1);
      const std::uint64_t ripple = mask + lowest;
      mask = (((ripple ^ mask) >> 2) / lowest) | ripple;
    }
    return true;
  }

  std::size_t n_tables() const { return t_.n_tables; }

 private:
  CodeView db_;
  MihTables t_;
  RemovedRows removed_;
  static constexpr std::uint64_t kClockEvery = 32;  // units of work between clock reads (~2-4 us)
  MihBudget budget_;
  std::uint64_t next_clock_ = kClockEvery;
  std::chrono::steady_clock::time_point started_{};
  // The thread's bitmap of the rows the current query has seen: kept across calls (zeroing
  // n bits per call would cost more than a small-radius query), all zero between queries.
  static std::vector<std::uint64_t>& seen_bitmap(std::size_t n) {
    thread_local std::vector<std::uint64_t> bitmap;
    if (bitmap.size() < words_for_rows(n)) bitmap.resize(words_for_rows(n), 0);
    return bitmap;
  }

  std::vector<const std::uint32_t*> table_offsets_;
  std::vector<std::uint64_t>& seen_;
  std::vector<std::uint32_t> touched_;
  std::vector<std::uint64_t> keys_;
  const std::uint8_t* query_ = nullptr;
  std::uint64_t work_ = 0;
};

// Queries split across threads, each with its own Searcher; body(searcher, q).
template <class Body>
void for_queries(const CodeView& queries, const CodeView& database, const MihTables& tables, RemovedRows removed,
                 MihBudget budget, int n_threads, Body body) {
  if (queries.n == 0) return;
  const int threads =
      static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(n_threads, 1)), queries.n));
  run_parallel(threads, [&](int t) {
    std::size_t q0, q1;
    split_range(queries.n, threads, t, q0, q1);
    Searcher searcher(database, tables, removed, budget);
    for (std::size_t q = q0; q < q1; ++q) {
      searcher.start(queries.data + q * queries.stride);
      body(searcher, q);
      searcher.finish();
    }
  });
}

}  // namespace

void check_mih_tables(const CodeView& database, const MihTables& tables) {
  DH_REQUIRE(tables.n_tables >= 1, "MIH needs at least one table");
  DH_REQUIRE(tables.n <= database.n, "MIH tables index ", tables.n, " rows but the codes have ", database.n);
  DH_REQUIRE(tables.n < (std::size_t{1} << 32), "MIH indexes fewer than 2^32 rows, got ", tables.n);
  mih_offsets_size(tables.begins, tables.widths, tables.n_tables, database.code_bytes);
  // Pigeonhole needs disjoint substrings (each bit in at most one).
  std::vector<std::pair<std::uint32_t, std::uint32_t>> spans;
  for (std::size_t j = 0; j < tables.n_tables; ++j) spans.emplace_back(tables.begins[j], tables.widths[j]);
  std::sort(spans.begin(), spans.end());
  for (std::size_t j = 1; j < spans.size(); ++j)
    DH_REQUIRE(spans[j].first >= spans[j - 1].first + spans[j - 1].second, "MIH substrings must not overlap (bits ",
               spans[j - 1].first, "..", spans[j - 1].first + spans[j - 1].second, " and ", spans[j].first, "..)");
  if (tables.bit_order != nullptr) {
    const std::size_t bits = 8 * database.code_bytes;
    std::vector<bool> seen(bits, false);
    for (std::size_t i = 0; i < bits; ++i) {
      const std::uint32_t bit = tables.bit_order[i];
      DH_REQUIRE(bit < bits && !seen[bit], "MIH bit_order must be a permutation of the ", bits, " bits");
      seen[bit] = true;
    }
  }
}

void check_mih_knn_args(const CodeView& queries, const CodeView& database, const MihTables& tables, idx_t k,
                        RemovedRows removed) {
  check_code_views(queries, database);
  check_mih_tables(database, tables);
  const std::size_t live = count_live_rows(removed, tables.n);
  DH_REQUIRE(k >= 1 && static_cast<std::size_t>(k) <= live, "k must be in [1, ", live,
             "] (the live indexed rows), got ", k);
}

std::size_t mih_offsets_size(const std::uint32_t* begins, const std::uint32_t* widths, std::size_t n_tables,
                             std::size_t code_bytes) {
  std::size_t total = 0;
  for (std::size_t j = 0; j < n_tables; ++j) {
    DH_REQUIRE(widths[j] >= 1 && widths[j] <= kMaxWidth, "MIH substring widths must be in [1, 32], got ", widths[j]);
    DH_REQUIRE(std::size_t{begins[j]} + widths[j] <= 8 * code_bytes, "MIH substring ", j, " (bits ", begins[j], "..",
               begins[j] + widths[j], ") is outside a code of ", 8 * code_bytes, " bits");
    total += (std::size_t{1} << widths[j]) + 1;
  }
  return total;
}

void mih_build(const CodeView& codes, const std::uint32_t* begins, const std::uint32_t* widths,
               const std::uint32_t* bit_order, std::size_t n_tables, std::uint32_t* offsets, std::uint32_t* rows,
               int n_threads) {
  check_mih_tables(codes, MihTables{n_tables, begins, widths, bit_order, offsets, rows, codes.n});
  std::vector<std::size_t> bases(n_tables, 0);
  for (std::size_t j = 1; j < n_tables; ++j) bases[j] = bases[j - 1] + (std::size_t{1} << widths[j - 1]) + 1;
  const int threads =
      static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(n_threads, 1)), n_tables));
  run_parallel(threads, [&](int t) {
    std::vector<std::uint32_t> keys(codes.n);
    for (std::size_t j = static_cast<std::size_t>(t); j < n_tables; j += static_cast<std::size_t>(threads)) {
      const std::size_t buckets = std::size_t{1} << widths[j];
      std::uint32_t* table = offsets + bases[j];  // buckets + 1 entries
      std::uint32_t* out = rows + j * codes.n;
      std::fill(table, table + buckets + 1, 0u);
      for (std::size_t i = 0; i < codes.n; ++i) {
        keys[i] = static_cast<std::uint32_t>(
            substring_key(codes.data + i * codes.stride, codes.code_bytes, bit_order, begins[j], widths[j]));
        ++table[std::size_t{keys[i]} + 1];  // keys may be 2^32 - 1
      }
      for (std::size_t b = 0; b < buckets; ++b) table[b + 1] += table[b];
      // Counting sort, stable: each bucket lists its rows in increasing order. table[key]
      // serves as the bucket's write cursor, after which it holds the next bucket's start.
      for (std::size_t i = 0; i < codes.n; ++i) out[table[keys[i]]++] = static_cast<std::uint32_t>(i);
      for (std::size_t b = buckets; b > 0; --b) table[b] = table[b - 1];
      table[0] = 0;
    }
  });
}

void mih_knn(const CodeView& queries, const CodeView& database, const MihTables& tables, idx_t k_signed,
             MihBudget budget, dist_t* distances, idx_t* indices, std::uint8_t* fallback, int n_threads,
             RemovedRows removed) {
  check_mih_knn_args(queries, database, tables, k_signed, removed);
  const auto k = static_cast<std::size_t>(k_signed);
  const auto bits = static_cast<std::uint32_t>(8 * database.code_bytes);
  if (queries.n == 0) return;
  for_queries(queries, database, tables, removed, budget, n_threads, [&](Searcher& searcher, std::size_t q) {
    std::vector<Candidate> found;
    std::vector<std::size_t> histogram(bits + 1, 0);
    auto keep = [&](dist_t d, std::uint32_t row) {
      found.push_back({d, static_cast<idx_t>(row)});
      ++histogram[static_cast<std::size_t>(d)];
    };
    std::size_t within = 0;  // live rows known within the current radius (all of them)
    bool complete = true;
    for (std::uint32_t r = 0; r <= bits && within < k; ++r) {
      const std::size_t j = r % searcher.n_tables();  // the table whose radius grows to r / m
      if (!searcher.probe(j, static_cast<std::uint32_t>(r / searcher.n_tables()), keep)) {
        complete = false;
        break;
      }
      within += histogram[r];
    }
    // Every live row within `bits` is found, so fewer than k only follows from tables that
    // do not match the codes (caught by the checks); the scan then answers, never UB.
    if (found.size() < k) complete = false;
    fallback[q] = complete ? 0 : 1;
    if (!complete) return;
    std::partial_sort(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(k), found.end(), ranks_before);
    for (std::size_t i = 0; i < k; ++i) {
      distances[q * k + i] = found[i].distance;
      indices[q * k + i] = found[i].index;
    }
  });
}

RangeResult mih_range(const CodeView& queries, const CodeView& database, const MihTables& tables,
                      std::int64_t max_distance, MihBudget budget, std::uint8_t* fallback, int n_threads,
                      RemovedRows removed) {
  check_code_views(queries, database);
  check_mih_tables(database, tables);
  DH_REQUIRE(max_distance >= 0, "max_distance must be >= 0, got ", max_distance);
  const auto bits = static_cast<std::int64_t>(8 * database.code_bytes);
  const auto radius = static_cast<std::uint32_t>(std::min(max_distance, bits));
  std::vector<std::vector<Candidate>> per_query(queries.n);
  for_queries(queries, database, tables, removed, budget, n_threads, [&](Searcher& searcher, std::size_t q) {
    std::vector<Candidate>& found = per_query[q];
    auto keep = [&](dist_t d, std::uint32_t row) {
      if (static_cast<std::uint32_t>(d) <= radius) found.push_back({d, static_cast<idx_t>(row)});
    };
    const std::size_t m = searcher.n_tables();
    bool complete = true;
    for (std::size_t j = 0; j < m && complete && j <= radius; ++j)
      for (std::uint32_t s = 0; s <= (radius - j) / m && complete; ++s) complete = searcher.probe(j, s, keep);
    fallback[q] = complete ? 0 : 1;
    if (!complete) found.clear();
    std::sort(found.begin(), found.end(), ranks_before);
  });
  RangeResult result;
  result.lims.assign(queries.n + 1, 0);
  std::size_t total = 0;
  for (std::size_t q = 0; q < queries.n; ++q) {
    total += per_query[q].size();
    result.lims[q + 1] = static_cast<idx_t>(total);
  }
  result.distances.reserve(total);
  result.indices.reserve(total);
  for (const auto& found : per_query)
    for (const Candidate& hit : found) {
      result.distances.push_back(hit.distance);
      result.indices.push_back(hit.index);
    }
  return result;
}

}  // namespace deephash
