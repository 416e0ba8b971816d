// cublas.cpp: the cuBLAS entry points we use, resolved with dlopen/dlsym (cublas.hpp).
// The prototypes below are cuBLAS v2's C API (handles are opaque pointers, statuses and
// enums are ints: 0 = success, operation 0 = N, 1 = T).
#include "deephash_cuda/cublas.hpp"

#include <dlfcn.h>

#include <climits>
#include <mutex>
#include <stdexcept>

#include "deephash/errors.hpp"

namespace deephash::cuda {
namespace {

using CreateFn = int (*)(void**);
using DestroyFn = int (*)(void*);
using SetStreamFn = int (*)(void*, cudaStream_t);
using SetMathModeFn = int (*)(void*, int);
using SgemmFn = int (*)(void*, int, int, int, int, int, const float*, const float*, int, const float*, int,
                        const float*, float*, int);

struct CublasApi {
  std::string path;
  CreateFn create = nullptr;
  DestroyFn destroy = nullptr;
  SetStreamFn set_stream = nullptr;
  SetMathModeFn set_math_mode = nullptr;
  SgemmFn sgemm = nullptr;
};

std::mutex api_mutex;
CublasApi api;  // written once under api_mutex, read after load_cublas returned

constexpr int kDefaultMath = 0;  // CUBLAS_DEFAULT_MATH: full float32, no TF32

void check_status(int status, const char* what) {
  if (status != 0)
    throw std::runtime_error(std::string("cuBLAS ") + what + " failed with status " + std::to_string(status));
}

const CublasApi& loaded_api() {
  std::lock_guard<std::mutex> lock(api_mutex);
  if (api.sgemm == nullptr)
    throw std::runtime_error("cuBLAS is not loaded (deephash_ext finds it on first GPU training)");
  return api;
}

int to_int(std::size_t value, const char* name) {
  DH_REQUIRE(value <= static_cast<std::size_t>(INT_MAX), name, " = ", value, " exceeds the cuBLAS int range");
  return static_cast<int>(value);
}

}  // namespace

void load_cublas(const std::string& path) {
  std::lock_guard<std::mutex> lock(api_mutex);
  if (api.sgemm != nullptr) return;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* error = dlerror();
    throw std::runtime_error("cannot open cuBLAS at " + path + ": " + (error ? error : "unknown error"));
  }
  const auto symbol = [&](const char* name) {
    void* p = dlsym(lib, name);
    if (p == nullptr) {
      dlclose(lib);
      throw std::runtime_error(path + " has no symbol " + name);
    }
    return p;
  };
  CublasApi loaded;
  loaded.path = path;
  loaded.create = reinterpret_cast<CreateFn>(symbol("cublasCreate_v2"));
  loaded.destroy = reinterpret_cast<DestroyFn>(symbol("cublasDestroy_v2"));
  loaded.set_stream = reinterpret_cast<SetStreamFn>(symbol("cublasSetStream_v2"));
  loaded.set_math_mode = reinterpret_cast<SetMathModeFn>(symbol("cublasSetMathMode"));
  loaded.sgemm = reinterpret_cast<SgemmFn>(symbol("cublasSgemm_v2"));
  api = loaded;  // the library stays open for the life of the process
}

std::string cublas_library() {
  std::lock_guard<std::mutex> lock(api_mutex);
  return api.path;
}

Blas::Blas(cudaStream_t stream) {
  const CublasApi& f = loaded_api();
  check_status(f.create(&handle_), "cublasCreate");
  try {
    check_status(f.set_stream(handle_, stream), "cublasSetStream");
    check_status(f.set_math_mode(handle_, kDefaultMath), "cublasSetMathMode");
  } catch (...) {
    f.destroy(handle_);
    throw;
  }
}

Blas::~Blas() {
  if (handle_ != nullptr) api.destroy(handle_);
}

void Blas::gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) const {
  // A row-major matrix is its transpose in column-major order, so row-major C = op(A) op(B)
  // is column-major C^T = op(B)^T op(A)^T: swap the operands, keep the flags.
  check_status(api.sgemm(handle_, trans_b ? 1 : 0, trans_a ? 1 : 0, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"),
                         &alpha, b, to_int(ldb, "ldb"), a, to_int(lda, "lda"), &beta, c, to_int(ldc, "ldc")),
               "sgemm");
}

}  // namespace deephash::cuda
