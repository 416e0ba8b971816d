// bind_testing.cpp: deephash_ext._core._testing, bindings that only the tests and the
// benchmarks use (reference checks of internal kernels, diagnostics). Private: the package
// never calls them, and they may change without notice.
#include <cstdint>

#include "array_checks.hpp"
#include "deephash/blas.hpp"
#include "deephash/rbm.hpp"
#include "deephash/rng.hpp"
#include "deephash/threads.hpp"

namespace deephash::bindings {

void bind_testing(py::module_& m) {
  py::module_ t = m.def_submodule("_testing", "Bindings for the tests and benchmarks only (private).");
  t.def(
      "sgemm_nt",
      [](const py::array& a, const py::array& b) {
        require_float32(a, "a", 2);
        require_float32(b, "b", 2);
        const auto m_rows = static_cast<std::size_t>(a.shape(0)), k = static_cast<std::size_t>(a.shape(1));
        const auto n = static_cast<std::size_t>(b.shape(0));
        if (static_cast<std::size_t>(b.shape(1)) != k)
          throw py::value_error("a and b must have the same number of columns");
        py::array_t<float> out({static_cast<py::ssize_t>(m_rows), static_cast<py::ssize_t>(n)});
        const auto* ap = static_cast<const float*>(a.data());
        const auto* bp = static_cast<const float*>(b.data());
        float* outp = out.mutable_data();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          sgemm(false, true, m_rows, n, k, 1.0f, ap, k, bp, k, 0.0f, outp, n, threads);
        }
        return out;
      },
      py::arg("a"), py::arg("b"), "a @ b.T through the core's panel-parallel sgemm (benchmarks).");

  t.def(
      "uniform_rank_targets",
      [](const py::array& p) {
        require_float32(p, "P", 2);
        const auto n = static_cast<std::size_t>(p.shape(0)), m_cols = static_cast<std::size_t>(p.shape(1));
        py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(m_cols)});
        const auto* pp = static_cast<const float*>(p.data());
        float* outp = out.mutable_data();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          uniform_rank_targets(pp, n, m_cols, outp, threads);
        }
        return out;
      },
      py::arg("P"));

  t.def(
      "rbm_uniforms",
      [](const py::object& seed_arg, const py::object& step_arg, const py::object& n_arg) {
        const std::uint64_t seed = uint64_arg(seed_arg, "seed"), step = uint64_arg(step_arg, "step");
        const auto n = static_cast<std::size_t>(int_arg(n_arg, "n", 0, std::int64_t{1} << 40));
        py::array_t<float> out(static_cast<py::ssize_t>(n));
        float* outp = out.mutable_data();
        const std::uint64_t key = stream_key(seed, step);
        for (std::size_t i = 0; i < n; ++i) outp[i] = uniform(key, i);
        return out;
      },
      py::arg("seed"), py::arg("step"), py::arg("n"), "The random numbers of one training step (for references).");

  t.def(
      "threads_started", [] { return threads_started(); },
      "How many threads the core has started in this process (team sizing checks).");
}

}  // namespace deephash::bindings
