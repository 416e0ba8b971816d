// rbm_checks.hpp: NumPy arrays -> RBM and encoder views for the bindings of _core and
// _cuda (which share them, so both check the same way).
#pragma once
#include <pybind11/stl.h>

#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "array_checks.hpp"
#include "deephash/rbm.hpp"

namespace deephash::bindings {

inline float* mutable_f32(py::array& a, const char* name, std::size_t rows, std::size_t cols) {
  require_float32(a, name, cols == 0 ? 1 : 2);
  const bool ok = cols == 0
                      ? static_cast<std::size_t>(a.shape(0)) == rows
                      : static_cast<std::size_t>(a.shape(0)) == rows && static_cast<std::size_t>(a.shape(1)) == cols;
  if (!ok)
    throw py::value_error(std::string(name) + " has shape " + shape_of(a) + ", expected (" + std::to_string(rows) +
                          (cols == 0 ? ",)" : ", " + std::to_string(cols) + ")"));
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writeable");
  return static_cast<float*>(a.mutable_data());
}

inline const float* f32_2d(const py::array& a, const char* name, std::size_t cols) {
  require_float32(a, name, 2);
  if (static_cast<std::size_t>(a.shape(1)) != cols)
    throw py::value_error(std::string(name) + " has " + std::to_string(a.shape(1)) + " columns, expected " +
                          std::to_string(cols));
  return static_cast<const float*>(a.data());
}

inline const float* optional_f32(const py::object& o, const char* name, std::size_t n) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  require_float32(a, name, 1);
  if (static_cast<std::size_t>(a.shape(0)) != n)
    throw py::value_error(std::string(name) + " must have " + std::to_string(n) + " values");
  return static_cast<const float*>(a.data());
}

inline RbmArrays rbm_arrays(py::array& components, py::array& hidden_bias, py::array& visible_bias,
                            py::array& components_velocity, py::array& hidden_velocity, py::array& visible_velocity) {
  require_float32(components, "components", 2);
  const auto J = static_cast<std::size_t>(components.shape(0)), I = static_cast<std::size_t>(components.shape(1));
  return RbmArrays{I,
                   J,
                   mutable_f32(components, "components", J, I),
                   mutable_f32(hidden_bias, "hidden_bias", J, 0),
                   mutable_f32(visible_bias, "visible_bias", I, 0),
                   mutable_f32(components_velocity, "components_velocity", J, I),
                   mutable_f32(hidden_velocity, "hidden_velocity", J, 0),
                   mutable_f32(visible_velocity, "visible_velocity", I, 0)};
}

/// The training order: a 1-D C-contiguous int64 array.
inline void require_order(const py::array& order) {
  if (!py::isinstance<py::array_t<std::int64_t>>(order) || order.ndim() != 1 || !(order.flags() & py::array::c_style) ||
      order.dtype().kind() != 'i' || order.itemsize() != 8)
    throw py::type_error("order must be a 1-D C-contiguous int64 array");
}

/// Encoder layers from lists of float32 weights (n_out x n_in) and offsets (n_out); the last
/// layer must have a multiple of 8 units.
inline std::vector<EncoderLayer> encoder_layers(const std::vector<py::array>& weights,
                                                const std::vector<py::array>& offsets) {
  if (weights.empty() || weights.size() != offsets.size())
    throw py::value_error("weights and offsets must be non-empty lists of the same length");
  std::vector<EncoderLayer> layers;
  for (std::size_t l = 0; l < weights.size(); ++l) {
    require_float32(weights[l], "weights", 2);
    const auto n_out = static_cast<std::size_t>(weights[l].shape(0)),
               n_in = static_cast<std::size_t>(weights[l].shape(1));
    require_float32(offsets[l], "offsets", 1);
    if (static_cast<std::size_t>(offsets[l].shape(0)) != n_out)
      throw py::value_error("offsets of layer " + std::to_string(l) + " must have " + std::to_string(n_out) +
                            " values");
    layers.push_back(
        {static_cast<const float*>(weights[l].data()), static_cast<const float*>(offsets[l].data()), n_in, n_out});
  }
  const std::size_t bits = layers.back().n_out;
  if (bits % 8 != 0)
    throw py::value_error("the last layer must have a multiple of 8 units, got " + std::to_string(bits));
  return layers;
}

/// The checked arguments of one CD-k training call (CPU or GPU).
struct CdTrainCall {
  RbmArrays rbm;
  const float* v;
  std::size_t n_rows;
  const std::int64_t* order;
  std::size_t n_order;
  std::size_t batch_size;
  RbmParams params;
  std::uint64_t seed, first_step;
};

/// The scalar (keyword-only) arguments of rbm_cd_train, as Python objects: each is
/// converted by name, so a wrong type or a value that does not fit names the parameter.
struct CdTrainScalars {
  py::object batch_size, learning_rate, momentum, weight_decay, hashing_reg, cd_k, seed, first_step, gaussian_visible;
};

inline CdTrainCall cd_train_call(py::array& components, py::array& hidden_bias, py::array& visible_bias,
                                 py::array& components_velocity, py::array& hidden_velocity,
                                 py::array& visible_velocity, const py::array& v, const py::array& order,
                                 const CdTrainScalars& s) {
  RbmArrays rbm =
      rbm_arrays(components, hidden_bias, visible_bias, components_velocity, hidden_velocity, visible_velocity);
  const float* vp = f32_2d(v, "V", rbm.n_visible);
  require_order(order);
  const RbmParams params{float_arg(s.learning_rate, "learning_rate"),
                         float_arg(s.momentum, "momentum"),
                         float_arg(s.weight_decay, "weight_decay"),
                         float_arg(s.hashing_reg, "hashing_reg"),
                         static_cast<int>(int_arg(s.cd_k, "cd_k", 1, std::numeric_limits<int>::max())),
                         bool_arg(s.gaussian_visible, "gaussian_visible")};
  const auto batch_size = static_cast<std::size_t>(int_arg(s.batch_size, "batch_size", 1));
  return {rbm,
          vp,
          static_cast<std::size_t>(v.shape(0)),
          static_cast<const std::int64_t*>(order.data()),
          static_cast<std::size_t>(order.shape(0)),
          batch_size,
          params,
          uint64_arg(s.seed, "seed"),
          uint64_arg(s.first_step, "first_step")};
}

/**
 * Defines rbm_cd_train(components, hidden_bias, visible_bias, components_velocity,
 * hidden_velocity, visible_velocity, V, order, *, batch_size, learning_rate, momentum,
 * weight_decay, hashing_reg, cd_k, seed, first_step, gaussian_visible=False, <extra>) in both modules, so the
 * argument list is written once. `fn` takes the eight arrays, a CdTrainScalars and then
 * the extra arguments, whose C++ types are ExtraArgs (given explicitly) and whose
 * py::arg descriptions are `extra`.
 */
template <class... ExtraArgs, class Fn, class... Extra>
void def_rbm_cd_train(py::module_& m, Fn fn, const char* doc, const Extra&... extra) {
  m.def(
      "rbm_cd_train",
      [fn](py::array components, py::array hidden_bias, py::array visible_bias, py::array components_velocity,
           py::array hidden_velocity, py::array visible_velocity, const py::array& v, const py::array& order,
           py::object batch_size, py::object learning_rate, py::object momentum, py::object weight_decay,
           py::object hashing_reg, py::object cd_k, py::object seed, py::object first_step, py::object gaussian_visible,
           ExtraArgs... more) {
        const CdTrainScalars scalars{std::move(batch_size),   std::move(learning_rate), std::move(momentum),
                                     std::move(weight_decay), std::move(hashing_reg),   std::move(cd_k),
                                     std::move(seed),         std::move(first_step),    std::move(gaussian_visible)};
        fn(components, hidden_bias, visible_bias, components_velocity, hidden_velocity, visible_velocity, v, order,
           scalars, more...);
      },
      py::arg("components"), py::arg("hidden_bias"), py::arg("visible_bias"), py::arg("components_velocity"),
      py::arg("hidden_velocity"), py::arg("visible_velocity"), py::arg("V"), py::arg("order"), py::kw_only(),
      py::arg("batch_size"), py::arg("learning_rate"), py::arg("momentum"), py::arg("weight_decay"),
      py::arg("hashing_reg"), py::arg("cd_k"), py::arg("seed"), py::arg("first_step"),
      py::arg("gaussian_visible") = false, extra..., doc);
}

/// The checked arguments of one encoder call, with its (uninitialised) output codes.
struct EncodeCall {
  const float* x;
  std::size_t n, d;
  const float* thresholds;
  std::vector<EncoderLayer> layers;
  py::array_t<std::uint8_t> codes;
};

inline EncodeCall encode_call(const py::array& x, const py::object& input_thresholds,
                              const std::vector<py::array>& weights, const std::vector<py::array>& offsets) {
  require_float32(x, "X", 2);
  const auto n = static_cast<std::size_t>(x.shape(0)), d = static_cast<std::size_t>(x.shape(1));
  const float* thresholds = optional_f32(input_thresholds, "input_thresholds", d);
  std::vector<EncoderLayer> layers = encoder_layers(weights, offsets);
  py::array_t<std::uint8_t> codes({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(layers.back().n_out / 8)});
  return {static_cast<const float*>(x.data()), n, d, thresholds, std::move(layers), std::move(codes)};
}

}  // namespace deephash::bindings
