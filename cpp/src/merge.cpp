// merge.cpp: merge_topk (see merge.hpp).
#include "deephash/merge.hpp"

#include <algorithm>
#include <cstdint>

#include "deephash/errors.hpp"
#include "deephash/threads.hpp"

namespace deephash {
namespace {

// Checks one query's rows of every part; returns the largest distance (-1: no results).
dist_t check_query(const std::vector<TopkPart>& parts, std::size_t q, dist_t max_distance) {
  dist_t largest = -1;
  for (std::size_t p = 0; p < parts.size(); ++p) {
    const TopkPart& part = parts[p];
    const dist_t* d = part.distances + q * part.cols;
    dist_t previous = 0;
    for (std::size_t c = 0; c < part.cols; ++c) {
      DH_REQUIRE(d[c] >= previous && d[c] <= max_distance, "part ", p, ", query ", q, ": distances must be ",
                 "non-decreasing and in [0, ", max_distance, "], got ", d[c], " at column ", c);
      previous = d[c];
    }
    if (part.cols > 0) largest = std::max(largest, previous);
  }
  return largest;
}

}  // namespace

void merge_topk(const std::vector<TopkPart>& parts, std::size_t nq, std::size_t k, dist_t max_distance,
                dist_t* out_distances, idx_t* out_payloads, int n_threads) {
  DH_REQUIRE(k >= 1, "k must be >= 1, got ", k);
  DH_REQUIRE(max_distance >= 0 && max_distance <= kMaxMergeDistance, "max_distance must be in [0, ", kMaxMergeDistance,
             "], got ", max_distance);
  std::size_t total = 0;
  for (const TopkPart& part : parts) total += part.cols;
  const std::size_t width = std::min(k, total);
  if (nq == 0 || width == 0) return;
  for_ranges(nq, 2 * total, n_threads, [&](std::size_t begin, std::size_t end) {
    std::vector<std::size_t> next;  // per distance: the count, then the next output slot
    for (std::size_t q = begin; q < end; ++q) {
      const dist_t largest = check_query(parts, q, max_distance);
      if (next.size() < static_cast<std::size_t>(largest) + 1) next.resize(static_cast<std::size_t>(largest) + 1, 0);
      for (const TopkPart& part : parts) {
        const dist_t* d = part.distances + q * part.cols;
        for (std::size_t c = 0; c < part.cols; ++c) ++next[static_cast<std::size_t>(d[c])];
      }
      // Results at distances below `cut` all fit; at `cut` the first ones (in part order) fill the rest.
      std::size_t placed = 0;
      dist_t cut = 0;
      for (; cut <= largest; ++cut) {
        const std::size_t n = next[static_cast<std::size_t>(cut)];
        next[static_cast<std::size_t>(cut)] = placed;
        placed += n;
        if (placed >= width) break;
      }
      dist_t* od = out_distances + q * width;
      idx_t* op = out_payloads + q * width;
      for (const TopkPart& part : parts) {
        const dist_t* d = part.distances + q * part.cols;
        const idx_t* v = part.payloads + q * part.cols;
        for (std::size_t c = 0; c < part.cols && d[c] <= cut; ++c) {
          const std::size_t slot = next[static_cast<std::size_t>(d[c])]++;
          if (slot >= width) break;  // only at the cut distance: this part's later ones lose too
          od[slot] = d[c];
          op[slot] = v[c];
        }
      }
      std::fill(next.begin(), next.begin() + (largest + 1), std::size_t{0});  // no-op when largest = -1
    }
  });
}

}  // namespace deephash
