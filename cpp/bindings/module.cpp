// module.cpp: deephash_ext._core, the private compiled module. Bindings only: checks,
// conversions and GIL handling; every algorithm lives in the core (cpp/src).
#include <pybind11/pybind11.h>

namespace deephash::bindings {
void bind_codes(pybind11::module_& m);
void bind_search(pybind11::module_& m);
void bind_mih(pybind11::module_& m);
void bind_info(pybind11::module_& m);
void bind_rbm(pybind11::module_& m);
void bind_testing(pybind11::module_& m);
}  // namespace deephash::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "deephash_ext compiled core (private; use the deephash_ext package)";
  deephash::bindings::bind_codes(m);
  deephash::bindings::bind_search(m);
  deephash::bindings::bind_mih(m);
  deephash::bindings::bind_info(m);
  deephash::bindings::bind_rbm(m);
  deephash::bindings::bind_testing(m);
}
