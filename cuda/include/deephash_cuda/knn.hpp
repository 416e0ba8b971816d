// deephash_cuda/knn.hpp: exact Hamming search on a CUDA GPU (host API, no CUDA types).
//
// Same contract as deephash/knn.hpp (packed codes of types.hpp, ranking by (distance,
// index)), so results are bit-identical to the CPU kernels. On the device a database is
// stored word-major: word w of code i (bytes 8w .. 8w + 7, little-endian, zero padded past
// code_bytes) lives at words[w * n + i], so the threads of a warp read consecutive codes.
//
// Selection has no cap on k: distances are small integers, so each query's k-th distance t
// comes from a histogram; the codes closer than t and the first (by index) codes at t are
// compacted in index order and sorted by the key (distance << 40 | index).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "deephash/knn.hpp"

namespace deephash::cuda {

/// Widest code the GPU kernels take (8192 bits): a query's distance histogram must fit a block.
constexpr std::size_t kMaxCodeBytes = 1024;
/// Largest database: the sort key keeps 40 bits of index.
constexpr std::size_t kMaxCodes = std::size_t{1} << 40;

/// Number of visible CUDA devices; 0 with `reason` set when there is none or CUDA cannot start.
int device_count(std::string* reason);

/// "sm_90" for device `device`.
std::string device_name(int device);

/// A database resident in device memory (the one C++-held state of the package).
class DeviceCodes {
 public:
  /// Copies codes (n rows of code_bytes bytes, `stride` bytes apart) to device `device`.
  DeviceCodes(const CodeView& codes, int device);
  ~DeviceCodes();
  DeviceCodes(const DeviceCodes&) = delete;
  DeviceCodes& operator=(const DeviceCodes&) = delete;

  /// Checks the arguments of search() without touching the GPU: queries.code_bytes ==
  /// code_bytes() and 1 <= k <= size() (std::invalid_argument naming the parameter).
  void check_search_args(const CodeView& queries, idx_t k) const;

  /**
   * k nearest codes of each query, sorted by (distance, index).
   * @param distances  queries.n * k, row-major, host memory
   * @param indices    queries.n * k, row-major, host memory
   * Requires the arguments check_search_args accepts (std::invalid_argument otherwise).
   */
  void search(const CodeView& queries, idx_t k, dist_t* distances, idx_t* indices) const;

  /// Every code within max_distance (inclusive, >= 0), sorted by (distance, index), as on the CPU.
  RangeResult range_search(const CodeView& queries, std::int64_t max_distance) const;

  std::size_t size() const { return n_; }
  std::size_t code_bytes() const { return code_bytes_; }
  int device() const { return device_; }
  /// Device memory held by the codes.
  std::size_t nbytes() const { return n_ * words_ * sizeof(std::uint64_t); }

 private:
  std::size_t n_, code_bytes_, words_;
  int device_;
  std::uint64_t* words_major_ = nullptr;  // words_ x n_
};

}  // namespace deephash::cuda
