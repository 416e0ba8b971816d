// deephash/host_device.hpp: DEEPHASH_HD marks inline functions that the CUDA kernels share
// with the CPU core (random numbers, the sigmoid), so both compute them the same way.
// On the host they are always inlined: the per-ISA element-wise files (rbm_elementwise_*.cpp)
// then each get their own copy compiled with their own flags, and the linker never has to
// choose between differently compiled out-of-line copies of one inline function.
#pragma once

#if defined(__CUDACC__)
#define DEEPHASH_HD __host__ __device__
#elif defined(__GNUC__)
#define DEEPHASH_HD __attribute__((always_inline))
#else
#define DEEPHASH_HD
#endif
