#include "runtime/wire/half.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "runtime/base/check.h"

namespace pstrain {

namespace {

// a if cond, else b, with masks instead of a jump (GCC keeps a ?: as control flow, which stops
// the vectoriser).
inline uint32_t select(bool cond, uint32_t a, uint32_t b) {
  const uint32_t mask = 0u - static_cast<uint32_t>(cond);
  return (a & mask) | (b & ~mask);
}

// Branch-free forms (selects, not jumps) so that the bulk loops vectorise. After F. Giesen's
// float_to_half_fast3_rtne / half_to_float_fast5 (public domain).
inline uint16_t to_fp16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t sign = bits & 0x80000000u;
  const uint32_t mag = bits ^ sign;
  // Normal fp16 results: rebias the exponent and round to nearest even on the 13 dropped
  // bits (an overflow of the rounding carries into the exponent, up to Inf: correct).
  const uint32_t odd = (mag >> 13) & 1u;
  const uint32_t normal = (mag + (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd) >> 13;
  // Subnormal fp16 results (|x| < 2^-14): adding 0.5 lines the 10 mantissa bits up at the
  // bottom of a float32, rounded to nearest even by the FPU itself.
  constexpr uint32_t kDenormMagic = static_cast<uint32_t>((127 - 15) + (23 - 10) + 1) << 23;
  const float sub_f = std::bit_cast<float>(mag) + std::bit_cast<float>(kDenormMagic);
  const uint32_t subnormal = std::bit_cast<uint32_t>(sub_f) - kDenormMagic;
  // |x| >= 65536 (after rounding, 65520 and up reach Inf through `normal`), Inf and NaN.
  const uint32_t special = select(mag > 0x7f800000u, 0x7e00u, 0x7c00u);
  uint32_t out = select(mag < (113u << 23), subnormal, normal);
  out = select(mag >= (143u << 23), special, out);
  return static_cast<uint16_t>(out | (sign >> 16));
}

inline float from_fp16(uint16_t h) {
  const uint32_t mag = static_cast<uint32_t>(h & 0x7fffu) << 13;
  const uint32_t exp = mag & (0x7c00u << 13);
  const uint32_t rebias = mag + (static_cast<uint32_t>(127 - 15) << 23);
  const uint32_t special = rebias + (static_cast<uint32_t>(128 - 16) << 23);  // Inf, NaN
  // Zero and subnormals: let the FPU renormalise.
  const float sub_f = std::bit_cast<float>(rebias + (1u << 23)) - std::bit_cast<float>(113u << 23);
  const uint32_t subnormal = std::bit_cast<uint32_t>(sub_f);
  uint32_t out = select(exp == (0x7c00u << 13), special, rebias);
  out = select(exp == 0, subnormal, out);
  return std::bit_cast<float>(out | (static_cast<uint32_t>(h & 0x8000u) << 16));
}

inline uint16_t to_bf16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  // NaN: keep the sign and the top of the payload, and set the quiet bit so that a payload in
  // the dropped bits only cannot turn it into Inf.
  const uint32_t nan = (bits >> 16) | 0x0040u;
  const bool is_nan = (bits & 0x7fffffffu) > 0x7f800000u;
  return static_cast<uint16_t>(select(is_nan, nan, rounded));
}

inline float from_bf16(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

template <uint16_t (*Narrow)(float)>
void narrow_loop(const float* __restrict src, uint16_t* __restrict dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = Narrow(src[i]);
}

template <float (*Widen)(uint16_t)>
void widen_loop(const std::byte* __restrict src, float* __restrict dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, sizeof h);  // unaligned, little-endian (message.cc checks)
    dst[i] = Widen(h);
  }
}

}  // namespace

std::string compression_name(FloatFormat f) {
  switch (f) {
    case FloatFormat::kFloat32:
      return "none";
    case FloatFormat::kFloat16:
      return "fp16";
    case FloatFormat::kBFloat16:
      return "bf16";
  }
  return "none";
}

Result<FloatFormat> parse_compression(std::string_view value) {
  if (value == "none") return FloatFormat::kFloat32;
  if (value == "fp16") return FloatFormat::kFloat16;
  if (value == "bf16") return FloatFormat::kBFloat16;
  return invalid_argument("--compress=" + std::string(value) +
                          " is not a choice: give none (float32 gradients), fp16 or bf16");
}

size_t float_format_size(FloatFormat f) { return f == FloatFormat::kFloat32 ? 4 : 2; }

uint16_t float_to_fp16(float x) { return to_fp16(x); }
float fp16_to_float(uint16_t h) { return from_fp16(h); }
uint16_t float_to_bf16(float x) { return to_bf16(x); }
float bf16_to_float(uint16_t h) { return from_bf16(h); }

void narrow_floats(FloatFormat format, std::span<const float> src, std::span<uint16_t> dst) {
  PSTRAIN_CHECK(src.size() == dst.size(), "narrow_floats: sizes differ");
  PSTRAIN_CHECK(format != FloatFormat::kFloat32, "narrow_floats: float32 is not 16 bits");
  if (format == FloatFormat::kFloat16) {
    narrow_loop<to_fp16>(src.data(), dst.data(), src.size());
  } else {
    narrow_loop<to_bf16>(src.data(), dst.data(), src.size());
  }
}

void widen_halves(FloatFormat format, const std::byte* src, std::span<float> dst) {
  PSTRAIN_CHECK(format != FloatFormat::kFloat32, "widen_halves: float32 is not 16 bits");
  if (format == FloatFormat::kFloat16) {
    widen_loop<from_fp16>(src, dst.data(), dst.size());
  } else {
    widen_loop<from_bf16>(src, dst.data(), dst.size());
  }
}

bool halves_all_finite(FloatFormat format, const std::byte* src, size_t count) {
  PSTRAIN_CHECK(format != FloatFormat::kFloat32, "halves_all_finite: float32 is not 16 bits");
  // NaN and Inf are the words whose exponent field is all ones: the largest exponent field of
  // a block says whether the block holds one (a loop the compiler vectorises).
  const uint16_t exponent = format == FloatFormat::kFloat16 ? 0x7c00 : 0x7f80;
  constexpr size_t kBlock = 8192;  // 16 KB, as the float32 check's blocks
  for (size_t begin = 0; begin < count; begin += kBlock) {
    const size_t end = std::min(count, begin + kBlock);
    uint16_t largest = 0;
    for (size_t i = begin; i < end; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, sizeof h);  // unaligned, little-endian (as widen_loop)
      largest = std::max<uint16_t>(largest, static_cast<uint16_t>(h & exponent));
    }
    if (largest == exponent) return false;
  }
  return true;
}

}  // namespace pstrain
