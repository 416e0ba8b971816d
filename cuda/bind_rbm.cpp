// bind_rbm.cpp: the GPU RBM kernels of _cuda, with the argument checks of _core's
// (rbm_checks.hpp). Host arrays in and out; the GIL is released while the GPU works.
#include <pybind11/stl.h>

#include "array_checks.hpp"
#include "deephash_cuda/cublas.hpp"
#include "deephash_cuda/rbm.hpp"
#include "rbm_checks.hpp"

namespace deephash::bindings {

void bind_rbm_cuda(py::module_& m) {
  m.def("load_cublas", [](const std::string& path) { cuda::load_cublas(path); }, py::arg("path"));
  m.def("cublas_library", [] { return cuda::cublas_library(); });

  m.def(
      "rbm_cd_train",
      [](py::array components, py::array hidden_bias, py::array visible_bias, py::array components_velocity,
         py::array hidden_velocity, py::array visible_velocity, const py::array& v, const py::array& order,
         std::size_t batch_size, float learning_rate, float momentum, float weight_decay, float hashing_reg, int cd_k,
         std::uint64_t seed, std::uint64_t first_step, int device) {
        CdTrainCall c = cd_train_call(components, hidden_bias, visible_bias, components_velocity, hidden_velocity,
                                      visible_velocity, v, order, learning_rate, momentum, weight_decay,
                                      hashing_reg, cd_k);
        py::gil_scoped_release release;
        cuda::cd_train(c.rbm, c.v, c.n_rows, c.order, c.n_order, batch_size, c.params, seed, first_step, device);
      },
      py::arg("components"), py::arg("hidden_bias"), py::arg("visible_bias"), py::arg("components_velocity"),
      py::arg("hidden_velocity"), py::arg("visible_velocity"), py::arg("V"), py::arg("order"), py::arg("batch_size"),
      py::arg("learning_rate"), py::arg("momentum"), py::arg("weight_decay"), py::arg("hashing_reg"), py::arg("cd_k"),
      py::arg("seed"), py::arg("first_step"), py::arg("device"));

  m.def(
      "encode_layers",
      [](const py::array& x, const py::object& input_thresholds, const std::vector<py::array>& weights,
         const std::vector<py::array>& offsets, int device) {
        EncodeCall c = encode_call(x, input_thresholds, weights, offsets);
        std::uint8_t* out = c.codes.mutable_data();
        {
          py::gil_scoped_release release;
          cuda::encode_layers(c.x, c.n, c.d, c.thresholds, c.layers, out, device);
        }
        return c.codes;
      },
      py::arg("X"), py::arg("input_thresholds"), py::arg("weights"), py::arg("offsets"), py::arg("device"));
}

}  // namespace deephash::bindings
