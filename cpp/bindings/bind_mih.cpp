// bind_mih.cpp: multi-index hashing (mih.hpp): table building, k-NN and radius search over
// caller-owned tables (uint32 arrays held by deephash_ext.BinaryIndex). GIL released while
// building and searching; table layouts and sizes are checked before anything is read.
#include <memory>

#include "array_checks.hpp"
#include "deephash/mih.hpp"
#include "deephash/threads.hpp"

namespace deephash::bindings {
namespace {

/// A C-contiguous 1-D uint32 array, optionally of an exact length.
const std::uint32_t* require_u32(const py::array& a, const char* name, std::size_t length) {
  if (!py::isinstance<py::array_t<std::uint32_t>>(a) || a.dtype().kind() != 'u' || a.itemsize() != 4)
    throw py::type_error(std::string(name) + " must be a uint32 array, got dtype " + std::string(py::str(a.dtype())));
  if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != length || !(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be a contiguous 1-D array of " + std::to_string(length) +
                          " entries, got shape " + shape_of(a));
  static const std::uint32_t kNothing = 0;
  return length == 0 ? &kNothing : static_cast<const std::uint32_t*>(a.data());
}

struct Layout {
  const std::uint32_t* begins;
  const std::uint32_t* widths;
  const std::uint32_t* bit_order;
  std::size_t n_tables;
};

Layout require_layout(const py::array& begins, const py::array& widths, const py::object& bit_order,
                      std::size_t code_bytes) {
  const auto m = static_cast<std::size_t>(begins.ndim() == 1 ? begins.shape(0) : 0);
  const std::uint32_t* order = nullptr;
  if (!bit_order.is_none()) {
    if (!py::isinstance<py::array>(bit_order)) throw py::type_error("bit_order must be None or a uint32 array");
    order = require_u32(py::reinterpret_borrow<py::array>(bit_order), "bit_order", 8 * code_bytes);
  }
  Layout layout{require_u32(begins, "begins", m), require_u32(widths, "widths", m), order, m};
  if (m == 0) throw py::value_error("MIH needs at least one substring");
  return layout;
}

// The tables over a checked layout, for codes of code_bytes bytes: offsets and rows checked in length.
MihTables tables_of(const Layout& layout, const py::array& offsets, const py::array& rows, std::size_t n_indexed,
                    std::size_t code_bytes) {
  const std::size_t n_offsets = mih_offsets_size(layout.begins, layout.widths, layout.n_tables, code_bytes);
  return MihTables{layout.n_tables,
                   layout.begins,
                   layout.widths,
                   layout.bit_order,
                   require_u32(offsets, "offsets", n_offsets),
                   require_u32(rows, "rows", layout.n_tables * n_indexed),
                   n_indexed};
}

MihTables require_tables(const Layout& layout, const py::array& offsets, const py::array& rows, std::size_t n_indexed,
                         const CodeView& db) {
  check_mih_tables(
      db, MihTables{layout.n_tables, layout.begins, layout.widths, layout.bit_order, nullptr, nullptr, n_indexed});
  return tables_of(layout, offsets, rows, n_indexed, db.code_bytes);
}

/// A MihSearcher with the arrays it views, kept alive as long as it.
struct SearcherHandle {
  py::tuple arrays;
  std::unique_ptr<MihSearcher> searcher;
};

MihPlan plan_arg(const py::object& max_work, const py::object& max_ns, const py::object& adaptive,
                 std::int64_t max_radius) {
  return MihPlan{MihBudget{uint64_arg(max_work, "max_work"), uint64_arg(max_ns, "max_ns")}, max_radius,
                 bool_arg(adaptive, "adaptive")};
}

}  // namespace

void bind_mih(py::module_& m) {
  py::class_<SearcherHandle>(m, "MihSearcher")
      .def(
          py::init([](const py::array& begins, const py::array& widths, const py::array& offsets, const py::array& rows,
                      const py::object& n_indexed, const py::object& bit_order, const py::object& code_bytes) {
            const auto bytes = static_cast<std::size_t>(int_arg(code_bytes, "code_bytes", 1));
            const auto n_idx = static_cast<std::size_t>(int_arg(n_indexed, "n_indexed", 0));
            const Layout layout = require_layout(begins, widths, bit_order, bytes);
            const MihTables tables = tables_of(layout, offsets, rows, n_idx, bytes);
            return SearcherHandle{py::make_tuple(begins, widths, offsets, rows, bit_order),
                                  std::make_unique<MihSearcher>(tables, bytes)};
          }),
          py::arg("begins"), py::arg("widths"), py::arg("offsets"), py::arg("rows"), py::arg("n_indexed"),
          py::arg("bit_order"), py::arg("code_bytes"))
      .def(
          "knn",
          [](SearcherHandle& self, const py::array& codes, const py::array& queries, const py::object& k,
             const py::object& removed, const py::object& max_work, const py::object& max_ns,
             const py::object& adaptive) {
            const CodeView db = require_codes(codes, "codes");
            const CodeView q = require_codes(queries, "queries");
            const idx_t kk = int_arg(k, "k");
            const RemovedRows skip = require_removed(removed, db.n);
            const MihPlan plan = plan_arg(max_work, max_ns, adaptive, -1);
            check_knn_args(q, db, kk, skip);  // before the outputs are allocated
            KnnOutputs out(q.n, kk);
            dist_t* dp = out.distances.mutable_data();
            idx_t* ip = out.indices.mutable_data();
            const SimdLevel level = active_level();
            const int threads = num_threads();
            {
              py::gil_scoped_release release;
              self.searcher->knn(q, db, kk, plan, dp, ip, level, threads, skip);
            }
            return out.as_tuple();
          },
          py::arg("codes"), py::arg("queries"), py::arg("k"), py::arg("removed"), py::arg("max_work"),
          py::arg("max_ns"), py::arg("adaptive"))
      .def(
          "range",
          [](SearcherHandle& self, const py::array& codes, const py::array& queries, const py::object& max_distance,
             const py::object& removed, const py::object& max_work, const py::object& max_ns,
             const py::object& max_radius, const py::object& adaptive) {
            const CodeView db = require_codes(codes, "codes");
            const CodeView q = require_codes(queries, "queries");
            const RemovedRows skip = require_removed(removed, db.n);
            const std::int64_t radius = saturated_int_arg(max_distance, "max_distance");
            const MihPlan plan = plan_arg(max_work, max_ns, adaptive, int_arg(max_radius, "max_radius", -1));
            const SimdLevel level = active_level();
            const int threads = num_threads();
            RangeResult result;
            {
              py::gil_scoped_release release;
              result = self.searcher->range(q, db, radius, plan, level, threads, skip);
            }
            return py::make_tuple(to_numpy(std::move(result.lims)), to_numpy(std::move(result.distances)),
                                  to_numpy(std::move(result.indices)));
          },
          py::arg("codes"), py::arg("queries"), py::arg("max_distance"), py::arg("removed"), py::arg("max_work"),
          py::arg("max_ns"), py::arg("max_radius"), py::arg("adaptive"))
      .def("counts", [](const SearcherHandle& self) {
        const MihCounts c = self.searcher->counts();
        return py::make_tuple(c.mih, c.gave_up, c.scanned);
      });

  m.def(
      "mih_build",
      [](const py::array& codes, const py::array& begins, const py::array& widths, const py::object& bit_order) {
        const CodeView db = require_codes(codes, "codes");
        const Layout layout = require_layout(begins, widths, bit_order, db.code_bytes);
        check_mih_tables(
            db, MihTables{layout.n_tables, layout.begins, layout.widths, layout.bit_order, nullptr, nullptr, db.n});
        const std::size_t n_offsets = mih_offsets_size(layout.begins, layout.widths, layout.n_tables, db.code_bytes);
        py::array_t<std::uint32_t> offsets(static_cast<py::ssize_t>(n_offsets));
        py::array_t<std::uint32_t> rows(static_cast<py::ssize_t>(layout.n_tables * db.n));
        std::uint32_t* op = offsets.mutable_data();
        std::uint32_t* rp = rows.mutable_data();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          mih_build(db, layout.begins, layout.widths, layout.bit_order, layout.n_tables, op, rp, threads);
        }
        return py::make_tuple(offsets, rows);
      },
      py::arg("codes"), py::arg("begins"), py::arg("widths"), py::arg("bit_order") = py::none());

  m.def(
      "mih_knn",
      [](const py::array& codes, const py::array& queries, const py::object& k, const py::array& begins,
         const py::array& widths, const py::array& offsets, const py::array& rows, const py::object& n_indexed,
         const py::object& max_work, const py::object& removed, const py::object& bit_order, const py::object& max_ns) {
        const CodeView db = require_codes(codes, "codes");
        const CodeView q = require_codes(queries, "queries");
        const idx_t kk = int_arg(k, "k");
        const auto n_idx = static_cast<std::size_t>(int_arg(n_indexed, "n_indexed", 0));
        const MihTables tables =
            require_tables(require_layout(begins, widths, bit_order, db.code_bytes), offsets, rows, n_idx, db);
        const MihBudget budget{uint64_arg(max_work, "max_work"), uint64_arg(max_ns, "max_ns")};
        const RemovedRows skip = require_removed(removed, db.n);
        check_mih_knn_args(q, db, tables, kk, skip);  // before the outputs are allocated
        KnnOutputs out(q.n, kk);
        py::array_t<std::uint8_t> fallback(static_cast<py::ssize_t>(q.n));
        dist_t* dp = out.distances.mutable_data();
        idx_t* ip = out.indices.mutable_data();
        std::uint8_t* fp = fallback.mutable_data();
        const int threads = num_threads();
        {
          py::gil_scoped_release release;
          mih_knn(q, db, tables, kk, budget, dp, ip, fp, threads, skip);
        }
        return py::make_tuple(out.distances, out.indices, fallback);
      },
      py::arg("codes"), py::arg("queries"), py::arg("k"), py::arg("begins"), py::arg("widths"), py::arg("offsets"),
      py::arg("rows"), py::arg("n_indexed"), py::arg("max_work"), py::arg("removed") = py::none(),
      py::arg("bit_order") = py::none(), py::arg("max_ns") = 0);

  m.def(
      "mih_range",
      [](const py::array& codes, const py::array& queries, const py::object& max_distance, const py::array& begins,
         const py::array& widths, const py::array& offsets, const py::array& rows, const py::object& n_indexed,
         const py::object& max_work, const py::object& removed, const py::object& bit_order, const py::object& max_ns) {
        const CodeView db = require_codes(codes, "codes");
        const CodeView q = require_codes(queries, "queries");
        check_code_views(q, db);
        const std::int64_t radius = saturated_int_arg(max_distance, "max_distance");
        const auto n_idx = static_cast<std::size_t>(int_arg(n_indexed, "n_indexed", 0));
        const MihTables tables =
            require_tables(require_layout(begins, widths, bit_order, db.code_bytes), offsets, rows, n_idx, db);
        const MihBudget budget{uint64_arg(max_work, "max_work"), uint64_arg(max_ns, "max_ns")};
        const RemovedRows skip = require_removed(removed, db.n);
        py::array_t<std::uint8_t> fallback(static_cast<py::ssize_t>(q.n));
        std::uint8_t* fp = fallback.mutable_data();
        const int threads = num_threads();
        RangeResult result;
        {
          py::gil_scoped_release release;
          result = mih_range(q, db, tables, radius, budget, fp, threads, skip);
        }
        return py::make_tuple(to_numpy(std::move(result.lims)), to_numpy(std::move(result.distances)),
                              to_numpy(std::move(result.indices)), fallback);
      },
      py::arg("codes"), py::arg("queries"), py::arg("max_distance"), py::arg("begins"), py::arg("widths"),
      py::arg("offsets"), py::arg("rows"), py::arg("n_indexed"), py::arg("max_work"), py::arg("removed") = py::none(),
      py::arg("bit_order") = py::none(), py::arg("max_ns") = 0);
}

}  // namespace deephash::bindings
