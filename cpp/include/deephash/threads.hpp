// deephash/threads.hpp: the library's own thread count and fork-join helper.
//
// The core uses plain std::thread workers, started per call (or per ParallelScope) and
// joined before the call returns (no OpenMP, no process-wide pool): nothing lingers to
// spin against torch's or BLAS's pools, there is no second OpenMP runtime in the process,
// and fork() is safe.
// The default thread count is the number of CPUs this process may run on
// (sched_getaffinity), overridden by DEEPHASH_NUM_THREADS, else by the first level of
// OMP_NUM_THREADS when it is a valid count. At most 4096 threads.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace deephash {

/// The largest thread count set_num_threads and DEEPHASH_NUM_THREADS accept.
constexpr int kMaxThreads = 4096;

/// Threads the kernels called from this thread use (>= 1): the calling thread's override
/// when it has one, else the process-wide count.
int num_threads();
/// Sets the process-wide thread count; n outside [1, kMaxThreads] throws std::invalid_argument.
void set_num_threads(int n);
/// Overrides the thread count for kernels called from the calling thread only (n = 0 removes
/// the override), so that tasks running side by side in one process (a Dask worker's threads)
/// each get their share; returns the previous override (0: none). n outside [0, kMaxThreads]
/// throws std::invalid_argument.
int set_calling_thread_num_threads(int n);
/// CPUs this process may run on.
int available_cpus();

/// How many std::threads the core has started in this process (a diagnostic for tests).
std::uint64_t threads_started();

/// Runs body(t) for t in [0, n_workers): t = 0 on the calling thread, the rest on the
/// workers of this thread's ParallelScope when it has enough, else on new threads.
/// Returns after all finish; rethrows the first exception any body threw.
void run_parallel(int n_workers, const std::function<void(int)>& body);

/// Keeps up to n_threads - 1 workers for the lifetime of the scope, so that run_parallel
/// calls made on the opening thread reuse them instead of starting threads: a CD-k
/// minibatch makes six parallel calls, and a thread start costs tens to hundreds of
/// microseconds on a shared VM (measured). Workers are started when a call first asks for
/// them, so the team is sized by the work (a one-row encode starts none). Workers sleep on a condition variable between
/// calls (they never spin) and are joined when the scope ends, so no thread outlives the call that opened it. Calls
/// made from inside a parallel body, or asking for more threads than the scope holds, start threads as before. One
/// scope is in charge per thread: a nested scope leaves the outer one in charge.
class ParallelScope {
 public:
  explicit ParallelScope(int n_threads);
  ~ParallelScope();
  ParallelScope(const ParallelScope&) = delete;
  ParallelScope& operator=(const ParallelScope&) = delete;

  struct Team;

 private:
  Team* team_;  // nullptr when this scope is not in charge (one thread, or nested)
};

/// Half-open range [begin, end) of part t when n items are split into `parts` near-equal parts.
inline void split_range(std::size_t n, int parts, int t, std::size_t& begin, std::size_t& end) {
  const auto p = static_cast<std::size_t>(parts), i = static_cast<std::size_t>(t);
  begin = n * i / p;
  end = n * (i + 1) / p;
}

/// Runs fn(begin, end) over [0, n) split into near-equal contiguous ranges, one per thread,
/// using no more threads than give each at least kMinWorkPerThread units of work
/// (work_per_item units per item): small passes stay on the calling thread.
constexpr std::size_t kMinWorkPerThread = std::size_t{1} << 15;
template <class Fn>
void for_ranges(std::size_t n, std::size_t work_per_item, int n_threads, Fn fn) {
  const std::size_t by_work = n * work_per_item / kMinWorkPerThread;
  const int workers = static_cast<int>(
      std::max<std::size_t>(1, std::min({static_cast<std::size_t>(std::max(n_threads, 1)), by_work, n})));
  run_parallel(workers, [&](int t) {
    std::size_t begin, end;
    split_range(n, workers, t, begin, end);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace deephash
