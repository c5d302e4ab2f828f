// runtime/wire/half.h: float32 <-> fp16 / bf16, round to nearest even, specials, bounds.
#include "runtime/wire/half.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "runtime/wire/message.h"

namespace pstrain {
namespace {

float f(uint32_t bits) { return std::bit_cast<float>(bits); }
uint32_t bits(float x) { return std::bit_cast<uint32_t>(x); }
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(HalfTest, Fp16ExactValuesRoundTrip) {
  for (float x : {0.f, 1.f, -1.f, 0.5f, 2.f, 1024.f, 65504.f, -65504.f, 0.099975586f}) {
    EXPECT_EQ(fp16_to_float(float_to_fp16(x)), x) << x;
  }
  EXPECT_EQ(float_to_fp16(1.f), 0x3c00);
  EXPECT_EQ(float_to_fp16(-2.f), 0xc000);
  EXPECT_EQ(float_to_fp16(65504.f), 0x7bff);
  EXPECT_EQ(float_to_fp16(-0.f), 0x8000);
  EXPECT_EQ(bits(fp16_to_float(0x8000)), 0x80000000u);  // -0 stays -0
}

TEST(HalfTest, EveryFp16WidensAndNarrowsBackToItself) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float x = fp16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(x)))) << h;
      continue;
    }
    ASSERT_EQ(float_to_fp16(x), h) << "fp16 0x" << std::hex << h << " = " << x;
  }
}

TEST(HalfTest, EveryBf16WidensAndNarrowsBackToItself) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float x = bf16_to_float(static_cast<uint16_t>(h));
    EXPECT_EQ(bits(x), h << 16);
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(x)))) << h;
      continue;
    }
    ASSERT_EQ(float_to_bf16(x), h) << "bf16 0x" << std::hex << h;
  }
}

TEST(HalfTest, Fp16TiesRoundToEven) {
  // 1 + 2^-11 lies halfway between 1 (even mantissa) and 1 + 2^-10 (odd): rounds down.
  EXPECT_EQ(float_to_fp16(1.f + std::ldexp(1.f, -11)), 0x3c00);
  // 1 + 3 * 2^-11 lies halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even): rounds up.
  EXPECT_EQ(float_to_fp16(1.f + 3 * std::ldexp(1.f, -11)), 0x3c02);
  // Just above the tie rounds up, just below rounds down.
  EXPECT_EQ(float_to_fp16(std::nextafter(1.f + std::ldexp(1.f, -11), 2.f)), 0x3c01);
  EXPECT_EQ(float_to_fp16(std::nextafter(1.f + 3 * std::ldexp(1.f, -11), 0.f)), 0x3c01);
  // The same in the subnormal range: 2.5 * 2^-24 -> 2 * 2^-24, 3.5 * 2^-24 -> 4 * 2^-24.
  EXPECT_EQ(float_to_fp16(2.5f * std::ldexp(1.f, -24)), 0x0002);
  EXPECT_EQ(float_to_fp16(3.5f * std::ldexp(1.f, -24)), 0x0004);
  EXPECT_EQ(float_to_fp16(-3.5f * std::ldexp(1.f, -24)), 0x8004);
}

TEST(HalfTest, Bf16TiesRoundToEven) {
  EXPECT_EQ(float_to_bf16(f(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(float_to_bf16(f(0x3f818000u)), 0x3f82);  // tie, even above
  EXPECT_EQ(float_to_bf16(f(0x3f808001u)), 0x3f81);  // above the tie
  EXPECT_EQ(float_to_bf16(f(0x3f807fffu)), 0x3f80);  // below the tie
  EXPECT_EQ(float_to_bf16(f(0xbf818000u)), 0xbf82);  // negative
}

TEST(HalfTest, NanStaysNanInfStaysInf) {
  for (float nan : {kNaN, -kNaN, f(0x7f800001u), f(0xff800001u), f(0x7fc00000u)}) {
    EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(nan))));
    EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(nan))));
  }
  // Sign of a NaN is kept.
  EXPECT_EQ(float_to_fp16(-kNaN) & 0x8000, 0x8000);
  EXPECT_EQ(float_to_bf16(-kNaN) & 0x8000, 0x8000);
  EXPECT_EQ(float_to_fp16(kInf), 0x7c00);
  EXPECT_EQ(float_to_fp16(-kInf), 0xfc00);
  EXPECT_EQ(float_to_bf16(kInf), 0x7f80);
  EXPECT_EQ(float_to_bf16(-kInf), 0xff80);
  EXPECT_EQ(fp16_to_float(0x7c00), kInf);
  EXPECT_EQ(fp16_to_float(0xfc00), -kInf);
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7c01)));
  EXPECT_TRUE(std::isnan(fp16_to_float(0xfe00)));
}

TEST(HalfTest, Fp16OverflowsToInf) {
  EXPECT_EQ(float_to_fp16(65519.996f), 0x7bff);  // below the midpoint to 65536: the max
  EXPECT_EQ(float_to_fp16(65520.f), 0x7c00);     // the midpoint: rounds to even, i.e. Inf
  EXPECT_EQ(float_to_fp16(1e6f), 0x7c00);
  EXPECT_EQ(float_to_fp16(-1e30f), 0xfc00);
  EXPECT_EQ(float_to_fp16(std::numeric_limits<float>::max()), 0x7c00);
  // bf16: float32's largest finite value is past the midpoint above bf16's largest.
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(float_to_bf16(f(0x7f7f7fffu)), 0x7f7f);
}

TEST(HalfTest, Subnormals) {
  const float min_sub = std::ldexp(1.f, -24);  // smallest fp16 subnormal
  EXPECT_EQ(float_to_fp16(min_sub), 0x0001);
  EXPECT_EQ(fp16_to_float(0x0001), min_sub);
  EXPECT_EQ(fp16_to_float(0x03ff), 1023 * min_sub);  // largest subnormal
  EXPECT_EQ(float_to_fp16(1023 * min_sub), 0x03ff);
  EXPECT_EQ(float_to_fp16(std::ldexp(1.f, -14)), 0x0400);  // smallest normal
  // Rounding up from the largest subnormal reaches the smallest normal.
  EXPECT_EQ(float_to_fp16(1023.75f * min_sub), 0x0400);
  // Half the smallest subnormal is a tie with zero (even): zero; a bit more: the subnormal.
  EXPECT_EQ(float_to_fp16(0.5f * min_sub), 0x0000);
  EXPECT_EQ(float_to_fp16(0.51f * min_sub), 0x0001);
  EXPECT_EQ(float_to_fp16(-0.51f * min_sub), 0x8001);
  EXPECT_EQ(float_to_fp16(1e-30f), 0x0000);
  EXPECT_EQ(float_to_fp16(-1e-30f), 0x8000);
  // float32 subnormals become bf16 subnormals.
  const float f32_sub = f(0x00010000u);
  EXPECT_EQ(float_to_bf16(f32_sub), 0x0001);
  EXPECT_EQ(bf16_to_float(0x0001), f32_sub);
  EXPECT_EQ(float_to_bf16(f(0x00018000u)), 0x0002);  // tie to even
}

TEST(HalfTest, ErrorWithinTheBoundOverTheNormalRange) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mantissa(1.f, 2.f);
  std::uniform_int_distribution<int> exp16(-14, 15), exp_bf(-126, 126);
  std::bernoulli_distribution negative(0.5);
  double worst16 = 0, worst_bf = 0;
  for (int i = 0; i < 200000; ++i) {
    float x = std::ldexp(mantissa(rng), exp16(rng)) * (negative(rng) ? -1.f : 1.f);
    if (std::fabs(x) > 65504.f) x = std::copysign(65504.f, x);
    const double e16 = std::fabs(static_cast<double>(x) - fp16_to_float(float_to_fp16(x))) /
                       std::fabs(static_cast<double>(x));
    ASSERT_LE(e16, std::ldexp(1.0, -11)) << x;
    worst16 = std::max(worst16, e16);
    const float y = std::ldexp(mantissa(rng), exp_bf(rng)) * (negative(rng) ? -1.f : 1.f);
    const double ebf = std::fabs(static_cast<double>(y) - bf16_to_float(float_to_bf16(y))) /
                       std::fabs(static_cast<double>(y));
    ASSERT_LE(ebf, std::ldexp(1.0, -8)) << y;
    worst_bf = std::max(worst_bf, ebf);
  }
  // The bounds are nearly reached (the rounding is to nearest, not a tighter truncation).
  EXPECT_GT(worst16, 0.9 * std::ldexp(1.0, -11));
  EXPECT_GT(worst_bf, 0.9 * std::ldexp(1.0, -8));
}

// Every 16-bit word, alone and in a block of finite ones at any place (unaligned too): the
// check without widening says what widening and std::isfinite say.
TEST(HalfTest, TheFiniteCheckOfEveryWordAgreesWithItsWidenedValue) {
  for (FloatFormat format : {FloatFormat::kFloat16, FloatFormat::kBFloat16}) {
    SCOPED_TRACE(compression_name(format));
    const auto widen = format == FloatFormat::kFloat16 ? fp16_to_float : bf16_to_float;
    int non_finite = 0;
    for (uint32_t w = 0; w <= 0xffff; ++w) {
      const auto h = static_cast<uint16_t>(w);
      const bool finite = std::isfinite(widen(h));
      non_finite += finite ? 0 : 1;
      ASSERT_EQ(halves_all_finite(format, reinterpret_cast<const std::byte*>(&h), 1), finite)
          << std::hex << w;
    }
    // NaNs and the two infinities: all exponent bits set, any mantissa, either sign.
    EXPECT_EQ(non_finite, format == FloatFormat::kFloat16 ? 2 * 1024 : 2 * 128);
    // 20000 words over more than two blocks, one byte off alignment; one bad word at a time.
    const uint16_t one = format == FloatFormat::kFloat16 ? 0x3c00 : 0x3f80;
    const uint16_t bad = format == FloatFormat::kFloat16 ? 0x7e00 : 0xff80;  // NaN, -Inf
    std::vector<std::byte> buf(1 + 2 * 20000);
    const auto put = [&](size_t i, uint16_t h) { std::memcpy(buf.data() + 1 + 2 * i, &h, 2); };
    for (size_t i = 0; i < 20000; ++i) put(i, one);
    EXPECT_TRUE(halves_all_finite(format, buf.data() + 1, 20000));
    EXPECT_TRUE(halves_all_finite(format, buf.data() + 1, 0));
    for (size_t at : {size_t{0}, size_t{8191}, size_t{8192}, size_t{19999}}) {
      put(at, bad);
      EXPECT_FALSE(halves_all_finite(format, buf.data() + 1, 20000)) << at;
      EXPECT_EQ(halves_all_finite(format, buf.data() + 1, at), true) << at;  // before it only
      put(at, one);
    }
  }
}

TEST(HalfTest, BulkFunctionsMatchTheScalarOnes) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> any_bits;
  std::vector<float> src(1037);
  for (float& x : src) x = f(any_bits(rng));  // every class: NaN, Inf, subnormal, normal
  src[0] = kNaN;
  src[1] = -kInf;
  src[2] = 65520.f;
  src[3] = 3.5f * std::ldexp(1.f, -24);
  for (FloatFormat fmt : {FloatFormat::kFloat16, FloatFormat::kBFloat16}) {
    std::vector<uint16_t> words(src.size());
    narrow_floats(fmt, src, words);
    // Widen from an odd address: network frames are not aligned.
    std::vector<std::byte> raw(words.size() * 2 + 1);
    std::memcpy(raw.data() + 1, words.data(), words.size() * 2);
    std::vector<float> back(src.size());
    widen_halves(fmt, raw.data() + 1, back);
    for (size_t i = 0; i < src.size(); ++i) {
      const bool fp16 = fmt == FloatFormat::kFloat16;
      const uint16_t want = fp16 ? float_to_fp16(src[i]) : float_to_bf16(src[i]);
      ASSERT_EQ(words[i], want) << i;
      const float w = fp16 ? fp16_to_float(want) : bf16_to_float(want);
      ASSERT_EQ(bits(back[i]), bits(w)) << i;
    }
  }
}

TEST(HalfTest, CompressionFlagValues) {
  EXPECT_EQ(parse_compression("none").value(), FloatFormat::kFloat32);
  EXPECT_EQ(parse_compression("fp16").value(), FloatFormat::kFloat16);
  EXPECT_EQ(parse_compression("bf16").value(), FloatFormat::kBFloat16);
  for (const char* bad : {"", "FP16", "float16", "int8"}) {
    auto r = parse_compression(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("none"), std::string::npos);
    EXPECT_NE(r.status().message().find("bf16"), std::string::npos);
  }
  for (FloatFormat fmt : {FloatFormat::kFloat32, FloatFormat::kFloat16, FloatFormat::kBFloat16}) {
    EXPECT_EQ(parse_compression(compression_name(fmt)).value(), fmt);
  }
}

TEST(HalfTest, WireDtypes) {
  EXPECT_EQ(dtype_size(wire::DTYPE_FLOAT16), 2u);
  EXPECT_EQ(dtype_size(wire::DTYPE_BFLOAT16), 2u);
  EXPECT_EQ(dtype_name(wire::DTYPE_FLOAT16), "float16");
  EXPECT_EQ(dtype_name(wire::DTYPE_BFLOAT16), "bfloat16");
  for (FloatFormat fmt : {FloatFormat::kFloat32, FloatFormat::kFloat16, FloatFormat::kBFloat16}) {
    FloatFormat back = FloatFormat::kFloat32;
    ASSERT_TRUE(float_format_of(wire_dtype(fmt), &back));
    EXPECT_EQ(back, fmt);
    EXPECT_EQ(dtype_size(wire_dtype(fmt)), float_format_size(fmt));
  }
  FloatFormat unused = FloatFormat::kFloat32;
  EXPECT_FALSE(float_format_of(wire::DTYPE_INT32, &unused));
  std::vector<uint16_t> words = {1, 2, 3};
  const OutFrame fr = half_frame("k", FloatFormat::kBFloat16, words, nullptr);
  EXPECT_EQ(fr.dtype, wire::DTYPE_BFLOAT16);
  EXPECT_EQ(fr.count, 3u);
  EXPECT_EQ(fr.data, words.data());
}

}  // namespace
}  // namespace pstrain
