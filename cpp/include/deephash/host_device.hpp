// deephash/host_device.hpp: DEEPHASH_HD marks inline functions that the CUDA kernels share
// with the CPU core (random numbers, the sigmoid), so both compute them the same way.
#pragma once

#if defined(__CUDACC__)
#define DEEPHASH_HD __host__ __device__
#else
#define DEEPHASH_HD
#endif
