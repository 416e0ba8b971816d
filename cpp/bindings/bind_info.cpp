// bind_info.cpp: build and runtime information, SIMD level and thread count controls.
#include <pybind11/stl.h>

#include "array_checks.hpp"
#include "deephash/simd.hpp"
#include "deephash/threads.hpp"

#ifndef DEEPHASH_VERSION
#define DEEPHASH_VERSION "unknown"
#endif

namespace deephash::bindings {
namespace {

std::vector<std::string> names(const std::vector<SimdLevel>& levels) {
  std::vector<std::string> out;
  for (SimdLevel l : levels) out.emplace_back(level_name(l));
  return out;
}

}  // namespace

void bind_info(py::module_& m) {
  m.attr("__version__") = DEEPHASH_VERSION;
  m.def("simd_level", [] { return std::string(level_name(active_level())); });
  m.def("detected_simd_level", [] { return std::string(level_name(detected_level())); });
  m.def("compiled_simd_levels", [] { return names(compiled_levels()); });
  m.def("available_simd_levels", [] { return names(available_levels()); });
  m.def("set_simd_level", [](const std::string& level) { set_active_level(parse_level(level)); }, py::arg("level"));
  m.def("num_threads", [] { return num_threads(); });
  m.attr("max_threads") = kMaxThreads;
  m.def(
      "set_num_threads",
      [](const py::object& n) { set_num_threads(static_cast<int>(int_arg(n, "n", 1, kMaxThreads))); }, py::arg("n"));
  m.def(
      "set_calling_thread_num_threads",
      [](const py::object& n) {
        return set_calling_thread_num_threads(static_cast<int>(int_arg(n, "n", 0, kMaxThreads)));
      },
      py::arg("n"));
  m.def("available_cpus", [] { return available_cpus(); });
  m.def("compiler", [] {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#else
    return std::string("unknown");
#endif
  });
}

}  // namespace deephash::bindings
