// bind_search.cpp: exact top-k and radius Hamming search (GIL released while scanning).
// k, the radius and the code widths are checked by the core (knn.hpp), before anything
// is allocated. `removed` is an optional removed-row bitmap (knn.hpp RemovedRows).
#include "array_checks.hpp"
#include "deephash/knn.hpp"
#include "deephash/threads.hpp"

namespace deephash::bindings {

void bind_search(py::module_& m) {
  m.def(
      "knn_hamming",
      [](const py::array& codes, const py::array& queries, const py::object& k, const py::object& removed) {
        const CodeView db = require_codes(codes, "codes");
        const CodeView q = require_codes(queries, "queries");
        const idx_t kk = int_arg(k, "k");
        const RemovedRows skip = require_removed(removed, db.n);
        check_knn_args(q, db, kk, skip);  // before the outputs are allocated
        py::array_t<dist_t> distances({static_cast<py::ssize_t>(q.n), static_cast<py::ssize_t>(kk)});
        py::array_t<idx_t> indices({static_cast<py::ssize_t>(q.n), static_cast<py::ssize_t>(kk)});
        dist_t* dp = distances.mutable_data();
        idx_t* ip = indices.mutable_data();
        const SimdLevel level = active_level();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          knn_hamming(q, db, kk, dp, ip, level, threads, skip);
        }
        return py::make_tuple(distances, indices);
      },
      py::arg("codes"), py::arg("queries"), py::arg("k"), py::arg("removed") = py::none());

  m.def(
      "range_hamming",
      [](const py::array& codes, const py::array& queries, const py::object& max_distance, const py::object& removed) {
        const CodeView db = require_codes(codes, "codes");
        const CodeView q = require_codes(queries, "queries");
        const RemovedRows skip = require_removed(removed, db.n);
        const std::int64_t radius = saturated_int_arg(max_distance, "max_distance");
        const SimdLevel level = active_level();
        const int threads = num_threads();
        RangeResult result;
        {
          py::gil_scoped_release release;
          result = range_hamming(q, db, radius, level, threads, skip);
        }
        return py::make_tuple(to_numpy(std::move(result.lims)), to_numpy(std::move(result.distances)),
                              to_numpy(std::move(result.indices)));
      },
      py::arg("codes"), py::arg("queries"), py::arg("max_distance"), py::arg("removed") = py::none());
}

}  // namespace deephash::bindings
