// bind_rbm.cpp: BLAS loading and the RBM kernels (in place on float32 arrays, GIL released).
#include <pybind11/stl.h>

#include "array_checks.hpp"
#include "deephash/blas.hpp"
#include "deephash/rbm.hpp"
#include "deephash/threads.hpp"
#include "rbm_checks.hpp"

namespace deephash::bindings {
namespace {

// P(h | v) (hidden = true, input V, bias over hidden units) or P(v | h) (input H).
py::array_t<float> layer_probabilities(const py::array& components, const py::object& bias_obj, const py::array& input,
                                       bool hidden, bool gaussian) {
  require_float32(components, "components", 2);
  const auto J = static_cast<std::size_t>(components.shape(0)), I = static_cast<std::size_t>(components.shape(1));
  const std::size_t n_in = hidden ? I : J, n_out = hidden ? J : I;
  const float* bias = optional_f32(bias_obj, hidden ? "hidden_bias" : "visible_bias", n_out);
  const float* in = f32_2d(input, hidden ? "V" : "H", n_in);
  const auto n = static_cast<std::size_t>(input.shape(0));
  auto* weights = const_cast<float*>(static_cast<const float*>(components.data()));  // read only
  RbmArrays rbm{I,
                J,
                weights,
                hidden ? const_cast<float*>(bias) : nullptr,
                hidden ? nullptr : const_cast<float*>(bias),
                nullptr,
                nullptr,
                nullptr};
  py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(n_out)});
  float* outp = out.mutable_data();
  const int threads = num_threads();
  py::gil_scoped_release release;
  if (hidden)
    hidden_probabilities(rbm, in, n, outp, threads);
  else
    visible_probabilities(rbm, in, n, outp, gaussian, threads);
  return out;
}

}  // namespace

void bind_rbm(py::module_& m) {
  m.def("load_blas", [](const std::string& path) { load_blas(path); }, py::arg("path"));
  m.def("blas_library", [] { return blas_library(); });
  def_rbm_cd_train(
      m,
      [](py::array& components, py::array& hidden_bias, py::array& visible_bias, py::array& components_velocity,
         py::array& hidden_velocity, py::array& visible_velocity, const py::array& v, const py::array& order,
         const CdTrainScalars& scalars) {
        CdTrainCall c = cd_train_call(components, hidden_bias, visible_bias, components_velocity, hidden_velocity,
                                      visible_velocity, v, order, scalars);
        const int threads = num_threads();
        py::gil_scoped_release release;
        cd_train(c.rbm, c.v, c.n_rows, c.order, c.n_order, c.batch_size, c.params, c.seed, c.first_step, threads);
      },
      "CD-k training over the minibatches of `order`, in place on the eight arrays (see rbm.hpp).");

  m.def(
      "rbm_hidden_probabilities",
      [](const py::array& components, const py::object& hidden_bias, const py::array& v) {
        return layer_probabilities(components, hidden_bias, v, true, false);
      },
      py::arg("components"), py::arg("hidden_bias"), py::arg("V"));
  m.def(
      "rbm_visible_probabilities",
      [](const py::array& components, const py::object& visible_bias, const py::array& h, const py::object& gaussian) {
        return layer_probabilities(components, visible_bias, h, false, bool_arg(gaussian, "gaussian"));
      },
      py::arg("components"), py::arg("visible_bias"), py::arg("H"), py::kw_only(), py::arg("gaussian") = false);

  m.def(
      "mean_projection",
      [](const py::array& x, const py::object& input_thresholds, const py::array& weights) {
        require_float32(x, "X", 2);
        require_float32(weights, "weights", 2);
        const auto n = static_cast<std::size_t>(x.shape(0)), d = static_cast<std::size_t>(x.shape(1));
        if (static_cast<std::size_t>(weights.shape(1)) != d)
          throw py::value_error("weights have " + std::to_string(weights.shape(1)) + " columns, X has " +
                                std::to_string(d));
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
