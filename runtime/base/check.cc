#include "runtime/base/check.h"

#include <cstdio>
#include <cstdlib>

namespace pstrain::detail {

void check_failed(const char* file, int line, const char* condition, std::string_view message) {
  std::fprintf(stderr, "pstrain: check failed at %s:%d: %s", file, line, condition);
  if (!message.empty()) {
    std::fprintf(stderr, " (%.*s)", static_cast<int>(message.size()), message.data());
  }
  std::fputs("\n", stderr);
  std::fflush(stderr);
  std::abort();
}

}  // namespace pstrain::detail
