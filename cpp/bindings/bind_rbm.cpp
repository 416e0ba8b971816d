// bind_rbm.cpp: BLAS loading and the RBM kernels (in place on float32 arrays, GIL released).
#include <pybind11/stl.h>

#include "array_checks.hpp"
#include "rbm_checks.hpp"
#include "deephash/blas.hpp"
#include "deephash/rbm.hpp"
#include "deephash/rng.hpp"
#include "deephash/threads.hpp"

namespace deephash::bindings {
namespace {

// P(h | v) (hidden = true, input V, bias over hidden units) or P(v | h) (input H).
py::array_t<float> layer_probabilities(const py::array& components, const py::object& bias_obj,
                                       const py::array& input, bool hidden) {
  require_float32(components, "components", 2);
  const auto J = static_cast<std::size_t>(components.shape(0)), I = static_cast<std::size_t>(components.shape(1));
  const std::size_t n_in = hidden ? I : J, n_out = hidden ? J : I;
  const float* bias = optional_f32(bias_obj, hidden ? "hidden_bias" : "visible_bias", n_out);
  const float* in = f32_2d(input, hidden ? "V" : "H", n_in);
  const auto n = static_cast<std::size_t>(input.shape(0));
  auto* weights = const_cast<float*>(static_cast<const float*>(components.data()));  // read only
  RbmArrays rbm{I, J, weights, hidden ? const_cast<float*>(bias) : nullptr,
                hidden ? nullptr : const_cast<float*>(bias), nullptr, nullptr, nullptr};
  py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(n_out)});
  float* outp = out.mutable_data();
  const int threads = num_threads();
  py::gil_scoped_release release;
  if (hidden)
    hidden_probabilities(rbm, in, n, outp, threads);
  else
    visible_probabilities(rbm, in, n, outp, threads);
  return out;
}

}  // namespace

void bind_rbm(py::module_& m) {
  m.def("load_blas", [](const std::string& path) { load_blas(path); }, py::arg("path"));
  m.def("blas_library", [] { return blas_library(); });
  m.def(
      "sgemm_nt",
      [](const py::array& a, const py::array& b) {
        require_float32(a, "a", 2);
        require_float32(b, "b", 2);
        const auto m_rows = static_cast<std::size_t>(a.shape(0)), k = static_cast<std::size_t>(a.shape(1));
        const auto n = static_cast<std::size_t>(b.shape(0));
        if (static_cast<std::size_t>(b.shape(1)) != k) throw py::value_error("a and b must have the same number of columns");
        py::array_t<float> out({static_cast<py::ssize_t>(m_rows), static_cast<py::ssize_t>(n)});
        const auto* ap = static_cast<const float*>(a.data());
        const auto* bp = static_cast<const float*>(b.data());
        float* outp = out.mutable_data();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          sgemm(false, true, m_rows, n, k, 1.0f, ap, k, bp, k, 0.0f, outp, n, threads);
        }
        return out;
      },
      py::arg("a"), py::arg("b"), "a @ b.T through the core's panel-parallel sgemm (benchmarks).");

  m.def(
      "rbm_cd_train",
      [](py::array components, py::array hidden_bias, py::array visible_bias, py::array components_velocity,
         py::array hidden_velocity, py::array visible_velocity, const py::array& v, const py::array& order,
         std::size_t batch_size, float learning_rate, float momentum, float weight_decay, float hashing_reg,
         int cd_k, std::uint64_t seed, std::uint64_t first_step) {
        CdTrainCall c = cd_train_call(components, hidden_bias, visible_bias, components_velocity, hidden_velocity,
                                      visible_velocity, v, order, learning_rate, momentum, weight_decay,
                                      hashing_reg, cd_k);
        const int threads = num_threads();
        py::gil_scoped_release release;
        cd_train(c.rbm, c.v, c.n_rows, c.order, c.n_order, batch_size, c.params, seed, first_step, threads);
      },
      py::arg("components"), py::arg("hidden_bias"), py::arg("visible_bias"), py::arg("components_velocity"),
      py::arg("hidden_velocity"), py::arg("visible_velocity"), py::arg("V"), py::arg("order"),
      py::arg("batch_size"), py::arg("learning_rate"), py::arg("momentum"), py::arg("weight_decay"),
      py::arg("hashing_reg"), py::arg("cd_k"), py::arg("seed"), py::arg("first_step"));

  m.def(
      "rbm_hidden_probabilities",
      [](const py::array& components, const py::object& hidden_bias, const py::array& v) {
        return layer_probabilities(components, hidden_bias, v, true);
      },
      py::arg("components"), py::arg("hidden_bias"), py::arg("V"));
  m.def(
      "rbm_visible_probabilities",
      [](const py::array& components, const py::object& visible_bias, const py::array& h) {
        return layer_probabilities(components, visible_bias, h, false);
      },
      py::arg("components"), py::arg("visible_bias"), py::arg("H"));

  m.def(
      "uniform_rank_targets",
      [](const py::array& p) {
        require_float32(p, "P", 2);
        const auto n = static_cast<std::size_t>(p.shape(0)), m_cols = static_cast<std::size_t>(p.shape(1));
        py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(m_cols)});
        const auto* pp = static_cast<const float*>(p.data());
        float* outp = out.mutable_data();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          uniform_rank_targets(pp, n, m_cols, outp, threads);
        }
        return out;
      },
      py::arg("P"));

  m.def(
      "rbm_uniforms",
      [](std::uint64_t seed, std::uint64_t step, std::size_t n) {
        py::array_t<float> out(static_cast<py::ssize_t>(n));
        float* outp = out.mutable_data();
        const std::uint64_t key = stream_key(seed, step);
        for (std::size_t i = 0; i < n; ++i) outp[i] = uniform(key, i);
        return out;
      },
      py::arg("seed"), py::arg("step"), py::arg("n"), "The random numbers of one training step (for references).");

  m.def(
      "mean_projection",
      [](const py::array& x, const py::object& input_thresholds, const py::array& weights) {
        require_float32(x, "X", 2);
        require_float32(weights, "weights", 2);
        const auto n = static_cast<std::size_t>(x.shape(0)), d = static_cast<std::size_t>(x.shape(1));
        if (static_cast<std::size_t>(weights.shape(1)) != d)
          throw py::value_error("weights have " + std::to_string(weights.shape(1)) + " columns, X has " + std::to_string(d));
        if (n == 0) throw py::value_error("X has no rows");
        const float* thr = optional_f32(input_thresholds, "input_thresholds", d);
        const auto n_out = static_cast<std::size_t>(weights.shape(0));
        py::array_t<float> out(static_cast<py::ssize_t>(n_out));
        const auto* xp = static_cast<const float*>(x.data());
        const auto* wp = static_cast<const float*>(weights.data());
        float* outp = out.mutable_data();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          mean_projection(xp, n, d, thr, wp, n_out, outp, threads);
        }
        return out;
      },
      py::arg("X"), py::arg("input_thresholds"), py::arg("weights"));

  m.def(
      "encode_layers",
      [](const py::array& x, const py::object& input_thresholds, const std::vector<py::array>& weights,
         const std::vector<py::array>& offsets) {
        EncodeCall c = encode_call(x, input_thresholds, weights, offsets);
        std::uint8_t* out = c.codes.mutable_data();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          encode_layers(c.x, c.n, c.d, c.thresholds, c.layers, out, threads);
        }
        return c.codes;
      },
      py::arg("X"), py::arg("input_thresholds"), py::arg("weights"), py::arg("offsets"));
}

}  // namespace deephash::bindings
