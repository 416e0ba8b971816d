// knn_hamming.cu: exact top-k and radius Hamming search on the GPU (deephash_cuda/knn.hpp).
//
// Each pass scans the word-major database: a block takes kChunk consecutive codes and a
// tile of queries; each thread holds one code in registers and loops over the tile.
//   top-k:  1. histogram of distances per query  -> t = k-th distance, need = k - #(d < t)
//           2. per (chunk, query): #(d < t), #(d == t)  -> exclusive prefix over chunks
//           3. compaction in index order: every d < t, and the first `need` codes at d == t
//              (chunks that keep nothing return at once)
//           4. segmented sort of the keys (distance << 40 | index): the (distance, index) order
//   radius: t = max_distance, need unlimited: passes 2 to 4.
// Every step is deterministic (no atomics decide positions), so results equal the CPU's.
#include <cub/device/device_segmented_sort.cuh>

#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>
#include <vector>

#include "deephash/code_width.hpp"
#include "deephash/errors.hpp"
#include "deephash_cuda/check.cuh"
#include "deephash_cuda/device_buffer.cuh"
#include "deephash_cuda/knn.hpp"

namespace deephash::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr std::int64_t kChunk = 4096;                      // codes per block in a pass
constexpr int kMaxQueryTile = 32;                          // queries per block
constexpr int kHistogramSharedInts = 12 * 1024;            // 48 KiB of per-block histograms
constexpr int kIndexBits = 40;                             // sort key: distance << 40 | index
constexpr std::size_t kBatchBytes = std::size_t{1} << 30;  // device scratch per query batch
constexpr std::size_t kMaxBatch = 8192;

using Key = unsigned long long;

// One database code: its words in registers (kWords > 0) or read at each use (kWords == 0,
// any width).
template <int kWords>
struct Item {
  std::uint64_t w[kWords];
  __device__ void load(const std::uint64_t* db, std::int64_t n, std::int64_t i, int) {
#pragma unroll
    for (int j = 0; j < kWords; ++j) w[j] = db[j * n + i];
  }
  __device__ int distance(const std::uint64_t* q, int) const {
    int d = 0;
#pragma unroll
    for (int j = 0; j < kWords; ++j) d += __popcll(w[j] ^ q[j]);
    return d;
  }
};

template <>
struct Item<0> {
  const std::uint64_t* db;
  std::int64_t n, i;
  __device__ void load(const std::uint64_t* db_, std::int64_t n_, std::int64_t i_, int) {
    db = db_;
    n = n_;
    i = i_;
  }
  __device__ int distance(const std::uint64_t* q, int words) const {
    int d = 0;
    for (int j = 0; j < words; ++j) d += __popcll(db[j * n + i] ^ q[j]);
    return d;
  }
};

// What every pass scans: the database (words x n, word-major) against a batch of queries
// (nq x words, row-major), tile queries per block (blockIdx.y), kChunk codes per block (blockIdx.x).
struct Scan {
  const std::uint64_t* db;
  std::int64_t n;
  int words;
  const std::uint64_t* queries;
  int nq;
  int tile;
  __device__ int first_query() const { return static_cast<int>(blockIdx.y) * tile; }
  __device__ int tile_size() const { return min(tile, nq - first_query()); }
  __device__ std::int64_t chunk_begin() const { return static_cast<std::int64_t>(blockIdx.x) * kChunk; }
  __device__ std::int64_t chunk_end() const { return min(n, chunk_begin() + kChunk); }
  __device__ const std::uint64_t* query(int q) const { return queries + static_cast<std::int64_t>(q) * words; }
};

// The code a thread scores in one step of a chunk scan; past the chunk's end, none
// (distance INT_MAX), so that every lane still takes part in the warp ballots.
template <int kWords>
struct Slot {
  std::int64_t i;
  bool valid;
  Item<kWords> item;
  __device__ Slot(const Scan& s, std::int64_t base) : i(base + threadIdx.x), valid(i < s.chunk_end()) {
    if (valid) item.load(s.db, s.n, i, s.words);
  }
  __device__ int distance(const Scan& s, int q) const { return valid ? item.distance(s.query(q), s.words) : INT_MAX; }
};

// The lanes of the warp whose code is below and at the threshold.
struct Ballots {
  unsigned below, at;
};
__device__ Ballots ballots(int d, int t) {
  return {__ballot_sync(0xFFFFFFFFu, d < t), __ballot_sync(0xFFFFFFFFu, d == t)};
}

// Pass 1: hist[q][d] += number of codes of this chunk at distance d from query q.
template <int kWords>
__global__ void __launch_bounds__(kThreads) histogram_kernel(Scan s, int bins, unsigned long long* hist) {
  extern __shared__ unsigned int counts[];  // tile x bins
  const int q0 = s.first_query(), tile = s.tile_size();
  for (int e = threadIdx.x; e < tile * bins; e += kThreads) counts[e] = 0;
  __syncthreads();
  for (std::int64_t i = s.chunk_begin() + threadIdx.x; i < s.chunk_end(); i += kThreads) {
    Item<kWords> item;
    item.load(s.db, s.n, i, s.words);
    for (int q = 0; q < tile; ++q) atomicAdd(&counts[q * bins + item.distance(s.query(q0 + q), s.words)], 1u);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < tile * bins; e += kThreads)
    if (counts[e] != 0)
      atomicAdd(&hist[static_cast<std::int64_t>(q0) * bins + e], static_cast<unsigned long long>(counts[e]));
}

// threshold[q] = the k-th smallest distance t; need[q] = how many codes at t are kept.
__global__ void kth_distance_kernel(const unsigned long long* hist, int nq, int bins, std::int64_t k, int* threshold,
                                    std::int64_t* need) {
  const int q = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (q >= nq) return;
  const unsigned long long* h = hist + static_cast<std::int64_t>(q) * bins;
  std::int64_t below = 0;
  for (int d = 0; d < bins; ++d) {
    const auto count = static_cast<std::int64_t>(h[d]);
    if (below + count >= k) {
      threshold[q] = d;
      need[q] = k - below;
      return;
    }
    below += count;
  }
  threshold[q] = bins;  // unreachable for k <= n
  need[q] = 0;
}

// Pass 2: lt[chunk][q] = #(d < t_q), eq[chunk][q] = #(d == t_q) in this chunk.
template <int kWords>
__global__ void __launch_bounds__(kThreads)
    count_kernel(Scan s, const int* threshold, std::int64_t* lt, std::int64_t* eq) {
  __shared__ unsigned int lt_tile[kMaxQueryTile], eq_tile[kMaxQueryTile];
  const int q0 = s.first_query(), tile = s.tile_size(), lane = threadIdx.x % 32;
  if (threadIdx.x < tile) lt_tile[threadIdx.x] = eq_tile[threadIdx.x] = 0;
  __syncthreads();
  for (std::int64_t base = s.chunk_begin(); base < s.chunk_end(); base += kThreads) {
    const Slot<kWords> slot(s, base);
    for (int q = 0; q < tile; ++q) {
      const Ballots b = ballots(slot.distance(s, q0 + q), threshold[q0 + q]);
      if (lane == 0 && b.below != 0) atomicAdd(&lt_tile[q], static_cast<unsigned>(__popc(b.below)));
      if (lane == 0 && b.at != 0) atomicAdd(&eq_tile[q], static_cast<unsigned>(__popc(b.at)));
    }
  }
  __syncthreads();
  if (threadIdx.x < tile) {
    const std::int64_t cell = static_cast<std::int64_t>(blockIdx.x) * s.nq + q0 + threadIdx.x;
    lt[cell] = lt_tile[threadIdx.x];
    eq[cell] = eq_tile[threadIdx.x];
  }
}

// Per query, in place over chunks: counts -> exclusive prefix; row `chunks` gets the totals.
__global__ void exclusive_scan_kernel(std::int64_t* lt, std::int64_t* eq, std::int64_t chunks, int nq) {
  const int q = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (q >= nq) return;
  std::int64_t lt_sum = 0, eq_sum = 0;
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t cell = c * nq + q, a = lt[cell], b = eq[cell];
    lt[cell] = lt_sum;
    eq[cell] = eq_sum;
    lt_sum += a;
    eq_sum += b;
  }
  lt[chunks * nq + q] = lt_sum;
  eq[chunks * nq + q] = eq_sum;
}

// Pass 3: query q's region of keys (from region[q]) receives, in index order, every code
// with d < t_q, then the first need_q codes with d == t_q. Ranks within a step come from
// warp ballots and per-warp counts, so positions never depend on scheduling.
template <int kWords>
__global__ void __launch_bounds__(kThreads)
    compact_kernel(Scan s, const int* threshold, const std::int64_t* need, const std::int64_t* lt,
                   const std::int64_t* eq, std::int64_t chunks, const std::int64_t* region, Key* keys) {
  __shared__ unsigned int warp_lt[kMaxQueryTile][kWarps], warp_eq[kMaxQueryTile][kWarps];
  __shared__ std::int64_t done_lt[kMaxQueryTile], done_eq[kMaxQueryTile];
  __shared__ int keeps_any;
  const int q0 = s.first_query(), tile = s.tile_size(), nq = s.nq;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t c = blockIdx.x;
  if (threadIdx.x == 0) keeps_any = 0;
  __syncthreads();
  if (threadIdx.x < tile) {  // most chunks keep nothing for a top-k query: skip them
    const int q = q0 + threadIdx.x;
    const std::int64_t here = c * nq + q, next = here + nq;
    if (lt[next] > lt[here] || (eq[next] > eq[here] && eq[here] < need[q])) keeps_any = 1;
    done_lt[threadIdx.x] = 0;
    done_eq[threadIdx.x] = 0;
  }
  __syncthreads();
  if (keeps_any == 0) return;
  const unsigned lanes_below = (1u << lane) - 1u;
  for (std::int64_t base = s.chunk_begin(); base < s.chunk_end(); base += kThreads) {
    const Slot<kWords> slot(s, base);
    for (int q = 0; q < tile; ++q) {
      const Ballots b = ballots(slot.distance(s, q0 + q), threshold[q0 + q]);
      if (lane == 0) {
        warp_lt[q][warp] = static_cast<unsigned>(__popc(b.below));
        warp_eq[q][warp] = static_cast<unsigned>(__popc(b.at));
      }
    }
    __syncthreads();
    for (int q = 0; q < tile; ++q) {
      const int qg = q0 + q;
      const int d = slot.distance(s, qg), t = threshold[qg];
      const bool is_lt = d < t, is_eq = d == t;
      const Ballots b = ballots(d, t);
      if (!is_lt && !is_eq) continue;
      std::int64_t rank = __popc((is_lt ? b.below : b.at) & lanes_below);
      for (int w = 0; w < warp; ++w) rank += is_lt ? warp_lt[q][w] : warp_eq[q][w];
      const Key key = (static_cast<Key>(d) << kIndexBits) | static_cast<Key>(slot.i);
      const std::int64_t cell = c * nq + qg;
      if (is_lt) {
        keys[region[qg] + lt[cell] + done_lt[q] + rank] = key;
      } else {
        const std::int64_t e = eq[cell] + done_eq[q] + rank;
        if (e < need[qg]) keys[region[qg] + lt[chunks * nq + qg] + e] = key;
      }
    }
    __syncthreads();
    if (threadIdx.x < tile) {
      for (int w = 0; w < kWarps; ++w) {
        done_lt[threadIdx.x] += warp_lt[threadIdx.x][w];
        done_eq[threadIdx.x] += warp_eq[threadIdx.x][w];
      }
    }
    __syncthreads();
  }
}

__global__ void decode_kernel(const Key* keys, std::int64_t n, dist_t* distances, idx_t* indices) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    distances[e] = static_cast<dist_t>(keys[e] >> kIndexBits);
    indices[e] = static_cast<idx_t>(keys[e] & ((Key{1} << kIndexBits) - 1));
  }
}

// out[w * n + row0 + r] = word w of raw row r (bytes 8w .. 8w + 7, little-endian, zero padded).
__global__ void words_major_kernel(const std::uint8_t* raw, std::int64_t rows, int code_bytes, int words,
                                   std::uint64_t* out, std::int64_t n, std::int64_t row0) {
  const std::int64_t total = rows * words, stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const std::int64_t w = e / rows, r = e % rows;
    std::uint64_t word = 0;
    for (int b = 0; b < 8; ++b) {
      const std::int64_t byte = 8 * w + b;
      if (byte < code_bytes) word |= static_cast<std::uint64_t>(raw[r * code_bytes + byte]) << (8 * b);
    }
    out[w * n + row0 + r] = word;
  }
}

int grid_for(std::int64_t work) {
  return static_cast<int>(std::clamp<std::int64_t>((work + kThreads - 1) / kThreads, 1, 65535));
}

// Queries as zero-padded words, row-major (the byte order of words_major_kernel on a
// little-endian host).
std::vector<std::uint64_t> query_words(const CodeView& q, std::size_t first, std::size_t count, std::size_t words) {
  std::vector<std::uint64_t> out(count * words, 0);
  for (std::size_t r = 0; r < count; ++r) std::memcpy(&out[r * words], q.data + (first + r) * q.stride, q.code_bytes);
  return out;
}

// Scratch of one query batch and the passes that share it.
class Searcher {
 public:
  Searcher(const std::uint64_t* db, std::size_t n, std::size_t code_bytes, std::size_t words, cudaStream_t stream)
      : db_(db),
        n_(n),
        words_(words),
        bins_(static_cast<int>(8 * code_bytes + 1)),
        chunks_((static_cast<std::int64_t>(n) + kChunk - 1) / kChunk),
        tile_(std::clamp(kHistogramSharedInts / bins_, 1, kMaxQueryTile)),
        stream_(stream) {}

  // Query batch size that keeps the scratch within kBatchBytes, given `per_result` device
  // bytes per result slot and `results` slots per query.
  std::size_t batch_size(std::size_t nq, std::size_t results, std::size_t per_result) const {
    const std::size_t per_query =
        8 * static_cast<std::size_t>(bins_) + 16 * static_cast<std::size_t>(chunks_ + 1) + 32 + results * per_result;
    return std::clamp<std::size_t>(kBatchBytes / per_query, 1, std::max<std::size_t>(1, std::min(nq, kMaxBatch)));
  }

  void upload_queries(const CodeView& q, std::size_t first, std::size_t count) {
    host_queries_ = query_words(q, first, count, words_);
    queries_.resize(host_queries_.size());
    DH_CUDA_CHECK(cudaMemcpyAsync(queries_.data(), host_queries_.data(), host_queries_.size() * sizeof(std::uint64_t),
                                  cudaMemcpyHostToDevice, stream_));
    nq_ = static_cast<int>(count);
    threshold_.resize(count);
    need_.resize(count);
    region_.resize(count + 1);
    lt_.resize(static_cast<std::size_t>(chunks_ + 1) * count);
    eq_.resize(static_cast<std::size_t>(chunks_ + 1) * count);
  }

  // Pass 1 for top-k: threshold and need of each query of the batch.
  void kth_distances(std::size_t k) {
    DeviceBuffer<unsigned long long> hist(static_cast<std::size_t>(nq_) * bins_);
    DH_CUDA_CHECK(
        cudaMemsetAsync(hist.data(), 0, static_cast<std::size_t>(nq_) * bins_ * sizeof(unsigned long long), stream_));
    const std::size_t shared = static_cast<std::size_t>(tile_) * bins_ * sizeof(unsigned int);
    with_word_count(words_, [&](auto w) {
      histogram_kernel<static_cast<int>(decltype(w)::value)>
          <<<grid(), kThreads, shared, stream_>>>(scan(), bins_, hist.data());
    });
    DH_CUDA_CHECK_LAUNCH();
    kth_distance_kernel<<<grid_for(nq_), kThreads, 0, stream_>>>(hist.data(), nq_, bins_, static_cast<std::int64_t>(k),
                                                                 threshold_.data(), need_.data());
    DH_CUDA_CHECK_LAUNCH();
    stream_wait();  // hist is freed at the end of this scope
  }

  // The same threshold for every query, every code at it kept (radius search).
  void fixed_threshold(int t) {
    std::vector<int> thresholds(static_cast<std::size_t>(nq_), t);
    std::vector<std::int64_t> needs(static_cast<std::size_t>(nq_), std::numeric_limits<std::int64_t>::max());
    DH_CUDA_CHECK(cudaMemcpyAsync(threshold_.data(), thresholds.data(), thresholds.size() * sizeof(int),
                                  cudaMemcpyHostToDevice, stream_));
    DH_CUDA_CHECK(cudaMemcpyAsync(need_.data(), needs.data(), needs.size() * sizeof(std::int64_t),
                                  cudaMemcpyHostToDevice, stream_));
    stream_wait();  // the host vectors go out of scope
  }

  // Pass 2: per-chunk offsets; returns per-query totals (#(d < t), #(d == t)) on the host.
  void count() {
    with_word_count(words_, [&](auto w) {
      count_kernel<static_cast<int>(decltype(w)::value)>
          <<<grid(), kThreads, 0, stream_>>>(scan(), threshold_.data(), lt_.data(), eq_.data());
    });
    DH_CUDA_CHECK_LAUNCH();
    exclusive_scan_kernel<<<grid_for(nq_), kThreads, 0, stream_>>>(lt_.data(), eq_.data(), chunks_, nq_);
    DH_CUDA_CHECK_LAUNCH();
  }

  std::vector<std::int64_t> totals(const DeviceBuffer<std::int64_t>& counts) {
    std::vector<std::int64_t> out(static_cast<std::size_t>(nq_));
    DH_CUDA_CHECK(cudaMemcpyAsync(out.data(), counts.data() + chunks_ * nq_, out.size() * sizeof(std::int64_t),
                                  cudaMemcpyDeviceToHost, stream_));
    stream_wait();
    return out;
  }
  std::vector<std::int64_t> below_totals() { return totals(lt_); }
  std::vector<std::int64_t> at_totals() { return totals(eq_); }

  // Passes 3 and 4: the kept codes of query q fill [region[q], region[q + 1]) of the
  // results, sorted by (distance, index); copied to the host arrays.
  void compact_and_sort(const std::vector<std::int64_t>& region, dist_t* distances, idx_t* indices) {
    const auto total = static_cast<std::size_t>(region.back());
    DH_CUDA_CHECK(cudaMemcpyAsync(region_.data(), region.data(), region.size() * sizeof(std::int64_t),
                                  cudaMemcpyHostToDevice, stream_));
    if (total == 0) return stream_wait();
    DeviceBuffer<Key> keys(total), sorted(total);
    with_word_count(words_, [&](auto w) {
      compact_kernel<static_cast<int>(decltype(w)::value)><<<grid(), kThreads, 0, stream_>>>(
          scan(), threshold_.data(), need_.data(), lt_.data(), eq_.data(), chunks_, region_.data(), keys.data());
    });
    DH_CUDA_CHECK_LAUNCH();
    std::size_t temp_bytes = 0;
    DH_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(nullptr, temp_bytes, keys.data(), sorted.data(),
                                                     static_cast<std::int64_t>(total), nq_, region_.data(),
                                                     region_.data() + 1, stream_));
    DeviceBuffer<std::uint8_t> temp(std::max<std::size_t>(temp_bytes, 1));
    DH_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(temp.data(), temp_bytes, keys.data(), sorted.data(),
                                                     static_cast<std::int64_t>(total), nq_, region_.data(),
                                                     region_.data() + 1, stream_));
    DeviceBuffer<dist_t> d(total);
    DeviceBuffer<idx_t> ix(total);
    decode_kernel<<<grid_for(static_cast<std::int64_t>(total)), kThreads, 0, stream_>>>(
        sorted.data(), static_cast<std::int64_t>(total), d.data(), ix.data());
    DH_CUDA_CHECK_LAUNCH();
    DH_CUDA_CHECK(cudaMemcpyAsync(distances, d.data(), total * sizeof(dist_t), cudaMemcpyDeviceToHost, stream_));
    DH_CUDA_CHECK(cudaMemcpyAsync(indices, ix.data(), total * sizeof(idx_t), cudaMemcpyDeviceToHost, stream_));
    stream_wait();
  }

 private:
  Scan scan() const {
    return Scan{db_, static_cast<std::int64_t>(n_), static_cast<int>(words_), queries_.data(), nq_, tile_};
  }
  dim3 grid() const { return dim3(static_cast<unsigned>(chunks_), static_cast<unsigned>((nq_ + tile_ - 1) / tile_)); }
  void stream_wait() const { DH_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  const std::uint64_t* db_;
  std::size_t n_, words_;
  int bins_;
  std::int64_t chunks_;
  int tile_;
  cudaStream_t stream_;
  int nq_ = 0;
  std::vector<std::uint64_t> host_queries_;
  DeviceBuffer<std::uint64_t> queries_;
  DeviceBuffer<int> threshold_;
  DeviceBuffer<std::int64_t> need_, region_, lt_, eq_;
};

}  // namespace

int device_count(std::string* reason) {
  int n = 0;
  const cudaError_t error = cudaGetDeviceCount(&n);
  if (error != cudaSuccess) {
    cudaGetLastError();
    if (reason != nullptr) *reason = std::string(cudaGetErrorName(error)) + ": " + cudaGetErrorString(error);
    return 0;
  }
  if (n == 0 && reason != nullptr) *reason = "no CUDA device is visible";
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  DH_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
}

DeviceCodes::DeviceCodes(const CodeView& codes, int device)
    : n_(codes.n), code_bytes_(codes.code_bytes), words_(words_for_bytes(codes.code_bytes)), device_(device) {
  DH_REQUIRE(n_ >= 1, "codes must have at least one row");
  DH_REQUIRE(code_bytes_ >= 1 && code_bytes_ <= kMaxCodeBytes, "codes on the GPU must have at most ", kMaxCodeBytes,
             " bytes per code (and at least 1), got ", code_bytes_);
  DH_REQUIRE(n_ < kMaxCodes, "at most 2**40 codes fit a GPU database, got ", n_);
  DeviceScope scope(device_);
  DeviceBuffer<std::uint64_t> words(n_ * words_);
  {
    Stream stream;
    const std::size_t rows_per_copy = std::max<std::size_t>(1, (std::size_t{64} << 20) / code_bytes_);
    DeviceBuffer<std::uint8_t> raw(std::min(n_, rows_per_copy) * code_bytes_);
    for (std::size_t row0 = 0; row0 < n_; row0 += rows_per_copy) {
      const std::size_t rows = std::min(rows_per_copy, n_ - row0);
      DH_CUDA_CHECK(cudaMemcpy2DAsync(raw.data(), code_bytes_, codes.data + row0 * codes.stride, codes.stride,
                                      code_bytes_, rows, cudaMemcpyHostToDevice, stream.get()));
      const auto work = static_cast<std::int64_t>(rows * words_);
      words_major_kernel<<<grid_for(work), kThreads, 0, stream.get()>>>(
          raw.data(), static_cast<std::int64_t>(rows), static_cast<int>(code_bytes_), static_cast<int>(words_),
          words.data(), static_cast<std::int64_t>(n_), static_cast<std::int64_t>(row0));
      DH_CUDA_CHECK_LAUNCH();
      stream.synchronize();  // raw is reused by the next copy
    }
  }
  words_major_ = words.release_ownership();
}

DeviceCodes::~DeviceCodes() {
  int previous = 0;
  if (cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(device_) == cudaSuccess) {
    cudaFree(words_major_);
    cudaSetDevice(previous);
  }
}

void DeviceCodes::check_search_args(const CodeView& queries, idx_t k) const {
  DH_REQUIRE(queries.code_bytes == code_bytes_, "queries have ", queries.code_bytes, " bytes per code but codes have ",
             code_bytes_);
  DH_REQUIRE(k >= 1 && static_cast<std::size_t>(k) <= n_, "k must be in [1, ", n_, "] (len(codes)), got ", k);
}

void DeviceCodes::search(const CodeView& queries, idx_t k_signed, dist_t* distances, idx_t* indices) const {
  check_search_args(queries, k_signed);
  const auto k = static_cast<std::size_t>(k_signed);
  if (queries.n == 0) return;
  DeviceScope scope(device_);
  Stream stream;
  Searcher searcher(words_major_, n_, code_bytes_, words_, stream.get());
  // Result slots: keys in and out (16 bytes) plus the decoded distance and index (12).
  const std::size_t batch = searcher.batch_size(queries.n, k, 28);
  for (std::size_t q0 = 0; q0 < queries.n; q0 += batch) {
    const std::size_t count = std::min(batch, queries.n - q0);
    searcher.upload_queries(queries, q0, count);
    searcher.kth_distances(k);
    searcher.count();
    std::vector<std::int64_t> region(count + 1);
    for (std::size_t q = 0; q <= count; ++q) region[q] = static_cast<std::int64_t>(q * k);
    searcher.compact_and_sort(region, distances + q0 * k, indices + q0 * k);
  }
}

RangeResult DeviceCodes::range_search(const CodeView& queries, std::int64_t max_distance) const {
  DH_REQUIRE(queries.code_bytes == code_bytes_, "queries have ", queries.code_bytes, " bytes per code but codes have ",
             code_bytes_);
  DH_REQUIRE(max_distance >= 0, "max_distance must be >= 0, got ", max_distance);
  // No distance exceeds the code's bits, so a larger radius means the same.
  const int radius = static_cast<int>(std::min<std::int64_t>(max_distance, static_cast<std::int64_t>(8 * code_bytes_)));
  RangeResult result;
  result.lims.assign(1, 0);
  DeviceScope scope(device_);
  Stream stream;
  Searcher searcher(words_major_, n_, code_bytes_, words_, stream.get());
  const std::size_t batch = searcher.batch_size(queries.n, 0, 0);
  for (std::size_t q0 = 0; q0 < queries.n; q0 += batch) {
    const std::size_t count = std::min(batch, queries.n - q0);
    searcher.upload_queries(queries, q0, count);
    searcher.fixed_threshold(radius);
    searcher.count();
    const std::vector<std::int64_t> below = searcher.below_totals(), at = searcher.at_totals();
    std::vector<std::int64_t> region(count + 1, 0);
    for (std::size_t q = 0; q < count; ++q) region[q + 1] = region[q] + below[q] + at[q];
    const std::size_t done = result.distances.size(), total = static_cast<std::size_t>(region.back());
    result.distances.resize(done + total);
    result.indices.resize(done + total);
    searcher.compact_and_sort(region, result.distances.data() + done, result.indices.data() + done);
    for (std::size_t q = 1; q <= count; ++q) result.lims.push_back(static_cast<idx_t>(done) + region[q]);
  }
  return result;
}

}  // namespace deephash::cuda
