// CRC-32C (Castagnoli, polynomial 0x1EDC6F41 reflected: 0x82F63B78), as TFRecord files and
// TensorBoard's event files use it, and TensorFlow's masking of stored CRCs.
//
// Contract: crc32c(data) is the standard CRC-32C (crc32c("123456789") == 0xE3069283);
// extending with `crc` continues a running checksum. masked_crc32c(c) is
// ((c >> 15) | (c << 17)) + 0xA282EAD8, TensorFlow's mask for CRCs stored beside the data they
// cover. Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pstrain::events {

uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
uint32_t masked_crc32c(uint32_t crc);
uint32_t unmasked_crc32c(uint32_t masked);

}  // namespace pstrain::events
