// simd_detect.cpp: the only place that knows CPU features (cpuid leaf 1 and 7, xgetbv).
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "deephash/errors.hpp"
#include "deephash/simd.hpp"

#if defined(DEEPHASH_HAVE_X86_KERNELS)
#include <cpuid.h>
#endif

namespace deephash {
namespace {

#if defined(DEEPHASH_HAVE_X86_KERNELS)
unsigned long long read_xcr0() {
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

SimdLevel cpu_level() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return SimdLevel::Scalar;
  const bool osxsave = (c >> 27) & 1u, avx = (c >> 28) & 1u;
  if (!osxsave || !avx) return SimdLevel::Scalar;
  const unsigned long long xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6u) == 0x6u;    // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xE6u) == 0xE6u;  // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return SimdLevel::Scalar;
  const bool avx2 = (b >> 5) & 1u;
  const bool avx512 = ((b >> 16) & 1u) /*F*/ && ((b >> 17) & 1u) /*DQ*/ && ((b >> 30) & 1u) /*BW*/ &&
                      ((b >> 31) & 1u) /*VL*/ && ((c >> 14) & 1u) /*VPOPCNTDQ*/;
  if (avx512 && os_zmm) return SimdLevel::AVX512;
  if (avx2 && os_ymm) return SimdLevel::AVX2;
  return SimdLevel::Scalar;
}
constexpr SimdLevel kCompiledMax = SimdLevel::AVX512;
#else
SimdLevel cpu_level() { return SimdLevel::Scalar; }
constexpr SimdLevel kCompiledMax = SimdLevel::Scalar;
#endif

std::atomic<int> g_active{-1};  // -1: not resolved yet
std::mutex g_resolve_mutex;

SimdLevel min_level(SimdLevel a, SimdLevel b) { return static_cast<int>(a) < static_cast<int>(b) ? a : b; }

}  // namespace

const char* level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Scalar: return "scalar";
    case SimdLevel::AVX2: return "avx2";
    case SimdLevel::AVX512: return "avx512";
  }
  return "unknown";
}

SimdLevel parse_level(const std::string& name) {
  if (name == "scalar") return SimdLevel::Scalar;
  if (name == "avx2") return SimdLevel::AVX2;
  if (name == "avx512") return SimdLevel::AVX512;
  DH_REQUIRE(false, "unknown SIMD level '", name, "'; expected 'scalar', 'avx2' or 'avx512'");
  return SimdLevel::Scalar;
}

SimdLevel detected_level() {
  static const SimdLevel level = min_level(cpu_level(), kCompiledMax);
  return level;
}

std::vector<SimdLevel> compiled_levels() {
  std::vector<SimdLevel> out;
  for (int l = 0; l <= static_cast<int>(kCompiledMax); ++l) out.push_back(static_cast<SimdLevel>(l));
  return out;
}

std::vector<SimdLevel> available_levels() {
  std::vector<SimdLevel> out;
  for (int l = 0; l <= static_cast<int>(detected_level()); ++l) out.push_back(static_cast<SimdLevel>(l));
  return out;
}

SimdLevel active_level() {
  int level = g_active.load(std::memory_order_acquire);
  if (level >= 0) return static_cast<SimdLevel>(level);
  std::lock_guard<std::mutex> lock(g_resolve_mutex);
  level = g_active.load(std::memory_order_relaxed);
  if (level >= 0) return static_cast<SimdLevel>(level);
  SimdLevel resolved = detected_level();
  if (const char* env = std::getenv("DEEPHASH_SIMD"); env != nullptr && *env != '\0') {
    SimdLevel requested;
    try {
      requested = parse_level(env);
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument(detail::concat("environment variable DEEPHASH_SIMD='", env,
                                                 "' is not a SIMD level; expected 'scalar', 'avx2' or 'avx512'"));
    }
    resolved = min_level(requested, resolved);  // the variable can only lower the level
  }
  g_active.store(static_cast<int>(resolved), std::memory_order_release);
  return resolved;
}

void set_active_level(SimdLevel level) {
  DH_REQUIRE(static_cast<int>(level) <= static_cast<int>(detected_level()), "SIMD level '", level_name(level),
             "' cannot run here; the highest available is '", level_name(detected_level()), "'");
  g_active.store(static_cast<int>(level), std::memory_order_release);
}

}  // namespace deephash
