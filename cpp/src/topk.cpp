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
    : k_(k), capacity_(std::max<std::size_t>(2 * k, 64)),
      threshold_(std::numeric_limits<dist_t>::max()) {}

dist_t TopKCollector::emit(void* self, dist_t distance, idx_t index) {
  auto& c = *static_cast<TopKCollector*>(self);
  c.buffer_.push_back({distance, index});
  if (c.buffer_.size() >= c.capacity_) c.cut_to_k();
  return c.threshold_;
}

void TopKCollector::cut_to_k() {
  if (buffer_.size() < k_) return;
  auto kth = buffer_.begin() + static_cast<std::ptrdiff_t>(k_ - 1);
  std::nth_element(buffer_.begin(), kth, buffer_.end(), ranks_before);
  buffer_.resize(k_);
  // Later candidates have larger indices, so only a strictly smaller distance can win.
  threshold_ = buffer_.back().distance;
}

void TopKCollector::absorb(const TopKCollector& other) {
  buffer_.insert(buffer_.end(), other.buffer_.begin(), other.buffer_.end());
  if (buffer_.size() >= capacity_) cut_to_k();
}

std::size_t TopKCollector::write_sorted(dist_t* distances, idx_t* indices) {
  cut_to_k();
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

void RangeCollector::sort() {
  std::sort(found_.begin(), found_.end(), ranks_before);
}

}  // namespace deephash
