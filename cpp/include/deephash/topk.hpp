// deephash/topk.hpp: candidate collectors fed by the scan kernels' emit callback.
//
// Both collectors rely on the kernels' order: within one collector, candidates arrive
// in increasing index, so a candidate with the same distance as the current k-th best
// always loses the tie and the filter can be a strict `distance < threshold`. Collectors
// of disjoint index ranges merge (absorb) in any order: results are ranked by
// (distance, index) alone.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "deephash/types.hpp"

namespace deephash {

struct Candidate {
  dist_t distance;
  idx_t index;
};

/// Exact top-k by (distance, index). For k <= kHeapMaxK (measured crossover) the candidates form a max-heap
/// whose top (the current k-th best) is the threshold, tightened by every insertion; for
/// larger k an unsorted buffer of up to 2k candidates is cut to the best k (nth_element)
/// when full, which costs O(n) per query instead of O(n log k).
class TopKCollector {
 public:
  static constexpr std::size_t kHeapMaxK = 128;
  explicit TopKCollector(std::size_t k);
  dist_t threshold() const { return threshold_; }
  static dist_t emit(void* self, dist_t distance, idx_t index);
  /// Adds another collector's candidates (a different index range of the same query).
  void absorb(const TopKCollector& other);
  /// Writes the best min(k, seen) candidates sorted by (distance, index); returns the count.
  std::size_t write_sorted(dist_t* distances, idx_t* indices);

 private:
  void offer(const Candidate& c);
  void cut_to_k();
  std::size_t k_;
  bool heap_;
  dist_t threshold_;
  std::vector<Candidate> buffer_;
};

/// Every candidate with distance <= max_distance, finally sorted by (distance, index).
class RangeCollector {
 public:
  explicit RangeCollector(dist_t max_distance);
  dist_t threshold() const { return threshold_; }
  static dist_t emit(void* self, dist_t distance, idx_t index);
  /// Appends another collector's candidates (a different index range of the same query).
  void absorb(const RangeCollector& other);
  /// Sorts the candidates by (distance, index).
  void sort();
  const std::vector<Candidate>& candidates() const { return found_; }

 private:
  dist_t threshold_;
  std::vector<Candidate> found_;
};

/**
 * A collector that never sees removed rows: row i is removed when bit i % 64 of
 * removed[i / 64] is set. The kernels scan every row and filter by the threshold first, so
 * the bitmap is read only for rows that would enter the inner collector: removal costs
 * nothing on the scan, and the inner collector still fills with k live rows.
 */
template <class Inner>
class SkippingCollector {
 public:
  SkippingCollector(Inner inner, const std::uint64_t* removed) : inner_(std::move(inner)), removed_(removed) {}
  dist_t threshold() const { return inner_.threshold(); }
  static dist_t emit(void* self, dist_t distance, idx_t index) {
    auto& c = *static_cast<SkippingCollector*>(self);
    const auto row = static_cast<std::uint64_t>(index);
    if ((c.removed_[row / 64] >> (row % 64)) & 1u) return c.inner_.threshold();
    return Inner::emit(&c.inner_, distance, index);
  }
  void absorb(const SkippingCollector& other) { inner_.absorb(other.inner_); }
  Inner& inner() { return inner_; }

 private:
  Inner inner_;
  const std::uint64_t* removed_;
};

}  // namespace deephash
