// deephash_cuda/check.cuh: CUDA errors become C++ exceptions (never aborts).
//
// DH_CUDA_CHECK(expr) throws std::bad_alloc for cudaErrorMemoryAllocation (pybind11:
// MemoryError) and std::runtime_error naming the call, file and line for any other error
// (RuntimeError). DH_CUDA_CHECK_LAUNCH() follows every kernel launch.
#pragma once
#include <cuda_runtime.h>

#include <new>
#include <stdexcept>
#include <string>

namespace deephash::cuda::detail {

inline void throw_cuda_error(cudaError_t error, const char* what, const char* file, int line) {
  if (error == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // reset the last-error state, so a later launch check does not see it
    throw std::bad_alloc();
  }
  throw std::runtime_error(std::string("CUDA error in ") + what + " (" + file + ":" + std::to_string(line) +
                           "): " + cudaGetErrorName(error) + ": " + cudaGetErrorString(error));
}

}  // namespace deephash::cuda::detail

#define DH_CUDA_CHECK(expr)                                                                                         \
  do {                                                                                                              \
    const cudaError_t dh_error_ = (expr);                                                                           \
    if (dh_error_ != cudaSuccess) ::deephash::cuda::detail::throw_cuda_error(dh_error_, #expr, __FILE__, __LINE__); \
  } while (0)

#define DH_CUDA_CHECK_LAUNCH() DH_CUDA_CHECK(cudaGetLastError())
