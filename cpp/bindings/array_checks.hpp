// array_checks.hpp: NumPy array -> core view conversions for the bindings.
// The core must be safe when called directly, so the bindings re-check what the Python
// layer already validated: dtype (TypeError), ndim, shape and layout (ValueError).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "deephash/knn.hpp"

namespace deephash::bindings {

namespace py = pybind11;

inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

/// A uint8 (n, code_bytes) array whose rows are contiguous, with a non-negative row stride.
inline CodeView require_codes(const py::array& a, const char* name) {
  if (!py::isinstance<py::array_t<std::uint8_t>>(a) || a.dtype().kind() != 'u' || a.itemsize() != 1)
    throw py::type_error(std::string(name) + " must be a uint8 array, got dtype " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 2)
    throw py::value_error(std::string(name) + " must be 2-D (n, code_bytes), got shape " + shape_of(a));
  if (a.shape(1) < 1)
    throw py::value_error(std::string(name) + " must have at least one byte per code, got shape " + shape_of(a));
  // An empty matrix has no layout to check (NumPy may give it zero strides).
  if (a.shape(0) > 0 && ((a.shape(0) > 1 && a.strides(0) < a.shape(1)) || (a.shape(1) > 1 && a.strides(1) != 1)))
    throw py::value_error(std::string(name) +
                          " rows must be contiguous; pass numpy.ascontiguousarray(" + name + ")");
  const auto n = static_cast<std::size_t>(a.shape(0));
  const auto width = static_cast<std::size_t>(a.shape(1));
  const std::size_t stride = n > 1 ? static_cast<std::size_t>(a.strides(0)) : width;
  static const std::uint8_t kNoRows = 0;
  if (n == 0) return CodeView{&kNoRows, 0, width, width};
  return CodeView{static_cast<const std::uint8_t*>(a.data()), n, width, stride};
}

/// Queries and database must have the same code width.
inline void require_same_width(const CodeView& queries, const CodeView& codes) {
  if (queries.code_bytes != codes.code_bytes)
    throw py::value_error("queries have " + std::to_string(queries.code_bytes) +
                          " bytes per code but codes have " + std::to_string(codes.code_bytes));
}

/// A C-contiguous float32 array of the given ndim.
inline void require_float32(const py::array& a, const char* name, py::ssize_t ndim) {
  if (!py::isinstance<py::array_t<float>>(a) || a.dtype().kind() != 'f' || a.itemsize() != 4)
    throw py::type_error(std::string(name) + " must be a float32 array, got dtype " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + shape_of(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
}

/// Hands a vector to NumPy without copying: the array owns it through a capsule.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& values) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(owned->size())}, {static_cast<py::ssize_t>(sizeof(T))},
                        owned->data(), owner);
}

}  // namespace deephash::bindings
