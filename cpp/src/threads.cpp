// threads.cpp: thread count and fork-join over std::thread (see threads.hpp).
#include "deephash/threads.hpp"

#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "deephash/errors.hpp"

namespace deephash {
namespace {

std::atomic<int> g_threads{0};  // 0: not resolved yet

// DEEPHASH_NUM_THREADS is ours: anything but an integer in [1, 4096] is an error.
int deephash_env_threads() {
  const char* value = std::getenv("DEEPHASH_NUM_THREADS");
  if (value == nullptr || *value == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  while (end != nullptr && *end == ' ') ++end;
  DH_REQUIRE(end != value && *end == '\0' && n >= 1 && n <= 4096,
             "environment variable DEEPHASH_NUM_THREADS='", value,
             "' is not a thread count; expected an integer in [1, 4096]");
  return static_cast<int>(n);
}

// OMP_NUM_THREADS belongs to OpenMP ("4" or a per-nesting-level list "4,2"): we take its
// first level when it is a valid count and otherwise ignore it, as it is not ours to reject.
int openmp_env_threads() {
  const char* value = std::getenv("OMP_NUM_THREADS");
  if (value == nullptr) return 0;
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  if (end == value || n < 1 || n > 4096) return 0;
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
  DH_REQUIRE(n >= 1 && n <= 4096, "n_threads must be in [1, 4096], got ", n);
  g_threads.store(n, std::memory_order_release);
}

void run_parallel(int n_workers, const std::function<void(int)>& body) {
  if (n_workers <= 1) {
    body(0);
    return;
  }
  std::exception_ptr first_error;
  std::mutex error_mutex;
  auto guarded = [&](int t) {
    try {
      body(t);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!first_error) first_error = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(n_workers - 1));
  try {
    for (int t = 1; t < n_workers; ++t) workers.emplace_back(guarded, t);
  } catch (...) {  // could not start a thread: run the remaining parts here
    for (int t = static_cast<int>(workers.size()) + 1; t < n_workers; ++t) guarded(t);
  }
  guarded(0);
  for (auto& w : workers) w.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace deephash
