// deephash_cuda/rbm.hpp: the RBM kernels of deephash/rbm.hpp on a CUDA GPU (host API).
//
// Same contracts and the same random numbers as the CPU core: uniform(stream_key(seed,
// first_step + b), index) with the same indices, the same sigmoid (no FMA contraction) and
// the same rank targets. Products run in cuBLAS (cublas.hpp), which sums in a different
// order than OpenBLAS: results agree with the CPU to float rounding, not bit for bit.
// Arrays are host memory; each call uploads what it needs and writes the results back.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "deephash/rbm.hpp"

namespace deephash::cuda {

/// deephash::cd_train on device `device`; the rows of v named by `order` are uploaded once.
void cd_train(RbmArrays& rbm, const float* v, std::size_t n_rows, const std::int64_t* order, std::size_t n_order,
              std::size_t batch_size, const RbmParams& params, std::uint64_t seed, std::uint64_t first_step,
              int device);

/// deephash::encode_layers on device `device`, in blocks of rows.
void encode_layers(const float* x, std::size_t n, std::size_t d, const float* input_thresholds,
                   const std::vector<EncoderLayer>& layers, std::uint8_t* out, int device);

}  // namespace deephash::cuda
