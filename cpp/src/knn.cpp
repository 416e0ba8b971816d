// knn.cpp: blocked exact Hamming search (top-k and radius) over packed codes.
//
// Plan of one call: the kernel is resolved once from the SIMD level; every query is
// turned into zero-padded words once; the database is walked in blocks of about
// kBlockBytes, each laid out word-major (hamming.hpp) in a per-thread scratch buffer that
// stays in L1/L2 while every query of the thread scans it. Each query owns a collector
// whose threshold (the current k-th distance, or the radius) the kernel filters against
// before anything reaches the collector.
// Threads: a batch (at least kMinQueriesToTranspose queries per thread) is split by
// queries; fewer queries split the database into contiguous ranges, and each query's
// per-range collectors are merged by (distance, index), so the result never depends on
// the thread count.
#include "deephash/knn.hpp"

#include <algorithm>
#include <memory>

#include "deephash/errors.hpp"
#include "deephash/hamming.hpp"
#include "deephash/threads.hpp"
#include "deephash/topk.hpp"

namespace deephash {
namespace {

// Below this many queries per block, transposing a block costs more than it saves: the
// queries scan the packed rows in place (scan_rows_kernel).
constexpr std::size_t kMinQueriesToTranspose = 4;
// Starting a thread costs ~30-50 us: each must get at least this many code-words to compare.
constexpr std::size_t kMinWordsPerThread = std::size_t{1} << 19;

struct Plan {
  CodeView database;
  std::size_t n_words;
  bool rows_are_word_major;  // 8-byte contiguous codes: scan the caller's array in place
  ScanFn scan;
  ScanRowsFn scan_rows;
  std::vector<std::uint64_t> query_words;  // nq * n_words
};

Plan make_plan(const CodeView& queries, const CodeView& database, SimdLevel level) {
  Plan plan{database,
            words_for_bytes(database.code_bytes),
            database.code_bytes == 8 && database.stride == 8,
            scan_kernel(level),
            scan_rows_kernel(level),
            {}};
  plan.query_words.resize(queries.n * plan.n_words);
  for (std::size_t q = 0; q < queries.n; ++q)
    load_words(queries.data + q * queries.stride, queries.code_bytes, plan.query_words.data() + q * plan.n_words);
  return plan;
}

// Few-query scans stream the database from memory: request the next block's cache lines
// while the current one is scanned (hardware prefetchers stop at 4 KiB page boundaries).
void prefetch_rows(const CodeView& db, std::size_t begin, std::size_t end) {
  if (begin >= end) return;
  const std::uint8_t* first = db.data + begin * db.stride;
  const std::size_t bytes = (end - begin - 1) * db.stride + db.code_bytes;
  for (std::size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(first + offset, 0, 0);
}

// Scans database rows [db_begin, db_end) for queries [q_begin, q_end); collectors[q - q_begin].
template <class Collector>
void scan_range(const Plan& plan, std::size_t q_begin, std::size_t q_end, std::size_t db_begin, std::size_t db_end,
                Collector* collectors) {
  const std::size_t w = plan.n_words, block = block_pitch(w);
  const CodeView& db = plan.database;
  // Few queries stream the database (prefetch it; do not transpose); many reuse each block.
  const bool few_queries = q_end - q_begin < kMinQueriesToTranspose;
  const bool transpose = !plan.rows_are_word_major && !few_queries;
  if (!plan.rows_are_word_major && few_queries) {
    for (std::size_t b0 = db_begin; b0 < db_end; b0 += block) {
      const std::size_t nb = std::min(block, db_end - b0);
      prefetch_rows(db, b0 + nb, std::min(b0 + 2 * block, db_end));
      for (std::size_t q = q_begin; q < q_end; ++q) {
        Collector& c = collectors[q - q_begin];
        plan.scan_rows(db.data + b0 * db.stride, db.stride, nb, db.code_bytes, plan.query_words.data() + q * w,
                       static_cast<idx_t>(b0), c.threshold(), &Collector::emit, &c);
      }
    }
    return;
  }
  std::unique_ptr<std::uint64_t[]> storage;
  std::uint64_t* scratch = nullptr;
  if (transpose) {
    storage.reset(new std::uint64_t[w * block + 8]);
    const auto address = reinterpret_cast<std::uintptr_t>(storage.get());
    scratch = storage.get() + ((64 - address % 64) % 64) / 8;  // 64-byte aligned rows
  }
  for (std::size_t b0 = db_begin; b0 < db_end; b0 += block) {
    const std::size_t nb = std::min(block, db_end - b0);
    const std::uint64_t* words;
    std::size_t ld;
    if (plan.rows_are_word_major) {
      words = reinterpret_cast<const std::uint64_t*>(db.data + b0 * 8);  // kernels load unaligned
      ld = nb;
      if (few_queries) prefetch_rows(db, b0 + nb, std::min(b0 + 2 * block, db_end));
    } else {
      ld = block;  // the kernels' constant-pitch fast path
      transpose_block(db.data + b0 * db.stride, db.stride, nb, db.code_bytes, scratch, ld);
      words = scratch;
    }
    for (std::size_t q = q_begin; q < q_end; ++q) {
      Collector& c = collectors[q - q_begin];
      plan.scan(words, ld, nb, w, plan.query_words.data() + q * w, static_cast<idx_t>(b0), c.threshold(),
                &Collector::emit, &c);
    }
  }
}

// One complete collector per query, built by make_collector().
template <class Collector, class Make>
std::vector<Collector> collect(const Plan& plan, std::size_t nq, int n_threads, Make make_collector) {
  const std::size_t n = plan.database.n;
  const std::size_t work = nq * n * plan.n_words;
  int threads = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(n_threads, 1)),
                                                       std::max<std::size_t>(work / kMinWordsPerThread, 1)));
  std::vector<Collector> result;
  result.reserve(nq);
  for (std::size_t q = 0; q < nq; ++q) result.push_back(make_collector());
  if (threads <= 1) {
    scan_range(plan, 0, nq, 0, n, result.data());
  } else if (nq >= kMinQueriesToTranspose * static_cast<std::size_t>(threads)) {
    run_parallel(threads, [&](int t) {
      std::size_t q0, q1;
      split_range(nq, threads, t, q0, q1);
      scan_range(plan, q0, q1, 0, n, result.data() + q0);
    });
  } else {
    threads =
        static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads), std::max<std::size_t>(n / 64, 1)));
    std::vector<std::vector<Collector>> parts(static_cast<std::size_t>(threads));
    parts[0] = std::move(result);
    for (std::size_t t = 1; t < parts.size(); ++t)
      for (std::size_t q = 0; q < nq; ++q) parts[t].push_back(make_collector());
    run_parallel(threads, [&](int t) {
      std::size_t d0, d1;
      split_range(n, threads, t, d0, d1);
      scan_range(plan, 0, nq, d0, d1, parts[static_cast<std::size_t>(t)].data());
    });
    result = std::move(parts[0]);
    for (std::size_t t = 1; t < parts.size(); ++t)  // merges by (distance, index)
      for (std::size_t q = 0; q < nq; ++q) result[q].absorb(parts[t][q]);
  }
  return result;
}

// Runs one collector per query (made by make()) over the live rows, then hands each
// query's collector to finish(q, collector): behind the removed-row filter when there is one.
template <class Inner, class Make, class Finish>
void collect_live(const Plan& plan, std::size_t nq, int n_threads, RemovedRows removed, Make make, Finish finish) {
  if (removed == nullptr) {
    auto found = collect<Inner>(plan, nq, n_threads, make);
    for (std::size_t q = 0; q < nq; ++q) finish(q, found[q]);
    return;
  }
  using Skipping = SkippingCollector<Inner>;
  auto found = collect<Skipping>(plan, nq, n_threads, [&] { return Skipping(make(), removed); });
  for (std::size_t q = 0; q < nq; ++q) finish(q, found[q].inner());
}

}  // namespace

std::size_t count_live_rows(RemovedRows removed, std::size_t n) {
  if (removed == nullptr) return n;
  std::size_t gone = 0;
  for (std::size_t w = 0; w < n / 64; ++w) gone += static_cast<std::size_t>(__builtin_popcountll(removed[w]));
  if (n % 64 != 0) gone += static_cast<std::size_t>(__builtin_popcountll(removed[n / 64] & ((1ull << (n % 64)) - 1)));
  return n - gone;
}

void check_code_views(const CodeView& queries, const CodeView& database) {
  DH_REQUIRE(database.code_bytes >= 1, "codes must have at least one byte per code");
  DH_REQUIRE(queries.code_bytes == database.code_bytes, "queries have ", queries.code_bytes,
             " bytes per code but codes have ", database.code_bytes);
  DH_REQUIRE(database.stride >= database.code_bytes && queries.stride >= queries.code_bytes,
             "row stride is smaller than the code width");
}

void check_knn_args(const CodeView& queries, const CodeView& database, idx_t k, RemovedRows removed) {
  check_code_views(queries, database);
  const std::size_t live = count_live_rows(removed, database.n);
  DH_REQUIRE(k >= 1 && static_cast<std::size_t>(k) <= live, "k must be in [1, ", live,
             removed == nullptr ? "] (len(codes)), got " : "] (the live rows), got ", k);
}

void knn_hamming(const CodeView& queries, const CodeView& database, idx_t k_signed, dist_t* distances, idx_t* indices,
                 SimdLevel level, int n_threads, RemovedRows removed) {
  check_knn_args(queries, database, k_signed, removed);
  const auto k = static_cast<std::size_t>(k_signed);
  if (queries.n == 0) return;
  const Plan plan = make_plan(queries, database, level);
  collect_live<TopKCollector>(
      plan, queries.n, n_threads, removed, [k] { return TopKCollector(k); },
      [&](std::size_t q, TopKCollector& found) {
        const std::size_t written = found.write_sorted(distances + q * k, indices + q * k);
        DH_INTERNAL(written == k);
      });
}

RangeResult range_hamming(const CodeView& queries, const CodeView& database, std::int64_t max_distance, SimdLevel level,
                          int n_threads, RemovedRows removed) {
  check_code_views(queries, database);
  DH_REQUIRE(max_distance >= 0, "max_distance must be >= 0, got ", max_distance);
  RangeResult result;
  result.lims.assign(queries.n + 1, 0);
  if (queries.n == 0 || database.n == 0) return result;
  const Plan plan = make_plan(queries, database, level);
  // Distances never exceed 8 * code_bytes, so larger radii are all the same (and cannot overflow).
  const auto cap = static_cast<std::int64_t>(std::min<std::size_t>(8 * database.code_bytes, 1u << 30));
  const auto radius = static_cast<dist_t>(std::min(max_distance, cap));
  std::vector<RangeCollector> found;
  found.reserve(queries.n);
  collect_live<RangeCollector>(
      plan, queries.n, n_threads, removed, [radius] { return RangeCollector(radius); },
      [&](std::size_t, RangeCollector& c) { found.push_back(std::move(c)); });
  std::size_t total = 0;
  for (std::size_t q = 0; q < queries.n; ++q) {
    found[q].sort();
    total += found[q].candidates().size();
    result.lims[q + 1] = static_cast<idx_t>(total);
  }
  result.distances.reserve(total);
  result.indices.reserve(total);
  for (const auto& c : found) {
    for (const Candidate& hit : c.candidates()) {
      result.distances.push_back(hit.distance);
      result.indices.push_back(hit.index);
    }
  }
  return result;
}

}  // namespace deephash
