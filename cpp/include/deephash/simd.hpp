// deephash/simd.hpp: which instruction-set level the kernels run at.
//
// The level is detected once from the CPU (cpuid + xgetbv for OS-enabled vector
// state), clamped to what this binary was compiled with, and can be lowered (never
// raised) by the environment variable DEEPHASH_SIMD=scalar|avx2|avx512 or by
// set_active_level(). Entry points read active_level() once per call.
#pragma once
#include <string>
#include <vector>

namespace deephash {

enum class SimdLevel : int { Scalar = 0, AVX2 = 1, AVX512 = 2 };

/// "scalar", "avx2" or "avx512".
const char* level_name(SimdLevel level);
/// Parses a level name; throws std::invalid_argument for anything else.
SimdLevel parse_level(const std::string& name);

/// Highest level both compiled into this binary and supported by this CPU and OS.
SimdLevel detected_level();
/// Levels compiled into this binary, lowest first.
std::vector<SimdLevel> compiled_levels();
/// Levels that can run here (compiled and supported), lowest first.
std::vector<SimdLevel> available_levels();
/// The level kernels use now: detected_level() lowered by DEEPHASH_SIMD or set_active_level().
SimdLevel active_level();
/// Sets the active level; throws std::invalid_argument if the level cannot run here.
void set_active_level(SimdLevel level);

}  // namespace deephash
