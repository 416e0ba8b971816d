// deephash_cuda/cublas.hpp: cuBLAS sgemm, opened at run time with dlopen.
//
// cuBLAS is not part of the build (the build machines have nvcc but no cuBLAS): the Python
// layer finds a libcublas (the nvidia-cublas wheel that a CUDA torch brings, or the
// toolkit's) and passes its path to load_cublas. Only the RBM kernels need it; search does not.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace deephash::cuda {

/// Opens cuBLAS at `path` (std::runtime_error if it cannot be opened or lacks a symbol).
void load_cublas(const std::string& path);

/// Path of the loaded library, or "" before load_cublas succeeds.
std::string cublas_library();

/// A cuBLAS handle bound to one stream (created on the current device).
class Blas {
 public:
  explicit Blas(cudaStream_t stream);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  /// Row-major C (m x n) = alpha op(A) op(B) + beta C, the signature of the CPU sgemm.
  void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
            std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) const;

 private:
  void* handle_ = nullptr;
};

}  // namespace deephash::cuda
