// CRC-32C against published check values, TensorFlow's masking, and the TFRecord framing of
// runtime/events. (TensorBoard itself reads the files back in tests/integration.)
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "runtime/events/crc32c.h"
#include "runtime/events/event_writer.h"

namespace pstrain::events {
namespace {

TEST(Crc32cTest, KnownVectors) {
  // The CRC catalogue's check value, and RFC 3720 (iSCSI) B.4's vectors.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0'), ones(32, '\xff'), inc(32, '\0'), dec(32, '\0');
  for (int i = 0; i < 32; ++i) {
    inc[static_cast<size_t>(i)] = static_cast<char>(i);
    dec[static_cast<size_t>(i)] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), inc.size()), 0x46DD794Eu);
  EXPECT_EQ(crc32c(dec.data(), dec.size()), 0x113FDB5Cu);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(Crc32cTest, ExtendingEqualsOnePass) {
  const std::string s = "the quick brown fox jumps over the lazy dog";
  for (size_t cut = 0; cut <= s.size(); cut += 7) {
    EXPECT_EQ(crc32c(s.data() + cut, s.size() - cut, crc32c(s.data(), cut)),
              crc32c(s.data(), s.size()));
  }
}

TEST(Crc32cTest, MaskAsTensorFlowAndBack) {
  // TensorFlow's crc32c::Mask: rotate right by 15, add 0xa282ead8.
  const uint32_t c = crc32c("123456789", 9);
  EXPECT_EQ(masked_crc32c(c), ((c >> 15) | (c << 17)) + 0xA282EAD8u);
  EXPECT_NE(masked_crc32c(c), c);
  for (uint32_t v : {0u, 1u, 0xFFFFFFFFu, 0xE3069283u, 0x12345678u}) {
    EXPECT_EQ(unmasked_crc32c(masked_crc32c(v)), v);
  }
}

TEST(RecordFramingTest, LengthCrcDataCrc) {
  const std::string data = "an event";
  const std::string r = frame_record(data);
  ASSERT_EQ(r.size(), 8 + 4 + data.size() + 4);
  uint64_t len = 0;
  std::memcpy(&len, r.data(), 8);  // little-endian on the machines we build for
  EXPECT_EQ(len, data.size());
  uint32_t len_crc = 0, data_crc = 0;
  std::memcpy(&len_crc, r.data() + 8, 4);
  std::memcpy(&data_crc, r.data() + 12 + data.size(), 4);
  EXPECT_EQ(len_crc, masked_crc32c(crc32c(r.data(), 8)));
  EXPECT_EQ(r.substr(12, data.size()), data);
  EXPECT_EQ(data_crc, masked_crc32c(crc32c(data.data(), data.size())));
}

}  // namespace
}  // namespace pstrain::events
