// rbm_elementwise_scalar.cpp: the RBM's element-wise loops compiled for the baseline ISA,
// and the per-level dispatch.
#include "rbm_elementwise_impl.hpp"

namespace deephash {

const RbmElementwise kRbmElementwiseScalar = kTable;

const RbmElementwise& rbm_elementwise(SimdLevel level) {
#if defined(DEEPHASH_HAVE_X86_KERNELS)
  if (level == SimdLevel::AVX512) return kRbmElementwiseAvx512;
  if (level == SimdLevel::AVX2) return kRbmElementwiseAvx2;
#else
  (void)level;
#endif
  return kRbmElementwiseScalar;
}

}  // namespace deephash
