// bind_search.cpp: exact top-k and radius Hamming search (GIL released while scanning).
// k, the radius and the code widths are checked by the core (knn.hpp), before anything
// is allocated. `removed` is an optional removed-row bitmap (knn.hpp RemovedRows).
// merge_topk merges per-shard top-k lists (merge.hpp); payloads are 8-byte integers (int64
// rows or positions, or uint64 ids) and come back in the dtype they came in.
#include "array_checks.hpp"
#include "deephash/knn.hpp"
#include "deephash/merge.hpp"
#include "deephash/threads.hpp"

namespace deephash::bindings {
namespace {

// A C-contiguous 2-D array of `dtype` with `rows` rows (rows < 0: any), or TypeError/ValueError.
py::array require_matrix(const py::handle& value, const py::dtype& dtype, const std::string& name, py::ssize_t rows) {
  if (!py::isinstance<py::array>(value))
    throw py::type_error(name + " must be a NumPy array, got " + Py_TYPE(value.ptr())->tp_name);
  const auto a = py::reinterpret_borrow<py::array>(value);
  if (!a.dtype().is(dtype))
    throw py::type_error(name + " must have dtype " + std::string(py::str(dtype)) + ", got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != 2 || (rows >= 0 && a.shape(0) != rows))
    throw py::value_error(name + " must be 2-D with " + (rows >= 0 ? std::to_string(rows) : std::string("any")) +
                          " rows, got shape " + shape_of(a));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(name + " must be C-contiguous");
  return a;
}

}  // namespace

void bind_search(py::module_& m) {
  m.def(
      "knn_hamming",
      [](const py::array& codes, const py::array& queries, const py::object& k, const py::object& removed) {
        const CodeView db = require_codes(codes, "codes");
        const CodeView q = require_codes(queries, "queries");
        const idx_t kk = int_arg(k, "k");
        const RemovedRows skip = require_removed(removed, db.n);
        check_knn_args(q, db, kk, skip);  // before the outputs are allocated
        KnnOutputs out(q.n, kk);
        dist_t* dp = out.distances.mutable_data();
        idx_t* ip = out.indices.mutable_data();
        const SimdLevel level = active_level();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          knn_hamming(q, db, kk, dp, ip, level, threads, skip);
        }
        return out.as_tuple();
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

  m.attr("max_merge_distance") = kMaxMergeDistance;
  m.def(
      "merge_topk",
      [](const py::list& distances, const py::list& payloads, const py::object& k, const py::object& max_distance) {
        if (distances.empty() || distances.size() != payloads.size())
          throw py::value_error("distances and payloads must be lists of the same non-zero length, got " +
                                std::to_string(distances.size()) + " and " + std::to_string(payloads.size()));
        const py::dtype dist_dtype = py::dtype::of<dist_t>();
        const py::dtype payload_dtype = py::reinterpret_borrow<py::object>(payloads[0]).attr("dtype");
        if (!payload_dtype.is(py::dtype::of<std::int64_t>()) && !payload_dtype.is(py::dtype::of<std::uint64_t>()))
          throw py::type_error("payloads must be int64 or uint64 arrays, got " + std::string(py::str(payload_dtype)));
        std::vector<py::array> keep;  // holds the checked arrays while the core reads them
        std::vector<TopkPart> parts;
        const py::ssize_t nq = require_matrix(distances[0], dist_dtype, "distances[0]", -1).shape(0);
        for (std::size_t p = 0; p < distances.size(); ++p) {
          const std::string at = "[" + std::to_string(p) + "]";
          py::array d = require_matrix(distances[p], dist_dtype, "distances" + at, nq);
          py::array v = require_matrix(payloads[p], payload_dtype, "payloads" + at, nq);
          if (v.shape(1) != d.shape(1))
            throw py::value_error("payloads" + at + " must have the shape of distances" + at + ", got " + shape_of(v) +
                                  " and " + shape_of(d));
          parts.push_back({static_cast<const dist_t*>(d.data()), static_cast<const idx_t*>(v.data()),
                           static_cast<std::size_t>(d.shape(1))});
          keep.push_back(std::move(d));
          keep.push_back(std::move(v));
        }
        const auto kk = static_cast<std::size_t>(int_arg(k, "k", 1));
        const auto limit = static_cast<dist_t>(int_arg(max_distance, "max_distance", 0, kMaxMergeDistance));
        std::size_t total = 0;
        for (const TopkPart& part : parts) total += part.cols;
        const auto width = static_cast<py::ssize_t>(std::min(kk, total));
        py::array_t<dist_t> out_d({nq, width});
        py::array out_v(payload_dtype, {nq, width});
        dist_t* dp = out_d.mutable_data();
        auto* vp = static_cast<idx_t*>(out_v.mutable_data());
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          merge_topk(parts, static_cast<std::size_t>(nq), kk, limit, dp, vp, threads);
        }
        return py::make_tuple(out_d, out_v);
      },
      py::arg("distances"), py::arg("payloads"), py::arg("k"), py::arg("max_distance"));
}

}  // namespace deephash::bindings
