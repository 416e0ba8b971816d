// threads.cpp: thread count and fork-join over std::thread (see threads.hpp).
#include "deephash/threads.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "deephash/errors.hpp"

namespace deephash {
namespace {

std::atomic<int> g_threads{0};   // 0: not resolved yet
thread_local int t_threads = 0;  // this thread's override of g_threads; 0: none

// DEEPHASH_NUM_THREADS is ours: anything but an integer in [1, 4096] is an error.
int deephash_env_threads() {
  const char* value = std::getenv("DEEPHASH_NUM_THREADS");
  if (value == nullptr || *value == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  while (end != nullptr && *end == ' ') ++end;
  DH_REQUIRE(end != value && *end == '\0' && n >= 1 && n <= kMaxThreads, "environment variable DEEPHASH_NUM_THREADS='",
             value, "' is not a thread count; expected an integer in [1, ", kMaxThreads, "]");
  return static_cast<int>(n);
}

// OMP_NUM_THREADS belongs to OpenMP ("4" or a per-nesting-level list "4,2"): we take its
// first level when it is a valid count and otherwise ignore it, as it is not ours to reject.
int openmp_env_threads() {
  const char* value = std::getenv("OMP_NUM_THREADS");
  if (value == nullptr) return 0;
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  if (end == value || n < 1 || n > kMaxThreads) return 0;
  return static_cast<int>(n);
}

}  // namespace

int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

int num_threads() {
  if (t_threads > 0) return t_threads;
  int n = g_threads.load(std::memory_order_acquire);
  if (n > 0) return n;
  n = deephash_env_threads();
  if (n == 0) n = openmp_env_threads();
  if (n == 0) n = available_cpus();
  int expected = 0;
  g_threads.compare_exchange_strong(expected, n, std::memory_order_acq_rel);
  return g_threads.load(std::memory_order_acquire);
}

void set_num_threads(int n) {
  DH_REQUIRE(n >= 1 && n <= kMaxThreads, "n must be in [1, ", kMaxThreads, "], got ", n);
  g_threads.store(n, std::memory_order_release);
}

int set_calling_thread_num_threads(int n) {
  DH_REQUIRE(n >= 0 && n <= kMaxThreads, "n must be in [0, ", kMaxThreads, "], got ", n);
  return std::exchange(t_threads, n);
}

namespace {

// Runs body(t) and keeps the first exception any part threw.
class ErrorSlot {
 public:
  void run(const std::function<void(int)>& body, int t) {
    try {
      body(t);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void rethrow() {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
};

}  // namespace

namespace {
std::atomic<std::uint64_t> g_threads_started{0};  // every std::thread the core started
}  // namespace

std::uint64_t threads_started() { return g_threads_started.load(std::memory_order_relaxed); }

// Workers 1..n-1 wait for a new generation, run their part if the call wants them, and
// count down `pending`; the caller runs part 0 (and any part no worker could be started
// for) and waits for pending == 0. The team starts workers only when a call asks for them,
// up to `capacity`: its size is the most workers any call of the scope used, so a scope
// around small work starts no thread at all.
struct ParallelScope::Team {
  std::mutex mutex;
  std::condition_variable start, done;
  const std::function<void(int)>* body = nullptr;
  int parts = 0, pending = 0, capacity = 0;
  std::uint64_t generation = 0;
  bool stopping = false, busy = false;
  ErrorSlot errors;
  std::vector<std::thread> workers;

  void work(int t, std::uint64_t seen) {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      start.wait(lock, [&] { return stopping || generation != seen; });
      if (stopping) return;
      seen = generation;
      if (t >= parts) continue;
      const std::function<void(int)>* job = body;
      lock.unlock();
      errors.run(*job, t);
      lock.lock();
      if (--pending == 0) done.notify_one();
    }
  }

  // Starts workers until n_parts - 1 exist (or one cannot be started); returns how many parts
  // the workers and the caller cover. Called with no job running.
  int grow(int n_parts) {
    std::lock_guard<std::mutex> lock(mutex);
    try {
      while (static_cast<int>(workers.size()) + 1 < n_parts) {
        const int t = static_cast<int>(workers.size()) + 1;
        workers.emplace_back([this, t, seen = generation] { work(t, seen); });
        g_threads_started.fetch_add(1, std::memory_order_relaxed);
      }
    } catch (...) {  // could not start a thread: the caller runs the remaining parts
    }
    return std::min(n_parts, static_cast<int>(workers.size()) + 1);
  }

  void run(int n_parts, const std::function<void(int)>& job) {
    const int covered = grow(n_parts);
    {
      std::lock_guard<std::mutex> lock(mutex);
      body = &job;
      parts = covered;
      pending = covered - 1;
      ++generation;
      busy = true;
    }
    start.notify_all();
    errors.run(job, 0);
    for (int t = covered; t < n_parts; ++t) errors.run(job, t);
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return pending == 0; });
    busy = false;
    lock.unlock();
    errors.rethrow();
  }
};

namespace {
thread_local ParallelScope::Team* t_team = nullptr;  // the scope in charge on this thread
}  // namespace

ParallelScope::ParallelScope(int n_threads) : team_(nullptr) {
  if (n_threads <= 1 || t_team != nullptr) return;
  team_ = new Team();
  team_->capacity = n_threads - 1;
  t_team = team_;
}

ParallelScope::~ParallelScope() {
  if (team_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(team_->mutex);
    team_->stopping = true;
  }
  team_->start.notify_all();
  for (auto& w : team_->workers) w.join();
  t_team = nullptr;
  delete team_;
}

void run_parallel(int n_workers, const std::function<void(int)>& body) {
  if (n_workers <= 1) {
    body(0);
    return;
  }
  ParallelScope::Team* team = t_team;
  if (team != nullptr && !team->busy && n_workers <= team->capacity + 1) {
    team->run(n_workers, body);
    return;
  }
  ErrorSlot errors;
  auto guarded = [&](int t) { errors.run(body, t); };
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(n_workers - 1));
  try {
    for (int t = 1; t < n_workers; ++t) {
      workers.emplace_back(guarded, t);
      g_threads_started.fetch_add(1, std::memory_order_relaxed);
    }
  } catch (...) {  // could not start a thread: run the remaining parts here
    for (int t = static_cast<int>(workers.size()) + 1; t < n_workers; ++t) guarded(t);
  }
  guarded(0);
  for (auto& w : workers) w.join();
  errors.rethrow();
}

}  // namespace deephash
