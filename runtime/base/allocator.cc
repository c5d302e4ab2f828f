#include "runtime/base/allocator.h"

#include <malloc.h>

#include <climits>

namespace pstrain {

bool keep_large_buffers_mapped() {
  const bool no_mmap = mallopt(M_MMAP_MAX, 0) == 1;
  const bool keep = mallopt(M_TRIM_THRESHOLD, static_cast<int>(kKeptFreeBytes)) == 1;
  return no_mmap && keep;
}

}  // namespace pstrain
