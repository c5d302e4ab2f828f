#include "runtime/base/allocator.h"

#include <malloc.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PSTRAIN_SANITIZER_ALLOCATOR 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PSTRAIN_SANITIZER_ALLOCATOR 1
#endif

namespace pstrain {

bool keep_large_buffers_mapped() {
#ifdef PSTRAIN_SANITIZER_ALLOCATOR
  return true;  // the sanitizer's allocator replaces glibc's (and ignores mallopt)
#else
  const bool no_mmap = mallopt(M_MMAP_MAX, 0) == 1;
  const bool keep = mallopt(M_TRIM_THRESHOLD, static_cast<int>(kKeptFreeBytes)) == 1;
  return no_mmap && keep;
#endif
}

}  // namespace pstrain
