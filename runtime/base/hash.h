// Fnv1a: the 64-bit FNV-1a hash, for fingerprints that every task of a job must compute
// identically (job ids, variable layouts). Not for security. Thread-safety: a value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pstrain {

class Fnv1a {
 public:
  Fnv1a& add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ULL;  // FNV-1a 64 prime
    }
    return *this;
  }
  Fnv1a& add(std::string_view s) { return add(s.data(), s.size()); }
  Fnv1a& add_int(int64_t v) { return add(&v, sizeof v); }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
};

}  // namespace pstrain
