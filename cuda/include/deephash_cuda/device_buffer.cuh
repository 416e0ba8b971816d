// deephash_cuda/device_buffer.cuh: RAII for device memory, streams and the current device.
// Destructors never throw: memory is freed on every path, including exceptions.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "deephash_cuda/check.cuh"

namespace deephash::cuda {

/// n elements of T in device memory (uninitialised), freed on destruction.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) { resize(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }

  /// Makes room for at least n elements; the contents are not kept.
  void resize(std::size_t n) {
    if (n <= size_) return;
    release();
    void* p = nullptr;
    DH_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    data_ = static_cast<T*>(p);
    size_ = n;
  }
  T* data() const { return data_; }
  std::size_t size() const { return size_; }
  /// Hands the memory over to the caller, who must cudaFree it.
  T* release_ownership() noexcept {
    size_ = 0;
    return std::exchange(data_, nullptr);
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A non-blocking stream, destroyed after the work queued on it has finished.
class Stream {
 public:
  Stream() { DH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  void synchronize() const { DH_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

/// Makes `device` current for a scope and restores the previous device afterwards.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    DH_CUDA_CHECK(cudaGetDevice(&previous_));
    DH_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace deephash::cuda
