// rbm.cpp: CD-k training, hashing-regulariser targets and thresholded encoding (rbm.hpp).
// Matrix products: sgemm (blas.hpp). Element-wise work: our threads, split by rows or
// columns in fixed ways, so results are the same at any thread count.
#include "deephash/rbm.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "deephash/bitpack.hpp"
#include "deephash/blas.hpp"
#include "deephash/errors.hpp"
#include "deephash/rbm_elementwise.hpp"
#include "deephash/rng.hpp"
#include "deephash/simd.hpp"
#include "deephash/threads.hpp"

namespace deephash {
namespace {

constexpr std::size_t kEncodeBlockRows = 512;
constexpr std::size_t kMaxBatchOnStack = 256;  // samples drawn per bernoulli call

// a[r][c] = sigmoid(a[r][c] + bias[c]) for an n x m block with row stride ld.
void sigmoid_rows(float* a, std::size_t n, std::size_t m, std::size_t ld, const float* bias, int n_threads) {
  const RbmElementwise& ew = rbm_elementwise(active_level());
  for_ranges(n, m, n_threads, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) ew.sigmoid_bias(a + r * ld, m, bias);
  });
}

// a[r][c] += bias[c] for an n x m block with row stride ld (Gaussian visible means).
void add_bias_rows(float* a, std::size_t n, std::size_t m, std::size_t ld, const float* bias, int n_threads) {
  for_ranges(n, m, n_threads, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t c = 0; c < m; ++c) a[r * ld + c] += bias[c];
  });
}

// out[r] = sum over c < m, in order, of a[r * m + c] (double), for r < n. Four rows at a
// time, so that four independent additions are in flight; each row's order is unchanged.
void row_sums(const float* a, std::size_t n, std::size_t m, double* out) {
  std::size_t r = 0;
  for (; r + 4 <= n; r += 4) {
    const float* a0 = a + r * m;
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    for (std::size_t c = 0; c < m; ++c) {
      s0 += a0[c];
      s1 += a0[m + c];
      s2 += a0[2 * m + c];
      s3 += a0[3 * m + c];
    }
    out[r] = s0;
    out[r + 1] = s1;
    out[r + 2] = s2;
    out[r + 3] = s3;
  }
  for (; r < n; ++r) {
    double sum = 0.0;
    for (std::size_t c = 0; c < m; ++c) sum += a[r * m + c];
    out[r] = sum;
  }
}

// out[c] += sum over rows r < n of a[r * ld + c] (double accumulation, rows in order;
// each thread owns a range of columns and reads rows contiguously).
void column_sums(const float* a, std::size_t n, std::size_t m, std::size_t ld, double* out, int n_threads) {
  for_ranges(m, n, n_threads, [&](std::size_t c0, std::size_t c1) {
    for (std::size_t r = 0; r < n; ++r) {
      const float* row = a + r * ld;
      for (std::size_t c = c0; c < c1; ++c) out[c] += row[c];
    }
  });
}

// z = [x > thresholds] as 0/1 floats (n x d).
void threshold_rows(const float* x, std::size_t n, std::size_t d, const float* thresholds, float* z, int n_threads) {
  for_ranges(n, d, n_threads, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t c = 0; c < d; ++c) z[r * d + c] = x[r * d + c] > thresholds[c] ? 1.0f : 0.0f;
  });
}

// The rows of one encoder block as the first layer sees them: [x > thresholds] in
// `scratch` when thresholds are given, else x itself.
const float* block_input(const float* x, std::size_t rows, std::size_t d, const float* thresholds, float* scratch,
                         int n_threads) {
  if (thresholds == nullptr) return x;
  threshold_rows(x, rows, d, thresholds, scratch, n_threads);
  return scratch;
}

// Order-preserving map of a float to 32 bits (negatives flipped), for integer sorting.
inline std::uint32_t ordered_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// Ranks of values[0..n) (stride `stride`) by (value, position), written as
// out[position * out_stride] = (rank + 0.5) / n, or averaged into it when `average`.
// Keys pack (value bits, position) into one integer, so a plain integer sort gives the
// (value, index) order with no comparator indirection.
void rank_quantiles(const float* values, std::size_t n, std::size_t stride, float* out, std::size_t out_stride,
                    bool average, std::vector<std::uint64_t>& keys) {
  keys.resize(n);
  for (std::size_t k = 0; k < n; ++k)
    keys[k] = (static_cast<std::uint64_t>(ordered_bits(values[k * stride])) << 32) | k;
  std::sort(keys.begin(), keys.end());
  for (std::size_t rank = 0; rank < n; ++rank) {
    float& cell = out[(keys[rank] & 0xFFFFFFFFu) * out_stride];
    const float q = (static_cast<float>(rank) + 0.5f) / static_cast<float>(n);
    cell = average ? 0.5f * (cell + q) : q;
  }
}

}  // namespace

void uniform_rank_targets(const float* p, std::size_t n_rows, std::size_t n_cols, float* t, int n_threads) {
  DH_REQUIRE(n_rows < (std::size_t{1} << 32) && n_cols < (std::size_t{1} << 32), "matrix too large");
  // Rows: t = (rank within row + 0.5) / n_cols.
  for_ranges(n_rows, n_cols * 8, n_threads, [&](std::size_t r0, std::size_t r1) {
    std::vector<std::uint64_t> keys;
    for (std::size_t r = r0; r < r1; ++r) rank_quantiles(p + r * n_cols, n_cols, 1, t + r * n_cols, 1, false, keys);
  });
  // Columns: average in (rank within column + 0.5) / n_rows.
  for_ranges(n_cols, n_rows * 8, n_threads, [&](std::size_t c0, std::size_t c1) {
    std::vector<std::uint64_t> keys;
    for (std::size_t c = c0; c < c1; ++c) rank_quantiles(p + c, n_rows, n_cols, t + c, n_cols, true, keys);
  });
}

void cd_train(RbmArrays& rbm, const float* v, std::size_t n_rows, const std::int64_t* order, std::size_t n_order,
              std::size_t batch_size, const RbmParams& params, std::uint64_t seed, std::uint64_t first_step,
              int n_threads) {
  DH_REQUIRE(batch_size >= 1, "batch_size must be >= 1");
  DH_REQUIRE(params.cd_k >= 1, "cd_k must be >= 1");
  for (std::size_t i = 0; i < n_order; ++i)
    DH_REQUIRE(order[i] >= 0 && static_cast<std::size_t>(order[i]) < n_rows, "order[", i, "] = ", order[i],
               " is not a row of v");
  const ParallelScope workers(n_threads);  // six parallel calls per minibatch share these
  const std::size_t I = rbm.n_visible, J = rbm.n_hidden, B = std::min(batch_size, n_order);
  const RbmElementwise& ew = rbm_elementwise(active_level());
  const float lambda = params.hashing_reg;
  float* const W = rbm.components;
  // Operands of the fused gradient dW += P X (one product with K = 2B):
  //   x (2B x I, row-major) = [v; pv];  p (J x 2B, hidden-major) = [pos^T | -ph^T].
  // Hidden statistics are kept hidden-major (J x B): the products W v^T (M = J) run
  // faster in BLAS than v W^T (M = B = 100). The hidden sample h is minibatch-major
  // (B x J), so the reconstruction h W needs no transposed operand (measured faster).
  std::vector<float> x(2 * B * I), p(J * 2 * B), h(B * J), ph0(lambda > 0 ? J * B : 0), t(lambda > 0 ? J * B : 0);
  std::vector<double> hidden_grad(J), visible_grad(I);
  // Second half of the weight step, on rows [j0, j1): dW -= lr wd W; W += dW. It runs fused
  // into the next minibatch's positive product (or after the last minibatch), so W is
  // read and written once per minibatch outside the products.
  const float decay = params.learning_rate * params.weight_decay;
  float* const dW = rbm.components_velocity;
  const auto update_weights = [W, dW, decay, I](std::size_t j0, std::size_t j1) {
    for (std::size_t e = j0 * I; e < j1 * I; ++e) {
      const float d = dW[e] - decay * W[e];
      dW[e] = d;
      W[e] += d;
    }
  };
  bool update_pending = false;

  for (std::size_t step = 0; step * B < n_order; ++step) {
    const std::size_t row0 = step * B, bs = std::min(B, n_order - row0), ld = 2 * bs;
    const std::uint64_t key = stream_key(seed, first_step + step);
    float* vb = x.data();           // rows [0, bs): the minibatch
    float* pv = x.data() + bs * I;  // rows [bs, 2 bs): its reconstruction
    float* pos = p.data();          // columns [0, bs) of p
    float* neg = p.data() + bs;     // columns [bs, 2 bs) of p
    for_ranges(bs, I, n_threads, [&](std::size_t r0, std::size_t r1) {
      for (std::size_t r = r0; r < r1; ++r)
        std::memcpy(vb + r * I, v + static_cast<std::size_t>(order[row0 + r]) * I, I * sizeof(float));
    });
    // Positive phase: pos = sigmoid(W v^T + b); h ~ pos. Element-wise work runs on each
    // product panel as soon as it is written (epilogue), on the same thread, in cache.
    // Hidden sample (row r, unit j) of Gibbs step g uses uniform(key, (g batch_size + r) J + j),
    // whatever the layout, the thread count or how the minibatches are split into calls.
    const float* hidden_bias = rbm.hidden_bias;
    const float* visible_bias = rbm.visible_bias;
    // A panel of a hidden product covers units [row, row + rows) x minibatch rows [col, col + cols).
    const bool hidden_row_panels = splits_rows(J, bs), visible_column_panels = !splits_rows(bs, I);
    const auto hidden_step = [&](float* probs, std::size_t gibbs, bool sample, bool negate) {
      return [=, &h, &p, &hidden_grad](std::size_t row, std::size_t rows, std::size_t col, std::size_t cols) {
        float drawn[kMaxBatchOnStack];
        for (std::size_t j = row; j < row + rows; ++j) {
          float* pj = probs + j * ld;
          ew.sigmoid_shift(pj + col, cols, hidden_bias[j]);
          if (sample) {  // drawn in chunks along the minibatch, then written to column j of h
            for (std::size_t r0 = col; r0 < col + cols; r0 += kMaxBatchOnStack) {
              const std::size_t n = std::min(kMaxBatchOnStack, col + cols - r0);
              ew.bernoulli(pj + r0, n, key, (gibbs * batch_size + r0) * J + j, J, drawn);
              for (std::size_t r = 0; r < n; ++r) h[(r0 + r) * J + j] = drawn[r];
            }
          }
          if (negate)
            for (std::size_t r = col; r < col + cols; ++r) pj[r] = -pj[r];
        }
        // hidden-bias gradient: with row panels, the rows of p = [pos | -ph] are final here
        if (negate && lambda == 0 && hidden_row_panels)
          row_sums(p.data() + row * ld, rows, ld, hidden_grad.data() + row);
      };
    };
    // The previous minibatch's weight update is applied to each row panel of W just before
    // the panel's positive product reads it (one pass less over W; see update_weights).
    const bool fuse_update = update_pending && hidden_row_panels;
    if (update_pending && !fuse_update) for_ranges(J, I, n_threads, update_weights);
    sgemm(false, true, J, bs, I, 1.0f, W, I, vb, I, 0.0f, pos, ld, n_threads,
          fuse_update ? PanelHook([&](std::size_t row, std::size_t rows, std::size_t, std::size_t) {
            update_weights(row, row + rows);
          })
                      : PanelHook(),
          hidden_step(pos, 0, true, false));
    update_pending = false;
    // Gibbs chain; reconstructions are probabilities: pv = sigmoid(h W + c) (Gaussian
    // visible units: the mean h W + c), ph = sigmoid(W pv^T + b).
    const bool gaussian = params.gaussian_visible;
    std::fill(visible_grad.begin(), visible_grad.end(), 0.0);
    for (int g = 1; g <= params.cd_k; ++g) {
      const bool last = g == params.cd_k;
      double* vgrad = visible_grad.data();
      // visible-bias gradient: sum over the minibatch, rows in order, of v - pv; in the
      // epilogue when panels are columns (each owns its columns), after the product otherwise.
      sgemm(false, false, bs, I, J, 1.0f, h.data(), J, W, I, 0.0f, pv, I, n_threads,
            [=](std::size_t row, std::size_t rows, std::size_t col, std::size_t cols) {
              for (std::size_t r = row; r < row + rows; ++r) {
                float* out = pv + r * I + col;
                if (gaussian)
                  for (std::size_t c = 0; c < cols; ++c) out[c] += visible_bias[col + c];
                else
                  ew.sigmoid_bias(out, cols, visible_bias + col);
                if (last && visible_column_panels)
                  ew.accumulate_difference(vgrad + col, vb + r * I + col, pv + r * I + col, cols);
              }
            });
      if (last && !visible_column_panels) {
        for_ranges(I, bs, n_threads, [=](std::size_t i0, std::size_t i1) {
          for (std::size_t r = 0; r < bs; ++r)
            ew.accumulate_difference(vgrad + i0, vb + r * I + i0, pv + r * I + i0, i1 - i0);
        });
      }
      sgemm(false, true, J, bs, I, 1.0f, W, I, pv, I, 0.0f, neg, ld, n_threads,
            hidden_step(neg, static_cast<std::size_t>(g), !last, last));
    }
    // p = [(1 - lambda) ph0 + lambda t | -ph] (the negation was done in the epilogue), targets
    // ranked on ph0 (hidden-major: the transpose of the minibatch-major targets, ties broken
    // the same way).
    if (lambda > 0) {
      for (std::size_t j = 0; j < J; ++j) std::memcpy(&ph0[j * bs], pos + j * ld, bs * sizeof(float));
      uniform_rank_targets(ph0.data(), J, bs, t.data(), n_threads);
    }
    if (lambda > 0) {
      for_ranges(J, bs, n_threads, [&](std::size_t j0, std::size_t j1) {
        for (std::size_t j = j0; j < j1; ++j)
          for (std::size_t r = 0; r < bs; ++r)
            pos[j * ld + r] = (1.0f - lambda) * pos[j * ld + r] + lambda * t[j * bs + r];
      });
    }
    const float scale = params.learning_rate / static_cast<float>(bs);
    // dW = momentum dW + lr/B p x here; dW -= lr wd W and W += dW follow in update_weights.
    sgemm(false, false, J, I, ld, scale, p.data(), ld, x.data(), I, params.momentum, dW, I, n_threads);
    update_pending = true;
    // Biases: row sums of p give sum(pos - ph) (already summed in the epilogue when
    // lambda = 0 and the panels are rows); the visible gradient sum(v - pv) is summed above.
    if (lambda > 0 || !hidden_row_panels) {
      for_ranges(J, ld, n_threads, [&](std::size_t j0, std::size_t j1) {
        row_sums(p.data() + j0 * ld, j1 - j0, ld, hidden_grad.data() + j0);
      });
    }
    for (std::size_t j = 0; j < J; ++j) {
      rbm.hidden_velocity[j] = params.momentum * rbm.hidden_velocity[j] +
                               params.learning_rate * static_cast<float>(hidden_grad[j] / static_cast<double>(bs));
      rbm.hidden_bias[j] += rbm.hidden_velocity[j];
    }
    for (std::size_t i = 0; i < I; ++i) {
      rbm.visible_velocity[i] = params.momentum * rbm.visible_velocity[i] +
                                params.learning_rate * static_cast<float>(visible_grad[i] / static_cast<double>(bs));
      rbm.visible_bias[i] += rbm.visible_velocity[i];
    }
  }
  if (update_pending) for_ranges(J, I, n_threads, update_weights);
}

void hidden_probabilities(const RbmArrays& rbm, const float* v, std::size_t n, float* out, int n_threads) {
  sgemm(false, true, n, rbm.n_hidden, rbm.n_visible, 1.0f, v, rbm.n_visible, rbm.components, rbm.n_visible, 0.0f, out,
        rbm.n_hidden, n_threads);
  sigmoid_rows(out, n, rbm.n_hidden, rbm.n_hidden, rbm.hidden_bias, n_threads);
}

void visible_probabilities(const RbmArrays& rbm, const float* h, std::size_t n, float* out, bool gaussian,
                           int n_threads) {
  sgemm(false, false, n, rbm.n_visible, rbm.n_hidden, 1.0f, h, rbm.n_hidden, rbm.components, rbm.n_visible, 0.0f, out,
        rbm.n_visible, n_threads);
  if (gaussian)
    add_bias_rows(out, n, rbm.n_visible, rbm.n_visible, rbm.visible_bias, n_threads);
  else
    sigmoid_rows(out, n, rbm.n_visible, rbm.n_visible, rbm.visible_bias, n_threads);
}

void mean_projection(const float* x, std::size_t n, std::size_t d, const float* input_thresholds, const float* weights,
                     std::size_t n_out, float* mean, int n_threads) {
  DH_REQUIRE(n >= 1, "X must have at least one row (mean_projection), got 0");
  std::vector<double> sums(n_out, 0.0);
  const ParallelScope workers(n_threads);
  std::vector<float> z(input_thresholds ? kEncodeBlockRows * d : 0), proj(kEncodeBlockRows * n_out);
  for (std::size_t r0 = 0; r0 < n; r0 += kEncodeBlockRows) {
    const std::size_t rows = std::min(kEncodeBlockRows, n - r0);
    const float* in = block_input(x + r0 * d, rows, d, input_thresholds, z.data(), n_threads);
    sgemm(false, true, rows, n_out, d, 1.0f, in, d, weights, d, 0.0f, proj.data(), n_out, n_threads);
    column_sums(proj.data(), rows, n_out, n_out, sums.data(), n_threads);
  }
  for (std::size_t j = 0; j < n_out; ++j) mean[j] = static_cast<float>(sums[j] / static_cast<double>(n));
}

void encode_layers(const float* x, std::size_t n, std::size_t d, const float* input_thresholds,
                   const std::vector<EncoderLayer>& layers, std::uint8_t* out, int n_threads) {
  DH_REQUIRE(!layers.empty(), "the encoder needs at least one layer");
  DH_REQUIRE(layers.front().n_in == d, "the first layer takes ", layers.front().n_in, " inputs, x has ", d);
  for (std::size_t l = 1; l < layers.size(); ++l)
    DH_REQUIRE(layers[l].n_in == layers[l - 1].n_out, "layer ", l, " takes ", layers[l].n_in, " inputs but layer ",
               l - 1, " gives ", layers[l - 1].n_out);
  const std::size_t bits = layers.back().n_out, code_bytes = bits / 8;
  DH_REQUIRE(bits % 8 == 0, "the last layer must have a multiple of 8 units, got ", bits);
  std::size_t widest = d;
  for (const auto& layer : layers) widest = std::max(widest, layer.n_out);
  std::vector<float> z(kEncodeBlockRows * widest), y(kEncodeBlockRows * widest);
  const ParallelScope workers(n_threads);
  for (std::size_t r0 = 0; r0 < n; r0 += kEncodeBlockRows) {
    const std::size_t rows = std::min(kEncodeBlockRows, n - r0);
    const float* in = block_input(x + r0 * d, rows, d, input_thresholds, z.data(), n_threads);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const EncoderLayer& layer = layers[l];
      sgemm(false, true, rows, layer.n_out, layer.n_in, 1.0f, in, layer.n_in, layer.weights, layer.n_in, 0.0f, y.data(),
            layer.n_out, n_threads);
      if (l + 1 == layers.size()) {
        pack_threshold(y.data(), rows, bits, bits, layer.offsets, out + r0 * code_bytes, n_threads);
      } else {
        threshold_rows(y.data(), rows, layer.n_out, layer.offsets, z.data(), n_threads);
        in = z.data();
      }
    }
  }
}

}  // namespace deephash
