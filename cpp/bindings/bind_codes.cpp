// bind_codes.cpp: thresholded packing.
#include "array_checks.hpp"
#include "deephash/bitpack.hpp"
#include "deephash/threads.hpp"

namespace deephash::bindings {

void bind_codes(py::module_& m) {
  m.def(
      "pack_threshold",
      [](const py::array& x, const py::array& thresholds) {
        require_float32(x, "X", 2);
        require_float32(thresholds, "thresholds", 1);
        const auto n = static_cast<std::size_t>(x.shape(0)), d = static_cast<std::size_t>(x.shape(1));
        if (static_cast<std::size_t>(thresholds.shape(0)) != d)
          throw py::value_error("thresholds must have " + std::to_string(d) + " values (one per column of X), got " +
                                std::to_string(thresholds.shape(0)));
        if (d == 0 || d % 8 != 0)
          throw py::value_error("X must have a positive multiple of 8 columns, got " + std::to_string(d));
        py::array_t<std::uint8_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(d / 8)});
        const auto* xp = static_cast<const float*>(x.data());
        const auto* tp = static_cast<const float*>(thresholds.data());
        std::uint8_t* op = out.mutable_data();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          pack_threshold(xp, n, d, d, tp, op, threads);
        }
        return out;
      },
      py::arg("X"), py::arg("thresholds"),
      "Packed codes with bit j = X[:, j] > thresholds[j] (float32, C-contiguous inputs).");
}

}  // namespace deephash::bindings
