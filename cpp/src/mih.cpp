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
    table_offsets_.reserve(t_.n_tables);
    keys_.reserve(t_.n_tables);
    touched_.reserve(64);
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
      // The work cap refuses a bucket before reading it; the clock is read every
      // kClockEvery units, inside a bucket too: one bucket of clustered codes can hold
      // thousands of rows, whose verification would overrun a time budget checked per bucket.
      if (work_ + 1 + (end - begin) > budget_.max_work) return false;
      if (++work_ >= next_clock_ && over_time()) return false;
      for (std::uint32_t at = begin; at < end; ++at) {
        if (++work_ >= next_clock_ && over_time()) return false;
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
  std::size_t code_bytes() const { return db_.code_bytes; }

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

  // Whether the query has spent its time budget; sets the work of the next clock read.
  bool over_time() {
    next_clock_ = work_ + kClockEvery;
    if (budget_.max_ns == 0) return false;
    const auto spent = std::chrono::steady_clock::now() - started_;
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(spent).count()) >
           budget_.max_ns;
  }
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

// Exact top-k of the searcher's current query among the indexed rows, written sorted by
// (distance, row) to distances / indices (k entries); false (outputs unset) when the
// query exceeded its budget. k-NN grows the radius one table at a time (mih.hpp).
bool knn_query(Searcher& searcher, std::size_t k, dist_t* distances, idx_t* indices) {
  const auto bits = static_cast<std::uint32_t>(8 * searcher.code_bytes());
  std::vector<Candidate> found;
  std::vector<std::size_t> histogram(bits + 1, 0);
  auto keep = [&](dist_t d, std::uint32_t row) {
    found.push_back({d, static_cast<idx_t>(row)});
    ++histogram[static_cast<std::size_t>(d)];
  };
  std::size_t within = 0;  // live rows known within the current radius (all of them)
  for (std::uint32_t r = 0; r <= bits && within < k; ++r) {
    const std::size_t j = r % searcher.n_tables();  // the table whose radius grows to r / m
    if (!searcher.probe(j, static_cast<std::uint32_t>(r / searcher.n_tables()), keep)) return false;
    within += histogram[r];
  }
  // Every live row within `bits` is found, so fewer than k only follows from tables that
  // do not match the codes (caught by the checks); the scan then answers, never UB.
  if (found.size() < k) return false;
  std::partial_sort(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(k), found.end(), ranks_before);
  for (std::size_t i = 0; i < k; ++i) {
    distances[i] = found[i].distance;
    indices[i] = found[i].index;
  }
  return true;
}

// Every live indexed row within `radius` of the searcher's current query, sorted by
// (distance, row), into `found`; false (found cleared) when over budget.
bool range_query(Searcher& searcher, std::uint32_t radius, std::vector<Candidate>& found) {
  auto keep = [&](dist_t d, std::uint32_t row) {
    if (static_cast<std::uint32_t>(d) <= radius) found.push_back({d, static_cast<idx_t>(row)});
  };
  const std::size_t m = searcher.n_tables();
  for (std::size_t j = 0; j < m && j <= radius; ++j)
    for (std::uint32_t s = 0; s <= (radius - j) / m; ++s)
      if (!searcher.probe(j, s, keep)) {
        found.clear();
        return false;
      }
  std::sort(found.begin(), found.end(), ranks_before);
  return true;
}

void append(RangeResult& result, const Candidate* hits, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    result.distances.push_back(hits[i].distance);
    result.indices.push_back(hits[i].index);
  }
}

std::size_t bit_width(std::size_t v) {
  std::size_t width = 0;
  for (; v != 0; v >>= 1) ++width;
  return width;
}

// The rows of a database from `first` on.
CodeView tail_of(const CodeView& database, std::size_t first) {
  return CodeView{database.data + first * database.stride, database.n - first, database.code_bytes, database.stride};
}

// The queries whose flag equals `which`, as a code view (the queries themselves when all
// of them are; else a contiguous copy) and their numbers.
struct QuerySplit {
  std::vector<std::size_t> queries;
  std::vector<std::uint8_t> copy;
  CodeView view;
  std::size_t n() const { return queries.size(); }
};

QuerySplit split_queries(const CodeView& queries, const std::vector<std::uint8_t>& flags, std::uint8_t which) {
  QuerySplit out;
  for (std::size_t q = 0; q < queries.n; ++q)
    if (flags[q] == which) out.queries.push_back(q);
  if (out.n() == queries.n || out.n() == 0) {  // no copy
    out.view = CodeView{queries.data, out.n(), queries.code_bytes, queries.stride};
    return out;
  }
  const std::size_t width = queries.code_bytes;
  out.copy.resize(out.n() * width);
  for (std::size_t s = 0; s < out.n(); ++s)
    std::memcpy(&out.copy[s * width], queries.data + out.queries[s] * queries.stride, width);
  out.view = CodeView{out.copy.data(), out.n(), width, width};
  return out;
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

namespace {

// Widths up to this are counting-sorted directly: their offsets fit in the L2 cache.
constexpr std::uint32_t kDirectWidth = 16;
// Wider tables are sorted in two passes (below): the leading bits of a key pick one of at
// most 2^kMostPartitionBits partitions, the remaining (at least kLowBits) bits a bucket.
constexpr std::uint32_t kMostPartitionBits = 12;
constexpr std::uint32_t kLowBits = 12;

// Counting sort by key, stable: each bucket lists its rows in increasing order. On entry
// table[key + 1] counts the key's rows (table[0] = 0); on return table holds the offsets.
// table[key] serves as the bucket's write cursor, after which it holds the next bucket's
// start, and the final shift restores the starts.
template <class KeyOf>
void counting_sort(std::size_t buckets, std::size_t n, KeyOf key_of, std::uint32_t* table, std::uint32_t* out) {
  for (std::size_t b = 0; b < buckets; ++b) table[b + 1] += table[b];
  for (std::size_t i = 0; i < n; ++i) {
    const auto [key, row] = key_of(i);
    out[table[key]++] = row;
  }
  for (std::size_t b = buckets; b > 0; --b) table[b] = table[b - 1];
  table[0] = 0;
}

struct KeyedRow {
  std::uint32_t key, row;
};

// One table, as counting_sort over every row, with the same result. A wide table's offsets
// and rows do not fit in the caches, so the direct sort would miss twice per row; here the
// rows are first distributed by their key's partition (a few thousand sequential write
// streams) into `scratch`, then each partition, whose offsets and rows are a small
// contiguous piece of the table, is counting-sorted in cache. Both passes are stable.
template <class KeyOf>
void build_table(std::uint32_t width, std::size_t n, KeyOf key_of, std::uint32_t* table, std::uint32_t* out,
                 std::vector<KeyedRow>& scratch) {
  const std::size_t buckets = std::size_t{1} << width;
  std::fill(table, table + buckets + 1, 0u);
  if (width <= kDirectWidth) {
    for (std::size_t i = 0; i < n; ++i) ++table[std::size_t{key_of(i)} + 1];  // keys may be 2^32 - 1
    counting_sort(
        buckets, n, [&](std::size_t i) { return KeyedRow{key_of(i), static_cast<std::uint32_t>(i)}; }, table, out);
    return;
  }
  const std::uint32_t partition_bits = std::min(kMostPartitionBits, width - kLowBits);
  const std::uint32_t low_bits = width - partition_bits;
  std::vector<std::size_t> starts((std::size_t{1} << partition_bits) + 1, 0);
  for (std::size_t i = 0; i < n; ++i) ++starts[(key_of(i) >> low_bits) + 1];
  for (std::size_t p = 1; p < starts.size(); ++p) starts[p] += starts[p - 1];
  scratch.resize(n);
  std::vector<std::size_t> cursor(starts.begin(), starts.end() - 1);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t key = key_of(i);
    scratch[cursor[key >> low_bits]++] = KeyedRow{key, static_cast<std::uint32_t>(i)};
  }
  // Partition p holds the keys [p << low_bits, (p + 1) << low_bits) and the output rows
  // [starts[p], starts[p + 1]); the offsets of its buckets start at starts[p].
  const std::size_t low_buckets = std::size_t{1} << low_bits;
  for (std::size_t p = 0; p + 1 < starts.size(); ++p) {
    const KeyedRow* part = scratch.data() + starts[p];
    const std::size_t size = starts[p + 1] - starts[p];
    std::uint32_t* local = table + (p << low_bits);  // low_buckets + 1 entries (the last is the next's first)
    const std::uint32_t mask = static_cast<std::uint32_t>(low_buckets - 1);
    local[0] = 0;  // the previous partition left its end here: counting_sort starts from 0
    for (std::size_t at = 0; at < size; ++at) ++local[(part[at].key & mask) + 1];
    counting_sort(
        low_buckets, size, [&](std::size_t at) { return KeyedRow{part[at].key & mask, part[at].row}; }, local,
        out + starts[p]);
    for (std::size_t b = 0; b <= low_buckets; ++b) local[b] += static_cast<std::uint32_t>(starts[p]);
  }
}

}  // namespace

void mih_build(const CodeView& codes, const std::uint32_t* begins, const std::uint32_t* widths,
               const std::uint32_t* bit_order, std::size_t n_tables, std::uint32_t* offsets, std::uint32_t* rows,
               int n_threads) {
  check_mih_tables(codes, MihTables{n_tables, begins, widths, bit_order, offsets, rows, codes.n});
  std::vector<std::size_t> bases(n_tables, 0);
  for (std::size_t j = 1; j < n_tables; ++j) bases[j] = bases[j - 1] + (std::size_t{1} << widths[j - 1]) + 1;
  const int threads =
      static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(n_threads, 1)), n_tables));
  run_parallel(threads, [&](int t) {
    std::vector<KeyedRow> scratch;
    for (std::size_t j = static_cast<std::size_t>(t); j < n_tables; j += static_cast<std::size_t>(threads)) {
      const auto key_of = [&](std::size_t i) {
        return static_cast<std::uint32_t>(
            substring_key(codes.data + i * codes.stride, codes.code_bytes, bit_order, begins[j], widths[j]));
      };
      build_table(widths[j], codes.n, key_of, offsets + bases[j], rows + j * codes.n, scratch);
    }
  });
}

void mih_knn(const CodeView& queries, const CodeView& database, const MihTables& tables, idx_t k_signed,
             MihBudget budget, dist_t* distances, idx_t* indices, std::uint8_t* fallback, int n_threads,
             RemovedRows removed) {
  check_mih_knn_args(queries, database, tables, k_signed, removed);
  const auto k = static_cast<std::size_t>(k_signed);
  if (queries.n == 0) return;
  for_queries(queries, database, tables, removed, budget, n_threads, [&](Searcher& searcher, std::size_t q) {
    const bool complete = knn_query(searcher, k, distances + q * k, indices + q * k);
    fallback[q] = complete ? 0 : 1;
  });
}

RangeResult mih_range(const CodeView& queries, const CodeView& database, const MihTables& tables,
                      std::int64_t max_distance, MihBudget budget, std::uint8_t* fallback, int n_threads,
                      RemovedRows removed) {
  check_code_views(queries, database);
  check_mih_tables(database, tables);
  DH_REQUIRE(max_distance >= 0, "max_distance must be >= 0, got ", max_distance);
  const auto radius = static_cast<std::uint32_t>(std::min<std::int64_t>(max_distance, 8 * database.code_bytes));
  std::vector<std::vector<Candidate>> per_query(queries.n);
  for_queries(queries, database, tables, removed, budget, n_threads, [&](Searcher& searcher, std::size_t q) {
    const bool complete = range_query(searcher, radius, per_query[q]);
    fallback[q] = complete ? 0 : 1;
  });
  RangeResult result;
  result.lims.assign(queries.n + 1, 0);
  for (std::size_t q = 0; q < queries.n; ++q)
    result.lims[q + 1] = result.lims[q] + static_cast<idx_t>(per_query[q].size());
  const auto total = static_cast<std::size_t>(result.lims[queries.n]);
  result.distances.reserve(total);
  result.indices.reserve(total);
  for (const auto& found : per_query) append(result, found.data(), found.size());
  return result;
}

// ---------------------------------------------------------------------------- MihSearcher

MihSearcher::MihSearcher(const MihTables& tables, std::size_t code_bytes) : tables_(tables), code_bytes_(code_bytes) {
  DH_REQUIRE(code_bytes >= 1, "MihSearcher needs codes of at least one byte");
  // check_mih_tables reads only the rows and widths of a database, never its codes.
  check_mih_tables(CodeView{nullptr, tables.n, code_bytes, code_bytes}, tables);
  DH_REQUIRE(tables.n % 64 == 0, "MihSearcher needs tables over a multiple of 64 rows, got ", tables.n);
}

void MihSearcher::check_database(const CodeView& database) const {
  DH_REQUIRE(database.code_bytes == code_bytes_, "the codes have ", database.code_bytes,
             " bytes per code but the MIH tables were built for ", code_bytes_);
  DH_REQUIRE(database.n >= tables_.n, "MIH tables index ", tables_.n, " rows but the codes have ", database.n);
}

bool MihSearcher::should_try(Streak& streak) {
  if (streak.failures.load(std::memory_order_relaxed) < kGiveUpStreak) return true;
  return streak.skipped.fetch_add(1, std::memory_order_relaxed) % kTrialEvery == 0;
}

void MihSearcher::record(Streak& streak, bool answered) {
  if (answered) {
    streak.failures.store(0, std::memory_order_relaxed);
    streak.skipped.store(0, std::memory_order_relaxed);
  } else if (streak.failures.load(std::memory_order_relaxed) < (1u << 30)) {
    streak.failures.fetch_add(1, std::memory_order_relaxed);
  }
}

void MihSearcher::count(std::size_t answered, std::size_t attempts, std::size_t nq) {
  mih_.fetch_add(answered, std::memory_order_relaxed);
  gave_up_.fetch_add(attempts - answered, std::memory_order_relaxed);
  scanned_.fetch_add(nq - attempts, std::memory_order_relaxed);
}

MihCounts MihSearcher::counts() const {
  return MihCounts{mih_.load(std::memory_order_relaxed), gave_up_.load(std::memory_order_relaxed),
                   scanned_.load(std::memory_order_relaxed)};
}

void MihSearcher::knn(const CodeView& queries, const CodeView& database, idx_t k_signed, const MihPlan& plan,
                      dist_t* distances, idx_t* indices, SimdLevel level, int n_threads, RemovedRows removed) {
  check_knn_args(queries, database, k_signed, removed);  // the scan's checks and messages
  check_database(database);
  const std::size_t nq = queries.n, k = static_cast<std::size_t>(k_signed), n_idx = tables_.n;
  if (nq == 0) return;
  // The tables answer for their rows' top k_head (fewer when fewer are live).
  const std::size_t k_head = std::min(k, count_live_rows(removed, n_idx));
  std::vector<std::uint8_t> answered(nq, 0);
  std::vector<dist_t> head_d;
  std::vector<idx_t> head_i;
  std::size_t n_answered = 0, n_attempts = 0;
  if (k_head > 0) {
    Streak& streak = knn_streaks_[std::min<std::size_t>(bit_width(k), 63)];
    std::vector<std::uint8_t> attempt(nq, 1);
    n_attempts = nq;
    if (plan.adaptive) {
      n_attempts = 0;
      for (std::size_t q = 0; q < nq; ++q) n_attempts += attempt[q] = should_try(streak) ? 1 : 0;
    }
    if (n_attempts > 0) {
      head_d.resize(nq * k_head);
      head_i.resize(nq * k_head);
      for_queries(queries, database, tables_, removed, plan.budget, n_threads, [&](Searcher& searcher, std::size_t q) {
        if (attempt[q]) answered[q] = knn_query(searcher, k_head, &head_d[q * k_head], &head_i[q * k_head]) ? 1 : 0;
      });
      for (std::size_t q = 0; q < nq; ++q) {
        if (attempt[q] && plan.adaptive) record(streak, answered[q] != 0);
        n_answered += answered[q];
      }
    }
  }
  count(n_answered, n_attempts, nq);
  // The others: one scan of every row (in place when it is every query).
  if (n_answered == 0) {
    knn_hamming(queries, database, k_signed, distances, indices, level, n_threads, removed);
    return;
  }
  const QuerySplit scan = split_queries(queries, answered, 0);
  if (scan.n() > 0) {
    std::vector<dist_t> d(scan.n() * k);
    std::vector<idx_t> i(scan.n() * k);
    knn_hamming(scan.view, database, k_signed, d.data(), i.data(), level, n_threads, removed);
    for (std::size_t s = 0; s < scan.n(); ++s) {
      std::copy_n(&d[s * k], k, distances + scan.queries[s] * k);
      std::copy_n(&i[s * k], k, indices + scan.queries[s] * k);
    }
  }
  // The answered: their tables' top k_head, merged with the tail's top k_tail.
  const CodeView tail = tail_of(database, n_idx);
  const RemovedRows removed_tail = removed == nullptr ? nullptr : removed + n_idx / 64;
  const std::size_t k_tail = std::min(k, count_live_rows(removed_tail, tail.n));
  const QuerySplit found = split_queries(queries, answered, 1);
  std::vector<dist_t> tail_d(found.n() * k_tail);
  std::vector<idx_t> tail_i(found.n() * k_tail);
  if (k_tail > 0)
    knn_hamming(found.view, tail, static_cast<idx_t>(k_tail), tail_d.data(), tail_i.data(), level, n_threads,
                removed_tail);
  for (std::size_t s = 0; s < found.n(); ++s) {
    const std::size_t q = found.queries[s];
    // Two lists sorted by (distance, row), every head row before every tail row: a merge
    // that takes the head's entry on equal distances. k_head + k_tail >= k (live rows).
    std::size_t a = 0, b = 0;
    for (std::size_t out = 0; out < k; ++out) {
      const bool from_head = b == k_tail || (a < k_head && head_d[q * k_head + a] <= tail_d[s * k_tail + b]);
      if (from_head) {
        distances[q * k + out] = head_d[q * k_head + a];
        indices[q * k + out] = head_i[q * k_head + a++];
      } else {
        distances[q * k + out] = tail_d[s * k_tail + b];
        indices[q * k + out] = tail_i[s * k_tail + b++] + static_cast<idx_t>(n_idx);
      }
    }
  }
}

RangeResult MihSearcher::range(const CodeView& queries, const CodeView& database, std::int64_t max_distance,
                               const MihPlan& plan, SimdLevel level, int n_threads, RemovedRows removed) {
  check_code_views(queries, database);
  DH_REQUIRE(max_distance >= 0, "max_distance must be >= 0, got ", max_distance);
  check_database(database);
  const std::size_t nq = queries.n, n_idx = tables_.n;
  const auto radius = static_cast<std::uint32_t>(std::min<std::int64_t>(max_distance, 8 * code_bytes_));
  std::vector<std::uint8_t> attempt(nq, plan.max_radius < 0 || radius <= plan.max_radius ? 1 : 0);
  if (plan.adaptive && nq > 0 && attempt[0]) {
    Streak& streak = range_streaks_[std::min<std::uint32_t>(radius, 63)];
    for (std::size_t q = 0; q < nq; ++q) attempt[q] = should_try(streak) ? 1 : 0;
  }
  std::vector<std::uint8_t> answered(nq, 0);
  std::vector<std::vector<Candidate>> per_query(nq);
  std::size_t n_attempts = 0, n_answered = 0;
  for (const std::uint8_t a : attempt) n_attempts += a;
  if (n_attempts > 0) {
    for_queries(queries, database, tables_, removed, plan.budget, n_threads, [&](Searcher& searcher, std::size_t q) {
      if (attempt[q]) answered[q] = range_query(searcher, radius, per_query[q]) ? 1 : 0;
    });
    Streak& streak = range_streaks_[std::min<std::uint32_t>(radius, 63)];
    for (std::size_t q = 0; q < nq; ++q) {
      if (attempt[q] && plan.adaptive) record(streak, answered[q] != 0);
      n_answered += answered[q];
    }
  }
  count(n_answered, n_attempts, nq);
  if (n_answered == 0) return range_hamming(queries, database, max_distance, level, n_threads, removed);
  // The others: one scan of every row.
  const QuerySplit scan = split_queries(queries, answered, 0);
  RangeResult scanned;
  if (scan.n() > 0) scanned = range_hamming(scan.view, database, max_distance, level, n_threads, removed);
  // The answered: the tail's rows within the radius, merged after the tables' (by distance).
  const CodeView tail = tail_of(database, n_idx);
  const RemovedRows removed_tail = removed == nullptr ? nullptr : removed + n_idx / 64;
  const QuerySplit found = split_queries(queries, answered, 1);
  RangeResult tail_hits;
  if (tail.n > 0) tail_hits = range_hamming(found.view, tail, max_distance, level, n_threads, removed_tail);
  RangeResult result;
  result.lims.assign(nq + 1, 0);
  std::size_t total = scanned.indices.size() + tail_hits.indices.size();
  for (std::size_t q = 0; q < nq; ++q) total += per_query[q].size();
  result.distances.reserve(total);
  result.indices.reserve(total);
  std::size_t s_scan = 0, s_found = 0;
  std::vector<Candidate> merged;
  for (std::size_t q = 0; q < nq; ++q) {
    if (!answered[q]) {
      const auto from = static_cast<std::size_t>(scanned.lims[s_scan]);
      const auto to = static_cast<std::size_t>(scanned.lims[++s_scan]);
      result.distances.insert(result.distances.end(), scanned.distances.begin() + from, scanned.distances.begin() + to);
      result.indices.insert(result.indices.end(), scanned.indices.begin() + from, scanned.indices.begin() + to);
    } else if (tail.n == 0) {
      append(result, per_query[q].data(), per_query[q].size());
      ++s_found;
    } else {
      const auto from = static_cast<std::size_t>(tail_hits.lims[s_found]);
      const auto to = static_cast<std::size_t>(tail_hits.lims[++s_found]);
      merged.clear();
      for (std::size_t at = from; at < to; ++at)
        merged.push_back({tail_hits.distances[at], tail_hits.indices[at] + static_cast<idx_t>(n_idx)});
      std::vector<Candidate> both(per_query[q].size() + merged.size());
      std::merge(per_query[q].begin(), per_query[q].end(), merged.begin(), merged.end(), both.begin(), ranks_before);
      append(result, both.data(), both.size());
    }
    result.lims[q + 1] = static_cast<idx_t>(result.indices.size());
  }
  return result;
}

}  // namespace deephash
