// deephash/merge.hpp: merging the top-k lists of searches over disjoint row ranges (shards).
//
// A search split over shards returns, per shard, each query's best results sorted by
// (distance, row). Given the shards in the order of their rows, the best k of the union
// ranked by (distance, shard, column) is exactly what one search over all rows returns,
// ties included: this is the merge that makes sharded results independent of the layout.
#pragma once
#include <cstddef>
#include <vector>

#include "deephash/types.hpp"

namespace deephash {

/// The largest distance merge_topk accepts (its counting pass keeps one counter per distance
/// up to the largest one it sees).
constexpr dist_t kMaxMergeDistance = dist_t{1} << 24;

/// One shard's results for nq queries: query q's `cols` results are distances[q * cols + c]
/// and payloads[q * cols + c] (any 8-byte value: rows, positions or ids), c in [0, cols).
struct TopkPart {
  const dist_t* distances;
  const idx_t* payloads;
  std::size_t cols;
};

/**
 * Writes, for each of nq queries, the best width = min(k, sum of cols) results over all
 * parts, ranked by (distance, part, column), to out_distances / out_payloads (nq * width).
 * Each row of each part must have distances in [0, max_distance], non-decreasing; anything
 * else, k < 1 or max_distance outside [0, kMaxMergeDistance] throws std::invalid_argument.
 * Linear in the input (a check and a counting pass per query), parallel over queries.
 */
void merge_topk(const std::vector<TopkPart>& parts, std::size_t nq, std::size_t k, dist_t max_distance,
                dist_t* out_distances, idx_t* out_payloads, int n_threads);

}  // namespace deephash
