// topk.cpp: candidate collectors (baseline ISA: the kernels reach them through emit()).
#include "deephash/topk.hpp"

#include <algorithm>
#include <limits>

namespace deephash {
namespace {

bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.distance < b.distance || (a.distance == b.distance && a.index < b.index);
}

}  // namespace

TopKCollector::TopKCollector(std::size_t k)
    : k_(k), heap_(k <= kHeapMaxK), threshold_(std::numeric_limits<dist_t>::max()) {}

void TopKCollector::offer(const Candidate& c) {
  if (heap_) {  // max-heap by (distance, index): the top is the current k-th best
    if (buffer_.size() < k_) {
      buffer_.push_back(c);
      std::push_heap(buffer_.begin(), buffer_.end(), ranks_before);
    } else if (ranks_before(c, buffer_.front())) {
      std::pop_heap(buffer_.begin(), buffer_.end(), ranks_before);
      buffer_.back() = c;
      std::push_heap(buffer_.begin(), buffer_.end(), ranks_before);
    }
    // Later candidates of a scan have larger indices, so only a smaller distance can win.
    if (buffer_.size() == k_) threshold_ = buffer_.front().distance;
    return;
  }
  buffer_.push_back(c);
  if (buffer_.size() >= 2 * k_) cut_to_k();
}

dist_t TopKCollector::emit(void* self, dist_t distance, idx_t index) {
  auto& c = *static_cast<TopKCollector*>(self);
  c.offer({distance, index});
  return c.threshold_;
}

void TopKCollector::cut_to_k() {
  if (buffer_.size() <= k_) return;
  auto kth = buffer_.begin() + static_cast<std::ptrdiff_t>(k_ - 1);
  std::nth_element(buffer_.begin(), kth, buffer_.end(), ranks_before);
  buffer_.resize(k_);
  threshold_ = kth->distance;  // as for the heap: only a smaller distance can win later
}

void TopKCollector::absorb(const TopKCollector& other) {
  for (const Candidate& c : other.buffer_) offer(c);
}

std::size_t TopKCollector::write_sorted(dist_t* distances, idx_t* indices) {
  if (!heap_) cut_to_k();
  std::sort(buffer_.begin(), buffer_.end(), ranks_before);
  const std::size_t count = std::min(k_, buffer_.size());
  for (std::size_t r = 0; r < count; ++r) {
    distances[r] = buffer_[r].distance;
    indices[r] = buffer_[r].index;
  }
  return count;
}

RangeCollector::RangeCollector(dist_t max_distance) : threshold_(max_distance + 1) {}

dist_t RangeCollector::emit(void* self, dist_t distance, idx_t index) {
  auto& c = *static_cast<RangeCollector*>(self);
  c.found_.push_back({distance, index});
  return c.threshold_;
}

void RangeCollector::absorb(const RangeCollector& other) {
  found_.insert(found_.end(), other.found_.begin(), other.found_.end());
}

void RangeCollector::sort() { std::sort(found_.begin(), found_.end(), ranks_before); }

}  // namespace deephash
