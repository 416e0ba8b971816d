// bindings.cpp: deephash_ext._cuda, the optional GPU module. Checks, conversions and GIL
// handling only; the kernels live in the .cu files. Importing it never touches the GPU:
// device_count() and unavailable_reason() ask the driver when called.
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "array_checks.hpp"
#include "deephash_cuda/knn.hpp"

#ifndef DEEPHASH_CUDA_ARCHITECTURES
#define DEEPHASH_CUDA_ARCHITECTURES "unknown"
#endif

namespace py = pybind11;
using deephash::CodeView;
using deephash::dist_t;
using deephash::idx_t;
using deephash::bindings::int_arg;
using deephash::bindings::require_codes;
using deephash::bindings::saturated_int_arg;
using deephash::bindings::to_numpy;
using deephash::cuda::DeviceCodes;

namespace {

// A visible device number: RuntimeError when CUDA cannot be used, else TypeError/ValueError.
int checked_device(const py::object& device) {
  std::string reason;
  const int count = deephash::cuda::device_count(&reason);
  if (count == 0) throw std::runtime_error("CUDA is not available: " + reason);
  return static_cast<int>(int_arg(device, "device", 0, count - 1));
}

std::unique_ptr<DeviceCodes> make_device_codes(const py::array& codes, const py::object& device_arg) {
  const CodeView view = require_codes(codes, "codes");  // rows and width: checked by DeviceCodes
  const int device = checked_device(device_arg);
  py::gil_scoped_release release;
  return std::make_unique<DeviceCodes>(view, device);
}

// k, the radius and the code widths are checked by DeviceCodes (knn.hpp), as on the CPU.
py::tuple search(const DeviceCodes& self, const py::array& queries, const py::object& k) {
  const CodeView q = require_codes(queries, "queries");
  const idx_t kk = int_arg(k, "k");
  self.check_search_args(q, kk);  // before the outputs are allocated
  py::array_t<dist_t> distances({static_cast<py::ssize_t>(q.n), static_cast<py::ssize_t>(kk)});
  py::array_t<idx_t> indices({static_cast<py::ssize_t>(q.n), static_cast<py::ssize_t>(kk)});
  dist_t* dp = distances.mutable_data();
  idx_t* ip = indices.mutable_data();
  {
    py::gil_scoped_release release;
    self.search(q, kk, dp, ip);
  }
  return py::make_tuple(distances, indices);
}

py::tuple range_search(const DeviceCodes& self, const py::array& queries, const py::object& max_distance) {
  const CodeView q = require_codes(queries, "queries");
  const std::int64_t radius = saturated_int_arg(max_distance, "max_distance");
  deephash::RangeResult result;
  {
    py::gil_scoped_release release;
    result = self.range_search(q, radius);
  }
  return py::make_tuple(to_numpy(std::move(result.lims)), to_numpy(std::move(result.distances)),
                        to_numpy(std::move(result.indices)));
}

}  // namespace

namespace deephash::bindings {
void bind_rbm_cuda(py::module_& m);
}

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "deephash_ext CUDA kernels (private, optional; use the deephash_ext package)";
  m.attr("architectures") = DEEPHASH_CUDA_ARCHITECTURES;
  // The limits of the GPU kernels, so that Python never copies them.
  m.attr("max_code_bytes") = deephash::cuda::kMaxCodeBytes;
  m.attr("max_codes") = deephash::cuda::kMaxCodes;
  m.def("device_count", [] { return deephash::cuda::device_count(nullptr); });
  m.def("unavailable_reason", [] {
    std::string reason;
    return deephash::cuda::device_count(&reason) > 0 ? std::string() : reason;
  });
  m.def(
      "device_name", [](const py::object& device) { return deephash::cuda::device_name(checked_device(device)); },
      py::arg("device"));

  py::class_<DeviceCodes>(m, "DeviceCodes")
      .def(py::init(&make_device_codes), py::arg("codes"), py::arg("device") = 0)
      .def("search", &search, py::arg("queries"), py::arg("k"))
      .def("range_search", &range_search, py::arg("queries"), py::arg("max_distance"))
      .def_property_readonly("n", &DeviceCodes::size)
      .def_property_readonly("code_bytes", &DeviceCodes::code_bytes)
      .def_property_readonly("device", &DeviceCodes::device)
      .def_property_readonly("nbytes", &DeviceCodes::nbytes);

  deephash::bindings::bind_rbm_cuda(m);
}
