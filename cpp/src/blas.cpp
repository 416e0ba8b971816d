// blas.cpp: dlopen'ed cblas_sgemm and the panel-parallel product (see blas.hpp).
#include "deephash/blas.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>

#include "deephash/errors.hpp"
#include "deephash/threads.hpp"

namespace deephash {
namespace {

// A thread start costs ~30-50 us, the time of ~1M multiply-adds: smaller products stay on
// fewer threads (the panels, and so the results, do not change).
constexpr std::size_t kMinGemmWorkPerThread = std::size_t{1} << 20;

// CBLAS enum values (identical in every CBLAS).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using SetThreadsFn = void (*)(int);

std::mutex g_mutex;
SgemmFn g_sgemm = nullptr;
std::string g_path;

void* find(void* handle, const char* plain, const char* prefixed) {
  void* symbol = dlsym(handle, prefixed);
  return symbol != nullptr ? symbol : dlsym(handle, plain);
}

}  // namespace

void load_blas(const std::string& library_path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_sgemm != nullptr && g_path == library_path) return;
  void* handle = dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) throw std::runtime_error("cannot open BLAS library '" + library_path + "': " + dlerror());
  auto* sgemm_fn = reinterpret_cast<SgemmFn>(find(handle, "cblas_sgemm", "scipy_cblas_sgemm"));
  if (sgemm_fn == nullptr) throw std::runtime_error("BLAS library '" + library_path + "' has no cblas_sgemm");
  if (auto* set_threads =
          reinterpret_cast<SetThreadsFn>(find(handle, "openblas_set_num_threads", "scipy_openblas_set_num_threads")))
    set_threads(1);  // our workers parallelise; the library must not start its own pool
  g_sgemm = sgemm_fn;
  g_path = library_path;
}

std::string blas_library() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_path;
}

void sgemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
           std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc, int n_threads) {
  sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, n_threads, PanelHook());
}

void sgemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
           std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc, int n_threads,
           const PanelHook& epilogue) {
  sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, n_threads, PanelHook(), epilogue);
}

void sgemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
           std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc, int n_threads,
           const PanelHook& prologue, const PanelHook& epilogue) {
  DH_INTERNAL(g_sgemm != nullptr);
  if (m == 0 || n == 0) return;
  const SgemmFn gemm = g_sgemm;
  const int ta = trans_a ? kTrans : kNoTrans, tb = trans_b ? kTrans : kNoTrans;
  const auto i = [](std::size_t v) { return static_cast<int>(v); };
  // Panels depend only on the shapes, so each element is computed identically at any thread count.
  const bool split_rows = splits_rows(m, n);
  const std::size_t extent = split_rows ? m : n;
  const std::size_t panel_size = split_rows ? kGemmRowPanel : column_panel(n);
  const std::size_t panels = (extent + panel_size - 1) / panel_size;
  // One worker per panel, and no more than give each kMinGemmWorkPerThread multiply-adds.
  const std::size_t by_work = std::max<std::size_t>(1, m * n * std::max<std::size_t>(k, 1) / kMinGemmWorkPerThread);
  const int workers = static_cast<int>(std::min({static_cast<std::size_t>(std::max(n_threads, 1)), panels, by_work}));
  // Panels go, in order, to whichever worker is free, so a thread slowed by another process
  // does not hold the others back; any thread computes a panel the same way.
  std::atomic<std::size_t> next_panel{0};
  run_parallel(workers, [&](int) {
    for (std::size_t p; (p = next_panel.fetch_add(1, std::memory_order_relaxed)) < panels;) {
      const std::size_t begin = p * panel_size, size = std::min(panel_size, extent - begin);
      if (prologue) split_rows ? prologue(begin, size, 0, n) : prologue(0, m, begin, size);
      if (split_rows) {  // rows [begin, begin + size) of op(A) and C
        const float* a_panel = trans_a ? a + begin : a + begin * lda;
        gemm(kRowMajor, ta, tb, i(size), i(n), i(k), alpha, a_panel, i(lda), b, i(ldb), beta, c + begin * ldc, i(ldc));
        if (epilogue) epilogue(begin, size, 0, n);
      } else {  // columns [begin, begin + size) of op(B) and C
        const float* b_panel = trans_b ? b + begin * ldb : b + begin;
        gemm(kRowMajor, ta, tb, i(m), i(size), i(k), alpha, a, i(lda), b_panel, i(ldb), beta, c + begin, i(ldc));
        if (epilogue) epilogue(0, m, begin, size);
      }
    }
  });
}

}  // namespace deephash
