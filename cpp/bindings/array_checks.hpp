// array_checks.hpp: Python argument -> core conversions, shared by the bindings of _core
// and _cuda, so both check the same way with the same messages.
// What is checked where: here, what C++ types cannot express on their own (dtype ->
// TypeError; ndim, layout, and whether a Python integer fits the C++ type -> ValueError);
// the meaning of a value (k range, radius, code widths) is checked by the core's public
// entry points (DH_REQUIRE -> std::invalid_argument -> ValueError).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
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
    throw py::type_error(std::string(name) + " must be a uint8 array, got dtype " + std::string(py::str(a.dtype())));
  if (a.ndim() != 2)
    throw py::value_error(std::string(name) + " must be 2-D (n, code_bytes), got shape " + shape_of(a));
  if (a.shape(1) < 1)
    throw py::value_error(std::string(name) + " must have at least one byte per code, got shape " + shape_of(a));
  // An empty matrix has no layout to check (NumPy may give it zero strides).
  if (a.shape(0) > 0 && ((a.shape(0) > 1 && a.strides(0) < a.shape(1)) || (a.shape(1) > 1 && a.strides(1) != 1)))
    throw py::value_error(std::string(name) + " rows must be contiguous; pass numpy.ascontiguousarray(" + name + ")");
  const auto n = static_cast<std::size_t>(a.shape(0));
  const auto width = static_cast<std::size_t>(a.shape(1));
  const std::size_t stride = n > 1 ? static_cast<std::size_t>(a.strides(0)) : width;
  static const std::uint8_t kNoRows = 0;
  if (n == 0) return CodeView{&kNoRows, 0, width, width};
  return CodeView{static_cast<const std::uint8_t*>(a.data()), n, width, stride};
}

/// `value` as a Python int through __index__ (int or NumPy integer; bool is refused), or a
/// TypeError naming `name`.
inline py::int_ require_integer(const py::handle& value, const char* name) {
  if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr()))
    throw py::type_error(std::string(name) + " must be an integer, got " + Py_TYPE(value.ptr())->tp_name + " " +
                         std::string(py::repr(value)));
  return py::reinterpret_steal<py::int_>(PyNumber_Index(value.ptr()));
}

/// An integer argument in [lo, hi] as int64: TypeError for a non-integer, ValueError naming
/// `name`, the interval and the value for anything outside it (however large).
inline std::int64_t int_arg(const py::handle& value, const char* name,
                            std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                            std::int64_t hi = std::numeric_limits<std::int64_t>::max()) {
  const py::int_ n = require_integer(value, name);
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(n.ptr(), &overflow);
  if (overflow != 0 || v < lo || v > hi)
    throw py::value_error(std::string(name) + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                          "], got " + std::string(py::str(n)));
  return static_cast<std::int64_t>(v);
}

/// An integer argument as int64, saturated: beyond the int64 range it reads as the nearest
/// end (for bounds such as a radius, where every larger value means the same).
inline std::int64_t saturated_int_arg(const py::handle& value, const char* name) {
  const py::int_ n = require_integer(value, name);
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(n.ptr(), &overflow);
  if (overflow != 0)
    return overflow > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(v);
}

/// An integer argument in [0, 2**64 - 1] (seeds, step counters) as uint64.
inline std::uint64_t uint64_arg(const py::handle& value, const char* name) {
  const py::int_ n = require_integer(value, name);
  const unsigned long long v = PyLong_AsUnsignedLongLong(n.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string(name) + " must be in [0, 2**64 - 1], got " + std::string(py::str(n)));
  }
  return static_cast<std::uint64_t>(v);
}

/// A boolean argument (Python or NumPy bool) as bool, or a TypeError naming it.
inline bool bool_arg(const py::handle& value, const char* name) {
  if (PyBool_Check(value.ptr())) return value.ptr() == Py_True;
  if (py::isinstance(value, py::module_::import("numpy").attr("bool_"))) return py::cast<bool>(value);
  throw py::type_error(std::string(name) + " must be a bool, got " + Py_TYPE(value.ptr())->tp_name);
}

/// A real-number argument (Python float or int, NumPy real) as float, or a TypeError naming it.
inline float float_arg(const py::handle& value, const char* name) {
  if (PyBool_Check(value.ptr()) || !(PyFloat_Check(value.ptr()) || PyIndex_Check(value.ptr()) ||
                                     py::isinstance(value, py::module_::import("numpy").attr("floating"))))
    throw py::type_error(std::string(name) + " must be a real number, got " + Py_TYPE(value.ptr())->tp_name + " " +
                         std::string(py::repr(value)));
  const double v = PyFloat_AsDouble(value.ptr());
  if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return static_cast<float>(v);
}

/// A C-contiguous float32 array of the given ndim.
inline void require_float32(const py::array& a, const char* name, py::ssize_t ndim) {
  if (!py::isinstance<py::array_t<float>>(a) || a.dtype().kind() != 'f' || a.itemsize() != 4)
    throw py::type_error(std::string(name) + " must be a float32 array, got dtype " + std::string(py::str(a.dtype())));
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + shape_of(a));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
}

/// The arrays a k-NN search fills: distances (int32) and indices (int64), each (nq, k).
struct KnnOutputs {
  py::array_t<dist_t> distances;
  py::array_t<idx_t> indices;
  KnnOutputs(std::size_t nq, idx_t k)
      : distances({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)}),
        indices({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)}) {}
  py::tuple as_tuple() const { return py::make_tuple(distances, indices); }
};

/// An optional removed-row bitmap for a database of n rows (knn.hpp RemovedRows): None, or
/// a C-contiguous uint64 array of words_for_rows(n) words.
inline RemovedRows require_removed(const py::object& removed, std::size_t n) {
  if (removed.is_none()) return nullptr;
  const auto a = py::reinterpret_borrow<py::array>(removed);
  if (!py::isinstance<py::array>(removed) || !py::isinstance<py::array_t<std::uint64_t>>(a) ||
      a.dtype().kind() != 'u' || a.itemsize() != 8)
    throw py::type_error("removed must be None or a uint64 array");
  if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != words_for_rows(n) || !(a.flags() & py::array::c_style))
    throw py::value_error("removed must be a contiguous 1-D array of " + std::to_string(words_for_rows(n)) +
                          " words for " + std::to_string(n) + " rows, got shape " + shape_of(a));
  static const std::uint64_t kNoWords = 0;
  return n == 0 ? &kNoWords : static_cast<const std::uint64_t*>(a.data());
}

/// Hands a vector to NumPy without copying: the array owns it through a capsule.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& values) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(owned->size())}, {static_cast<py::ssize_t>(sizeof(T))}, owned->data(),
                        owner);
}

}  // namespace deephash::bindings
