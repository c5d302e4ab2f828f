// Time-slice requests (runtime/base/sched.h) on this machine's kernel: each test runs in a
// thread of its own, so the test process's threads keep their scheduling.
#include "runtime/base/sched.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace pstrain {
namespace {

using std::chrono::nanoseconds;

// Runs body on a new thread and waits for it (gtest assertions work there; a skip does not, so
// bodies return the reason to skip, or "").
template <typename Body>
std::string on_own_thread(Body body) {
  std::string skip;
  std::thread t([&] { skip = body(); });
  t.join();
  return skip;
}

TEST(TimeSlice, TheThreadAndThoseItStartsGetItAndZeroGivesTheDefaultBack) {
  const std::string skip = on_own_thread([]() -> std::string {
#if defined(__linux__)
    // A nice value of its own, which the request must keep (raising it needs no privilege).
    const auto tid = static_cast<id_t>(syscall(SYS_gettid));
    EXPECT_EQ(setpriority(PRIO_PROCESS, tid, 3), 0);
#endif
    Result<nanoseconds> before = current_time_slice();
    if (!before.ok()) return before.status().message();
    const Status st = request_time_slice(kMessageThreadSlice);
    if (!st.ok()) {
      // (Then nothing changed.)
      EXPECT_EQ(*current_time_slice(), *before);
      return st.message();
    }
    EXPECT_EQ(*current_time_slice(), nanoseconds(kMessageThreadSlice));
    nanoseconds inherited{-1};
    std::thread child([&] {
      Result<nanoseconds> mine = current_time_slice();
      if (mine.ok()) inherited = *mine;
    });
    child.join();
    EXPECT_EQ(inherited, nanoseconds(kMessageThreadSlice));
#if defined(__linux__)
    errno = 0;
    EXPECT_EQ(getpriority(PRIO_PROCESS, tid), 3) << "the nice value was not kept";
    EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
#endif
    EXPECT_TRUE(request_time_slice(nanoseconds(0)).ok());
    EXPECT_EQ(*current_time_slice(), *before);
    return "";
  });
  if (!skip.empty()) GTEST_SKIP() << "this kernel takes no time-slice requests: " << skip;
}

TEST(TimeSlice, ASliceOutsideTheKernelsRangeIsAnErrorNamingItAndChangesNothing) {
  for (const nanoseconds bad : {nanoseconds(10), nanoseconds(kMinTimeSlice) - nanoseconds(1),
                                nanoseconds(kMaxTimeSlice) + nanoseconds(1), nanoseconds(-5)}) {
    const Status st = check_time_slice(bad);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad.count();
    EXPECT_NE(st.message().find("a time slice of " + std::to_string(bad.count()) + " ns"),
              std::string::npos)
        << st.message();
  }
  EXPECT_TRUE(check_time_slice(nanoseconds(0)).ok());
  EXPECT_TRUE(check_time_slice(kMinTimeSlice).ok());
  EXPECT_TRUE(check_time_slice(kMaxTimeSlice).ok());
  const std::string skip = on_own_thread([]() -> std::string {
    Result<nanoseconds> before = current_time_slice();
    if (!before.ok()) return before.status().message();
    const Status st = request_time_slice(nanoseconds(10));
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
    EXPECT_EQ(*current_time_slice(), *before);
    return "";
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}

#if defined(__linux__)
TEST(TimeSlice, AThreadUnderAnotherPolicyIsLeftAlone) {
  on_own_thread([]() -> std::string {
    sched_param p{};
    EXPECT_EQ(sched_setscheduler(0, SCHED_BATCH, &p), 0);
    const Status st = request_time_slice(kMessageThreadSlice);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("not SCHED_OTHER"), std::string::npos) << st.message();
    EXPECT_EQ(sched_getscheduler(0), SCHED_BATCH);
    return "";
  });
}
#endif

}  // namespace
}  // namespace pstrain
