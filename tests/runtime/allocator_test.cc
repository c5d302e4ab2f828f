// keep_large_buffers_mapped(): a 40 MB buffer (a large tensor's receive buffer) comes from the
// heap, not from a fresh mmap, and its pages stay with the process after free, so the next one
// reuses them. Its own binary: the setting is process-wide.
#include "runtime/base/allocator.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace pstrain {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerAllocator = true;  // the sanitizer's malloc ignores mallopt
#else
constexpr bool kSanitizerAllocator = false;
#endif

void* volatile kept = nullptr;  // volatile: the compiler may not elide the malloc/free pair

TEST(Allocator, A40MbBufferComesFromTheHeapAndItsPagesStayAfterFree) {
  if (kSanitizerAllocator) GTEST_SKIP() << "a sanitizer's allocator replaces glibc's here";
  ASSERT_TRUE(keep_large_buffers_mapped());
  constexpr size_t kBytes = size_t{40} << 20;
  const size_t mapped_before = mallinfo2().hblks;
  kept = std::malloc(kBytes);
  ASSERT_NE(kept, nullptr);
  std::memset(kept, 1, kBytes);
  EXPECT_EQ(mallinfo2().hblks, mapped_before) << "the buffer is a separate mapping";
  std::free(kept);
  kept = nullptr;
  const struct mallinfo2 after = mallinfo2();
  EXPECT_GE(after.arena, kBytes) << "the heap gave the buffer's pages back to the kernel";
  EXPECT_GE(after.fordblks, kBytes);
}

}  // namespace
}  // namespace pstrain
