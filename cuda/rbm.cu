// rbm.cu: CD-k training and the thresholded encoder on the GPU (deephash_cuda/rbm.hpp).
// The step is the CPU's (cpp/src/rbm.cpp) operation for operation: products in cuBLAS,
// element-wise work in the kernels below, which use the CPU's sigmoid and random numbers
// and sum the bias gradients in the same order (one thread per sum, double accumulation).
// This file is compiled without FMA contraction (cuda/CMakeLists.txt), as the CPU core is.
#include <cub/device/device_segmented_sort.cuh>

#include <algorithm>
#include <cstring>
#include <vector>

#include "deephash/activation.hpp"
#include "deephash/errors.hpp"
#include "deephash/rng.hpp"
#include "deephash_cuda/check.cuh"
#include "deephash_cuda/cublas.hpp"
#include "deephash_cuda/device_buffer.cuh"
#include "deephash_cuda/rbm.hpp"

namespace deephash::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::size_t kUploadBytes = std::size_t{64} << 20;   // host staging for the training rows
constexpr std::size_t kEncodeBytes = std::size_t{256} << 20;  // per encoder activation buffer

unsigned blocks_for(std::size_t work) {
  return static_cast<unsigned>(std::clamp<std::size_t>((work + kThreads - 1) / kThreads, 1, std::size_t{1} << 20));
}

#define DH_GRID_STRIDE(e, total)                                                                     \
  for (std::size_t e = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < (total); \
       e += static_cast<std::size_t>(gridDim.x) * blockDim.x)

// Hidden-major probabilities (J x bs, row stride ld): p = sigmoid(p + bias[j]); when h is
// given, h[r][j] = [uniform(key, (gibbs_base + r) J + j) < p]; when negate, p = -p after.
__global__ void hidden_step_kernel(float* probs, std::size_t J, std::size_t bs, std::size_t ld, const float* bias,
                                   float* h, std::uint64_t key, std::uint64_t gibbs_base, bool negate) {
  DH_GRID_STRIDE(e, J * bs) {
    const std::size_t j = e / bs, r = e % bs;
    const float value = sigmoid(probs[j * ld + r] + bias[j]);
    if (h != nullptr) h[r * J + j] = uniform(key, (gibbs_base + r) * J + j) < value ? 1.0f : 0.0f;
    probs[j * ld + r] = negate ? -value : value;
  }
}

// pv (bs x I) = sigmoid(pv + bias[i]), or pv + bias[i] (the mean of Gaussian visible units).
__global__ void visible_step_kernel(float* pv, std::size_t bs, std::size_t I, const float* bias, bool gaussian) {
  DH_GRID_STRIDE(e, bs * I) pv[e] = gaussian ? pv[e] + bias[e % I] : sigmoid(pv[e] + bias[e % I]);
}

// grad[i] = sum over rows r, in order, of v[r][i] - pv[r][i] (double).
__global__ void visible_grad_kernel(const float* v, const float* pv, std::size_t bs, std::size_t I, double* grad) {
  DH_GRID_STRIDE(i, I) {
    double sum = 0.0;
    for (std::size_t r = 0; r < bs; ++r) sum += v[r * I + i] - pv[r * I + i];
    grad[i] = sum;
  }
}

// out[j] = sum over c < ld, in order, of p[j][c] (double).
__global__ void row_sums_kernel(const float* p, std::size_t J, std::size_t ld, double* out) {
  DH_GRID_STRIDE(j, J) {
    double sum = 0.0;
    for (std::size_t c = 0; c < ld; ++c) sum += p[j * ld + c];
    out[j] = sum;
  }
}

__device__ std::uint32_t ordered_bits(float value) {
  const auto bits = static_cast<std::uint32_t>(__float_as_uint(value));
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// Sort keys (value bits << 32 | position) of p (J x bs, stride ld), by rows (segments of bs,
// position = column) or by columns (segments of J, position = row).
__global__ void rank_keys_kernel(const float* p, std::size_t J, std::size_t bs, std::size_t ld, bool by_rows,
                                 unsigned long long* keys) {
  DH_GRID_STRIDE(e, J * bs) {
    const std::size_t j = e / bs, r = e % bs;
    const auto bits = static_cast<unsigned long long>(ordered_bits(p[j * ld + r])) << 32;
    if (by_rows)
      keys[j * bs + r] = bits | r;
    else
      keys[r * J + j] = bits | j;
  }
}

// t (J x bs) from sorted keys: (rank + 0.5) / segment length; by columns, averaged in.
__global__ void rank_targets_kernel(const unsigned long long* sorted, std::size_t J, std::size_t bs, bool by_rows,
                                    float* t) {
  DH_GRID_STRIDE(e, J * bs) {
    const std::size_t length = by_rows ? bs : J, segment = e / length, rank = e % length;
    const auto position = static_cast<std::size_t>(sorted[e] & 0xFFFFFFFFull);
    const float q = (static_cast<float>(rank) + 0.5f) / static_cast<float>(length);
    if (by_rows)
      t[segment * bs + position] = q;
    else
      t[position * bs + segment] = 0.5f * (t[position * bs + segment] + q);
  }
}

__global__ void segment_offsets_kernel(std::int64_t* offsets, std::size_t segments, std::size_t length) {
  DH_GRID_STRIDE(s, segments + 1) offsets[s] = static_cast<std::int64_t>(s * length);
}

// pos (J x bs, stride ld) = (1 - lambda) pos + lambda t.
__global__ void mix_targets_kernel(float* pos, std::size_t J, std::size_t bs, std::size_t ld, const float* t,
                                   float lambda) {
  DH_GRID_STRIDE(e, J * bs) {
    const std::size_t j = e / bs, r = e % bs;
    pos[j * ld + r] = (1.0f - lambda) * pos[j * ld + r] + lambda * t[e];
  }
}

// dW -= decay W; W += dW.
__global__ void weight_update_kernel(float* w, float* dw, std::size_t n, float decay) {
  DH_GRID_STRIDE(e, n) {
    const float d = dw[e] - decay * w[e];
    dw[e] = d;
    w[e] += d;
  }
}

// velocity = momentum velocity + lr (grad / bs); bias += velocity.
__global__ void bias_update_kernel(float* bias, float* velocity, const double* grad, std::size_t n, float momentum,
                                   float learning_rate, double bs) {
  DH_GRID_STRIDE(e, n) {
    velocity[e] = momentum * velocity[e] + learning_rate * static_cast<float>(grad[e] / bs);
    bias[e] += velocity[e];
  }
}

// z (n x d) = [x > thresholds] as 0/1 floats.
__global__ void threshold_kernel(const float* x, std::size_t n, std::size_t d, const float* thresholds, float* z) {
  DH_GRID_STRIDE(e, n * d) z[e] = x[e] > thresholds[e % d] ? 1.0f : 0.0f;
}

// out (n x bits / 8) = packed [y > thresholds], bit j of a row in bit j % 8 of byte j / 8.
__global__ void pack_threshold_kernel(const float* y, std::size_t n, std::size_t bits, const float* thresholds,
                                      std::uint8_t* out) {
  const std::size_t code_bytes = bits / 8;
  DH_GRID_STRIDE(e, n * code_bytes) {
    const std::size_t row = e / code_bytes, byte = e % code_bytes;
    unsigned value = 0;
    for (unsigned bit = 0; bit < 8; ++bit) {
      const std::size_t j = byte * 8 + bit;
      value |= static_cast<unsigned>(y[row * bits + j] > thresholds[j]) << bit;
    }
    out[e] = static_cast<std::uint8_t>(value);
  }
}

#undef DH_GRID_STRIDE

template <class T>
void upload(DeviceBuffer<T>& buffer, const T* host, std::size_t n, cudaStream_t stream) {
  buffer.resize(n);
  DH_CUDA_CHECK(cudaMemcpyAsync(buffer.data(), host, n * sizeof(T), cudaMemcpyHostToDevice, stream));
}

template <class T>
void download(T* host, const DeviceBuffer<T>& buffer, std::size_t n, cudaStream_t stream) {
  DH_CUDA_CHECK(cudaMemcpyAsync(host, buffer.data(), n * sizeof(T), cudaMemcpyDeviceToHost, stream));
}

// The rank targets of the hashing regulariser (deephash::uniform_rank_targets) of the
// hidden-major p (J x bs, stride ld), into t (J x bs): two segmented sorts of unique keys.
class RankTargets {
 public:
  RankTargets(std::size_t J, std::size_t B) : keys_(J * B), sorted_(J * B), offsets_(std::max(J, B) + 1) {}

  void operator()(const float* p, std::size_t J, std::size_t bs, std::size_t ld, float* t, cudaStream_t stream) {
    for (const bool by_rows : {true, false}) {
      const std::size_t segments = by_rows ? J : bs, length = by_rows ? bs : J, n = J * bs;
      rank_keys_kernel<<<blocks_for(n), kThreads, 0, stream>>>(p, J, bs, ld, by_rows, keys_.data());
      DH_CUDA_CHECK_LAUNCH();
      segment_offsets_kernel<<<blocks_for(segments + 1), kThreads, 0, stream>>>(offsets_.data(), segments, length);
      DH_CUDA_CHECK_LAUNCH();
      std::size_t bytes = 0;
      DH_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(
          nullptr, bytes, keys_.data(), sorted_.data(), static_cast<std::int64_t>(n),
          static_cast<std::int64_t>(segments), offsets_.data(), offsets_.data() + 1, stream));
      temp_.resize(std::max<std::size_t>(bytes, 1));
      DH_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(
          temp_.data(), bytes, keys_.data(), sorted_.data(), static_cast<std::int64_t>(n),
          static_cast<std::int64_t>(segments), offsets_.data(), offsets_.data() + 1, stream));
      rank_targets_kernel<<<blocks_for(n), kThreads, 0, stream>>>(sorted_.data(), J, bs, by_rows, t);
      DH_CUDA_CHECK_LAUNCH();
    }
  }

 private:
  DeviceBuffer<unsigned long long> keys_, sorted_;
  DeviceBuffer<std::int64_t> offsets_;
  DeviceBuffer<std::uint8_t> temp_;
};

}  // namespace

void cd_train(RbmArrays& rbm, const float* v, std::size_t n_rows, const std::int64_t* order, std::size_t n_order,
              std::size_t batch_size, const RbmParams& params, std::uint64_t seed, std::uint64_t first_step,
              int device) {
  DH_REQUIRE(batch_size >= 1, "batch_size must be >= 1");
  DH_REQUIRE(params.cd_k >= 1, "cd_k must be >= 1");
  for (std::size_t i = 0; i < n_order; ++i)
    DH_REQUIRE(order[i] >= 0 && static_cast<std::size_t>(order[i]) < n_rows, "order[", i, "] = ", order[i],
               " is not a row of v");
  if (n_order == 0) return;
  const std::size_t I = rbm.n_visible, J = rbm.n_hidden, B = std::min(batch_size, n_order);
  const float lambda = params.hashing_reg;
  DeviceScope scope(device);
  Stream stream;
  const cudaStream_t s = stream.get();
  Blas blas(s);

  // The rows in training order, gathered on the host in pieces and uploaded once.
  DeviceBuffer<float> rows(n_order * I);
  {
    const std::size_t piece = std::max<std::size_t>(1, kUploadBytes / (I * sizeof(float)));
    std::vector<float> staging(std::min(piece, n_order) * I);
    for (std::size_t r0 = 0; r0 < n_order; r0 += piece) {
      const std::size_t count = std::min(piece, n_order - r0);
      for (std::size_t r = 0; r < count; ++r)
        std::memcpy(&staging[r * I], v + static_cast<std::size_t>(order[r0 + r]) * I, I * sizeof(float));
      DH_CUDA_CHECK(
          cudaMemcpyAsync(rows.data() + r0 * I, staging.data(), count * I * sizeof(float), cudaMemcpyHostToDevice, s));
      stream.synchronize();  // staging is refilled next
    }
  }
  DeviceBuffer<float> W, dW, b, db, c, dc;
  upload(W, rbm.components, J * I, s);
  upload(dW, rbm.components_velocity, J * I, s);
  upload(b, rbm.hidden_bias, J, s);
  upload(db, rbm.hidden_velocity, J, s);
  upload(c, rbm.visible_bias, I, s);
  upload(dc, rbm.visible_velocity, I, s);
  // x = [v; pv] (2B x I) and p = [pos | -ph] (J x 2B), as on the CPU.
  DeviceBuffer<float> x(2 * B * I), p(J * 2 * B), h(B * J), t(lambda > 0 ? J * B : 0);
  DeviceBuffer<double> hidden_grad(J), visible_grad(I);
  RankTargets rank_targets(lambda > 0 ? J : 0, lambda > 0 ? B : 0);

  for (std::size_t step = 0; step * B < n_order; ++step) {
    const std::size_t row0 = step * B, bs = std::min(B, n_order - row0), ld = 2 * bs;
    const std::uint64_t key = stream_key(seed, first_step + step);
    float* vb = x.data();
    float* pv = x.data() + bs * I;
    float* pos = p.data();
    float* neg = p.data() + bs;
    DH_CUDA_CHECK(cudaMemcpyAsync(vb, rows.data() + row0 * I, bs * I * sizeof(float), cudaMemcpyDeviceToDevice, s));
    blas.gemm(false, true, J, bs, I, 1.0f, W.data(), I, vb, I, 0.0f, pos, ld);
    hidden_step_kernel<<<blocks_for(J * bs), kThreads, 0, s>>>(pos, J, bs, ld, b.data(), h.data(), key, 0, false);
    DH_CUDA_CHECK_LAUNCH();
    for (int g = 1; g <= params.cd_k; ++g) {
      const bool last = g == params.cd_k;
      blas.gemm(false, false, bs, I, J, 1.0f, h.data(), J, W.data(), I, 0.0f, pv, I);
      visible_step_kernel<<<blocks_for(bs * I), kThreads, 0, s>>>(pv, bs, I, c.data(), params.gaussian_visible);
      DH_CUDA_CHECK_LAUNCH();
      if (last) {
        visible_grad_kernel<<<blocks_for(I), kThreads, 0, s>>>(vb, pv, bs, I, visible_grad.data());
        DH_CUDA_CHECK_LAUNCH();
      }
      blas.gemm(false, true, J, bs, I, 1.0f, W.data(), I, pv, I, 0.0f, neg, ld);
      hidden_step_kernel<<<blocks_for(J * bs), kThreads, 0, s>>>(neg, J, bs, ld, b.data(), last ? nullptr : h.data(),
                                                                 key, static_cast<std::uint64_t>(g) * batch_size, last);
      DH_CUDA_CHECK_LAUNCH();
    }
    if (lambda > 0) {
      rank_targets(pos, J, bs, ld, t.data(), s);
      mix_targets_kernel<<<blocks_for(J * bs), kThreads, 0, s>>>(pos, J, bs, ld, t.data(), lambda);
      DH_CUDA_CHECK_LAUNCH();
    }
    row_sums_kernel<<<blocks_for(J), kThreads, 0, s>>>(p.data(), J, ld, hidden_grad.data());
    DH_CUDA_CHECK_LAUNCH();
    const float scale = params.learning_rate / static_cast<float>(bs);
    blas.gemm(false, false, J, I, ld, scale, p.data(), ld, x.data(), I, params.momentum, dW.data(), I);
    weight_update_kernel<<<blocks_for(J * I), kThreads, 0, s>>>(W.data(), dW.data(), J * I,
                                                                params.learning_rate * params.weight_decay);
    DH_CUDA_CHECK_LAUNCH();
    bias_update_kernel<<<blocks_for(J), kThreads, 0, s>>>(b.data(), db.data(), hidden_grad.data(), J, params.momentum,
                                                          params.learning_rate, static_cast<double>(bs));
    DH_CUDA_CHECK_LAUNCH();
    bias_update_kernel<<<blocks_for(I), kThreads, 0, s>>>(c.data(), dc.data(), visible_grad.data(), I, params.momentum,
                                                          params.learning_rate, static_cast<double>(bs));
    DH_CUDA_CHECK_LAUNCH();
  }
  // The host arrays change only once every step has succeeded.
  stream.synchronize();
  download(rbm.components, W, J * I, s);
  download(rbm.components_velocity, dW, J * I, s);
  download(rbm.hidden_bias, b, J, s);
  download(rbm.hidden_velocity, db, J, s);
  download(rbm.visible_bias, c, I, s);
  download(rbm.visible_velocity, dc, I, s);
  stream.synchronize();
}

void encode_layers(const float* x, std::size_t n, std::size_t d, const float* input_thresholds,
                   const std::vector<EncoderLayer>& layers, std::uint8_t* out, int device) {
  DH_REQUIRE(!layers.empty(), "the encoder needs at least one layer");
  DH_REQUIRE(layers.front().n_in == d, "the first layer takes ", layers.front().n_in, " inputs, x has ", d);
  for (std::size_t l = 1; l < layers.size(); ++l)
    DH_REQUIRE(layers[l].n_in == layers[l - 1].n_out, "layer ", l, " takes ", layers[l].n_in, " inputs but layer ",
               l - 1, " gives ", layers[l - 1].n_out);
  const std::size_t bits = layers.back().n_out, code_bytes = bits / 8;
  DH_REQUIRE(bits % 8 == 0, "the last layer must have a multiple of 8 units, got ", bits);
  if (n == 0) return;
  DeviceScope scope(device);
  Stream stream;
  const cudaStream_t s = stream.get();
  Blas blas(s);
  std::vector<DeviceBuffer<float>> weights(layers.size()), offsets(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    upload(weights[l], layers[l].weights, layers[l].n_out * layers[l].n_in, s);
    upload(offsets[l], layers[l].offsets, layers[l].n_out, s);
  }
  DeviceBuffer<float> thresholds;
  if (input_thresholds != nullptr) upload(thresholds, input_thresholds, d, s);
  std::size_t widest = d;
  for (const auto& layer : layers) widest = std::max(widest, layer.n_out);
  const std::size_t block = std::clamp<std::size_t>(kEncodeBytes / (widest * sizeof(float)), 1, n);
  DeviceBuffer<float> xin(block * d), z(block * widest), y(block * widest);
  DeviceBuffer<std::uint8_t> packed(block * code_bytes);
  for (std::size_t r0 = 0; r0 < n; r0 += block) {
    const std::size_t rows = std::min(block, n - r0);
    DH_CUDA_CHECK(cudaMemcpyAsync(xin.data(), x + r0 * d, rows * d * sizeof(float), cudaMemcpyHostToDevice, s));
    const float* in = xin.data();
    if (input_thresholds != nullptr) {
      threshold_kernel<<<blocks_for(rows * d), kThreads, 0, s>>>(xin.data(), rows, d, thresholds.data(), z.data());
      DH_CUDA_CHECK_LAUNCH();
      in = z.data();
    }
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const EncoderLayer& layer = layers[l];
      blas.gemm(false, true, rows, layer.n_out, layer.n_in, 1.0f, in, layer.n_in, weights[l].data(), layer.n_in, 0.0f,
                y.data(), layer.n_out);
      if (l + 1 == layers.size()) {
        pack_threshold_kernel<<<blocks_for(rows * code_bytes), kThreads, 0, s>>>(y.data(), rows, bits,
                                                                                 offsets[l].data(), packed.data());
      } else {
        threshold_kernel<<<blocks_for(rows * layer.n_out), kThreads, 0, s>>>(y.data(), rows, layer.n_out,
                                                                             offsets[l].data(), z.data());
        in = z.data();
      }
      DH_CUDA_CHECK_LAUNCH();
    }
    download(out + r0 * code_bytes, packed, rows * code_bytes, s);
    stream.synchronize();  // xin and packed are reused by the next block
  }
}

}  // namespace deephash::cuda
