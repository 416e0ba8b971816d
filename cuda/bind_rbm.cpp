// bind_rbm.cpp: the GPU RBM kernels of _cuda, with the argument checks of _core's
// (rbm_checks.hpp). Host arrays in and out; the GIL is released while the GPU works.
#include <pybind11/stl.h>

#include <limits>

#include "array_checks.hpp"
#include "deephash_cuda/cublas.hpp"
#include "deephash_cuda/rbm.hpp"
#include "rbm_checks.hpp"

namespace deephash::bindings {

void bind_rbm_cuda(py::module_& m) {
  m.def("load_cublas", [](const std::string& path) { cuda::load_cublas(path); }, py::arg("path"));
  m.def("cublas_library", [] { return cuda::cublas_library(); });

  def_rbm_cd_train<py::object>(
      m,
      [](py::array& components, py::array& hidden_bias, py::array& visible_bias, py::array& components_velocity,
         py::array& hidden_velocity, py::array& visible_velocity, const py::array& v, const py::array& order,
         const CdTrainScalars& scalars, const py::object& device_arg) {
        CdTrainCall c = cd_train_call(components, hidden_bias, visible_bias, components_velocity, hidden_velocity,
                                      visible_velocity, v, order, scalars);
        const auto device = static_cast<int>(int_arg(device_arg, "device", 0, std::numeric_limits<int>::max()));
        py::gil_scoped_release release;
        cuda::cd_train(c.rbm, c.v, c.n_rows, c.order, c.n_order, c.batch_size, c.params, c.seed, c.first_step, device);
      },
      "CD-k training on GPU `device`, in place on the eight (host) arrays; as _core.rbm_cd_train.", py::arg("device"));

  m.def(
      "encode_layers",
      [](const py::array& x, const py::object& input_thresholds, const std::vector<py::array>& weights,
         const std::vector<py::array>& offsets, const py::object& device_arg) {
        EncodeCall c = encode_call(x, input_thresholds, weights, offsets);
        const auto device = static_cast<int>(int_arg(device_arg, "device", 0, std::numeric_limits<int>::max()));
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
