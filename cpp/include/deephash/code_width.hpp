// deephash/code_width.hpp: the one place that picks a width-specialised kernel.
//
// Kernels are templates on the code width in 64-bit words (kWords); kWords == 0 is the
// generic instance that reads the width at run time (and handles any tail). The widths
// specialised are 1, 2, 4, 8 and 16 words (64 to 1024 bits). Every kernel file (each ISA's
// .cpp, and the CUDA .cu files) dispatches through these functions, so the list lives here
// once. No ISA intrinsics and no standard-library templates: each ISA file instantiates
// the dispatcher with its own (translation-unit-local) functor.
#pragma once
#include <cstddef>

namespace deephash {

/// A code width fixed at compile time: kWords 64-bit words (0: known only at run time).
template <std::size_t kWords>
struct Words {
  static constexpr std::size_t value = kWords;
};

/// Calls f(Words<n_words>{}) when n_words is a specialised width (1, 2, 4, 8 or 16 words),
/// else f(Words<0>{}); returns what f returns. For word-major data, whose tail word is zero
/// padded, so that a code of 9 to 16 bytes is a 2-word code.
template <class F>
inline decltype(auto) with_word_count(std::size_t n_words, F&& f) {
  switch (n_words) {
    case 1: return f(Words<1>{});
    case 2: return f(Words<2>{});
    case 4: return f(Words<4>{});
    case 8: return f(Words<8>{});
    case 16: return f(Words<16>{});
    default: return f(Words<0>{});
  }
}

/// Calls f(Words<code_bytes / 8>{}) when the code is exactly a specialised number of whole
/// words (8, 16, 32, 64 or 128 bytes), else f(Words<0>{}). For packed rows read in place,
/// which have no padding.
template <class F>
inline decltype(auto) with_code_bytes(std::size_t code_bytes, F&& f) {
  return with_word_count(code_bytes % 8 == 0 ? code_bytes / 8 : 0, static_cast<F&&>(f));
}

}  // namespace deephash
