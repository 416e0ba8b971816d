// bind_search.cpp: exact top-k and radius Hamming search (GIL released while scanning).
#include "array_checks.hpp"
#include "deephash/knn.hpp"
#include "deephash/threads.hpp"

namespace deephash::bindings {

void bind_search(py::module_& m) {
  m.def(
      "knn_hamming",
      [](const py::array& codes, const py::array& queries, long long k) {
        const CodeView db = require_codes(codes, "codes");
        const CodeView q = require_codes(queries, "queries");
        require_same_width(q, db);
        if (k < 1 || static_cast<unsigned long long>(k) > db.n)
          throw py::value_error("k must be in [1, " + std::to_string(db.n) + "] (len(codes)), got " + std::to_string(k));
        const auto kk = static_cast<std::size_t>(k);
        py::array_t<dist_t> distances({static_cast<py::ssize_t>(q.n), static_cast<py::ssize_t>(kk)});
        py::array_t<idx_t> indices({static_cast<py::ssize_t>(q.n), static_cast<py::ssize_t>(kk)});
        dist_t* dp = distances.mutable_data();
        idx_t* ip = indices.mutable_data();
        const SimdLevel level = active_level();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          knn_hamming(q, db, kk, dp, ip, level, threads);
        }
        return py::make_tuple(distances, indices);
      },
      py::arg("codes"), py::arg("queries"), py::arg("k"));

  m.def(
      "range_hamming",
      [](const py::array& codes, const py::array& queries, long long max_distance) {
        const CodeView db = require_codes(codes, "codes");
        const CodeView q = require_codes(queries, "queries");
        require_same_width(q, db);
        if (max_distance < 0)
          throw py::value_error("max_distance must be >= 0, got " + std::to_string(max_distance));
        const auto radius = static_cast<dist_t>(std::min<long long>(max_distance, 1LL << 30));
        const SimdLevel level = active_level();
        const int threads = num_threads();
        RangeResult result;
        {
          py::gil_scoped_release release;
          result = range_hamming(q, db, radius, level, threads);
        }
        return py::make_tuple(to_numpy(std::move(result.lims)), to_numpy(std::move(result.distances)),
                              to_numpy(std::move(result.indices)));
      },
      py::arg("codes"), py::arg("queries"), py::arg("max_distance"));
}

}  // namespace deephash::bindings
