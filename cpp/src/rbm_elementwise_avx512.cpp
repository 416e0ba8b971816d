// rbm_elementwise_avx512.cpp: the RBM's element-wise loops compiled for AVX-512 (F, DQ, VL).
#include "rbm_elementwise_impl.hpp"

namespace deephash {
const RbmElementwise kRbmElementwiseAvx512 = kTable;
}  // namespace deephash
