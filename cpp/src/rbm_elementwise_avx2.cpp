// rbm_elementwise_avx2.cpp: the RBM's element-wise loops compiled for AVX2.
#include "rbm_elementwise_impl.hpp"

namespace deephash {
const RbmElementwise kRbmElementwiseAvx2 = kTable;
}  // namespace deephash
