// deephash/blas.hpp: single-precision GEMM from a BLAS library loaded at run time.
//
// The library (scipy-openblas32's libscipy_openblas, installed from the Python package
// registry with deephash_ext) is opened with dlopen from a path the caller supplies, and
// its own threading is switched off: deephash runs every product single-threaded inside
// its own workers, splitting the output into fixed panels. So there is exactly one
// thread pool in play (no OpenBLAS threads spinning next to ours or torch's), and every
// output element is computed the same way whatever the thread count (reproducibility).
#pragma once
#include <cstddef>
#include <functional>
#include <string>

namespace deephash {

/// Opens the library and resolves cblas_sgemm (plain or scipy_-prefixed); throws
/// std::runtime_error if it cannot. Loading a second time with the same path is a no-op.
void load_blas(const std::string& library_path);
/// The loaded library's path, or "" if none.
std::string blas_library();

/**
 * Row-major C = alpha * op(A) * op(B) + beta * C, with op(A) m x k, op(B) k x n, computed in
 * panels of kGemmRowPanel rows or column_panel(n) columns (rows when m >= n) spread over
 * n_threads.
 * Throws std::logic_error if no BLAS library is loaded.
 */
void sgemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
           std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc, int n_threads);

/// Work on one panel of C, rows [row, row + rows) x columns [col, col + cols), run on the
/// panel's thread. As an epilogue it runs after the panel is written (the panel is final and
/// still in cache); as a prologue, before the panel's product.
using PanelHook = std::function<void(std::size_t row, std::size_t rows, std::size_t col, std::size_t cols)>;

/// sgemm followed, panel by panel, by `epilogue`.
void sgemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
           std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc, int n_threads,
           const PanelHook& epilogue);

/// sgemm in which each panel's product is preceded, on the same thread, by `prologue` with
/// that panel's coordinates in C (for example, to finish writing the rows of op(A) that a
/// row panel reads) and followed by `epilogue`.
void sgemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
           std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc, int n_threads,
           const PanelHook& prologue, const PanelHook& epilogue);

/// True when sgemm cuts this shape into row panels (rows of op(A) and C), false for column panels.
inline bool splits_rows(std::size_t m, std::size_t n) { return m >= n; }

// Panel sizes, fixed by the shape alone. Row panels: 256 and 1024 rows were measured slower on
// the RBM shapes (1024 leaves a thread idle on 1024 hidden units). Column panels: each one
// re-packs all of op(A), so wide panels amortise that better (1024 columns measured ~2.5 %
// faster per CD-1 epoch than 512 on 4096 visible units), but only where they still give
// four panels or more (2048 x 1024 encoder layers would otherwise lose a thread).
constexpr std::size_t kGemmRowPanel = 512;
constexpr std::size_t kGemmColumnPanel = 512, kGemmWideColumnPanel = 1024;
inline std::size_t column_panel(std::size_t n) {
  return n >= 4 * kGemmWideColumnPanel ? kGemmWideColumnPanel : kGemmColumnPanel;
}

}  // namespace deephash
