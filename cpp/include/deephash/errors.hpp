// deephash/errors.hpp: the only way the core reports bad input.
//
// Public entry points check their arguments with DH_REQUIRE, which throws
// std::invalid_argument (pybind11 maps it to ValueError). Internal invariants use
// DH_INTERNAL (std::logic_error -> RuntimeError). Nothing in the core ever aborts.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace deephash::detail {

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

}  // namespace deephash::detail

#define DH_REQUIRE(cond, ...)                                                          \
  do {                                                                                 \
    if (!(cond)) throw std::invalid_argument(::deephash::detail::concat(__VA_ARGS__)); \
  } while (0)

#define DH_INTERNAL(cond)                                                                                      \
  do {                                                                                                         \
    if (!(cond))                                                                                               \
      throw std::logic_error(                                                                                  \
          ::deephash::detail::concat("deephash internal error: ", #cond, " (", __FILE__, ":", __LINE__, ")")); \
  } while (0)
