// 16-bit floating-point formats for gradients on the wire (--compress=fp16|bf16): the one
// place where float32 is narrowed to IEEE 754 binary16 ("fp16") or bfloat16 ("bf16") and
// widened back.
//
// Contract
// - Narrowing rounds to nearest, ties to even. NaN stays NaN (quiet, sign kept); +-Inf stays
//   +-Inf. fp16: a finite value of magnitude >= 65520 overflows to +-Inf; values below 2^-14
//   become fp16 subnormals (rounded the same way), below 2^-25 zero. bf16 keeps float32's
//   exponent range (float32 subnormals become bf16 subnormals); a finite value above the
//   largest bf16 by more than half a unit in the last place rounds to +-Inf.
// - For |x| in the normal range of the format, |x - widen(narrow(x))| <= 2^-11 |x| (fp16)
//   and 2^-8 |x| (bf16).
// - Widening is exact (every 16-bit value is a float32).
// - The bulk functions are plain loops over 16-bit words that the compiler vectorises; the
//   source of a widening may be unaligned (bytes straight from a network frame), the words
//   little-endian (the wire's byte order).
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "runtime/base/status.h"

namespace pstrain {

// How float values travel: float32 as they are, or narrowed to 16 bits.
enum class FloatFormat { kFloat32, kFloat16, kBFloat16 };

// --compress's spelling: "none" (kFloat32), "fp16", "bf16".
std::string compression_name(FloatFormat f);
// Parses --compress's value; kInvalidArgument naming the value and the choices otherwise.
Result<FloatFormat> parse_compression(std::string_view value);
// Bytes per element: 4 or 2.
size_t float_format_size(FloatFormat f);

uint16_t float_to_fp16(float x);
float fp16_to_float(uint16_t h);
uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t h);

// dst[i] = narrow(src[i]) for `format` kFloat16 or kBFloat16; dst.size() == src.size()
// (programmer error otherwise).
void narrow_floats(FloatFormat format, std::span<const float> src, std::span<uint16_t> dst);
// dst[i] = widen(the i-th little-endian 16-bit word at src), for `format` kFloat16 or
// kBFloat16; src holds 2 * dst.size() bytes, alignment not assumed.
void widen_halves(FloatFormat format, const std::byte* src, std::span<float> dst);
// Whether every one of the `count` little-endian 16-bit words at src (`format` kFloat16 or
// kBFloat16, alignment not assumed) widens to a finite float: none is NaN or +-Inf (their
// exponent bits are all ones). Reads the words without widening them.
bool halves_all_finite(FloatFormat format, const std::byte* src, size_t count);

}  // namespace pstrain
