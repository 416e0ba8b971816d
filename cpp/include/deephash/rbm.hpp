// deephash/rbm.hpp: binary RBM kernels on caller-owned float32 arrays (row-major).
//
// Conventions (scikit-learn's BernoulliRBM): components is n_hidden x n_visible (W^T),
// P(h = 1 | v) = sigmoid(v . components[j] + hidden_bias[j]),
// P(v = 1 | h) = sigmoid(h . components[:, i] + visible_bias[i]) (binary visible units), or
// E[v | h] = h . components[:, i] + visible_bias[i] (Gaussian visible units of unit variance,
// for standardised real-valued input).
// Every matrix product goes through sgemm (blas.hpp); random numbers are uniform(key of
// (seed, step), index) (rng.hpp), so results do not depend on the thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace deephash {

struct RbmParams {
  float learning_rate;
  float momentum;
  float weight_decay;
  float hashing_reg;              // lambda of the uniform-target regulariser; 0 disables it
  int cd_k;                       // Gibbs steps per update (>= 1)
  bool gaussian_visible = false;  // unit-variance Gaussian visible units (mean-field reconstruction)
};

/// The model and its momentum buffers, updated in place.
struct RbmArrays {
  std::size_t n_visible, n_hidden;
  float* components;           // n_hidden x n_visible
  float* hidden_bias;          // n_hidden
  float* visible_bias;         // n_visible
  float* components_velocity;  // n_hidden x n_visible
  float* hidden_velocity;      // n_hidden
  float* visible_velocity;     // n_visible
};

/**
 * CD-k on consecutive minibatches: minibatch b holds rows order[b * batch_size ...] of v
 * (n_rows x n_visible, values in [0, 1], or any real values with gaussian_visible) and uses
 * random stream first_step + b.
 *
 * One step: ph0 = P(h | v); h ~ ph0; k times { pv = P(v | h) (probabilities, or the Gaussian
 * mean with gaussian_visible; no sampling);
 * ph = P(h | pv); h ~ ph unless last }. With t = uniform_rank_targets(ph0):
 *   dW = momentum dW + lr (((1 - lambda) ph0 + lambda t)^T v - ph^T pv) / B - lr wd W
 *   db = momentum db + lr mean(ph0 - ph + lambda (t - ph0));  dc = momentum dc + lr mean(v - pv)
 *   W += dW; b += db; c += dc.
 * Hidden sample (row r, unit j) of Gibbs step g uses index (g * batch_size + r) * n_hidden + j,
 * so splitting the minibatches over several calls (first_step advancing) changes nothing.
 */
void cd_train(RbmArrays& rbm, const float* v, std::size_t n_rows, const std::int64_t* order, std::size_t n_order,
              std::size_t batch_size, const RbmParams& params, std::uint64_t seed, std::uint64_t first_step,
              int n_threads);

/**
 * Hashing-regulariser targets (docs/algorithms.md, sec. 2.4): the rank of p[r][j] within row r
 * (ties by column) maps to (rank + 0.5) / n_cols, within column j (ties by row) to
 * (rank + 0.5) / n_rows; t is the average of the two.
 */
void uniform_rank_targets(const float* p, std::size_t n_rows, std::size_t n_cols, float* t, int n_threads);

/// out (n x n_hidden) = sigmoid(v components^T + hidden_bias).
void hidden_probabilities(const RbmArrays& rbm, const float* v, std::size_t n, float* out, int n_threads);

/// out (n x n_visible) = sigmoid(h components + visible_bias), or without the sigmoid (the
/// Gaussian mean) when gaussian.
void visible_probabilities(const RbmArrays& rbm, const float* h, std::size_t n, float* out, bool gaussian,
                           int n_threads);

/// One layer of a thresholded encoder: bit j = (z . weights[j] - offsets[j] > 0).
struct EncoderLayer {
  const float* weights;  // n_out x n_in
  const float* offsets;  // n_out
  std::size_t n_in, n_out;
};

/**
 * Mean over the n rows of x (n x d) of (z . weights^T), z = [x > input_thresholds] when
 * thresholds are given, else x (centring offsets, docs/algorithms.md, sec. 2.5). In row blocks.
 */
void mean_projection(const float* x, std::size_t n, std::size_t d, const float* input_thresholds, const float* weights,
                     std::size_t n_out, float* mean, int n_threads);

/**
 * Packed codes (n x last n_out / 8 bytes) of x (n x d) through the stack: z0 = [x > thresholds]
 * (or x when thresholds is null), z_l = [z_{l-1} W_l^T - offsets_l > 0]. Rows go through all
 * layers in blocks, so no per-layer matrix for the whole input is ever built. The last
 * layer's n_out must be a multiple of 8.
 */
void encode_layers(const float* x, std::size_t n, std::size_t d, const float* input_thresholds,
                   const std::vector<EncoderLayer>& layers, std::uint8_t* out, int n_threads);

}  // namespace deephash
