#include "runtime/base/sched.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>
#endif

namespace pstrain {

Status check_time_slice(std::chrono::nanoseconds slice) {
  if (slice.count() != 0 && (slice < kMinTimeSlice || slice > kMaxTimeSlice)) {
    return invalid_argument("a time slice of " + std::to_string(slice.count()) +
                            " ns is outside the kernel's range of " +
                            std::to_string(kMinTimeSlice.count()) + " us to " +
                            std::to_string(kMaxTimeSlice.count()) + " ms (0: the default)");
  }
  return {};
}

#if defined(__linux__) && defined(SYS_sched_setattr) && defined(SYS_sched_getattr)

namespace {

// The kernel's struct sched_attr (include/uapi/linux/sched/types.h), which glibc before 2.41
// does not declare.
struct KernelSchedAttr {
  uint32_t size = sizeof(KernelSchedAttr);
  uint32_t sched_policy = 0;
  uint64_t sched_flags = 0;
  int32_t sched_nice = 0;
  uint32_t sched_priority = 0;
  uint64_t sched_runtime = 0;  // SCHED_OTHER on Linux 6.12+: the slice, in ns
  uint64_t sched_deadline = 0;
  uint64_t sched_period = 0;
  uint32_t sched_util_min = 0;
  uint32_t sched_util_max = 0;
};

Result<KernelSchedAttr> get_attr() {
  KernelSchedAttr a;
  if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) != 0) {
    return unavailable(std::string("sched_getattr: ") + std::strerror(errno));
  }
  return a;
}

std::string kernel_release() {
  utsname u{};
  return uname(&u) == 0 ? std::string(u.release) : std::string("unknown");
}

}  // namespace

Status request_time_slice(std::chrono::nanoseconds slice) {
  PSTRAIN_RETURN_IF_ERROR(check_time_slice(slice));
  PSTRAIN_ASSIGN_OR_RETURN(KernelSchedAttr a, get_attr());
  if (a.sched_policy != SCHED_OTHER) {
    return failed_precondition("the thread runs under scheduling policy " +
                               std::to_string(a.sched_policy) +
                               ", not SCHED_OTHER: its time slice is left as it is");
  }
  const KernelSchedAttr before = a;
  a.size = sizeof(a);
  a.sched_flags = 0;
  a.sched_runtime = static_cast<uint64_t>(slice.count());
  if (syscall(SYS_sched_setattr, 0, &a, 0) != 0) {
    return unavailable("Linux " + kernel_release() + " refused a time slice of " +
                       std::to_string(slice.count()) + " ns: " + std::strerror(errno));
  }
  // Kernels before 6.12 accept the call and ignore the slice; they report 0 back.
  PSTRAIN_ASSIGN_OR_RETURN(KernelSchedAttr after, get_attr());
  if (slice.count() > 0 && after.sched_runtime != a.sched_runtime) {
    a = before;
    a.size = sizeof(a);
    a.sched_flags = 0;
    syscall(SYS_sched_setattr, 0, &a, 0);
    return unavailable("Linux " + kernel_release() +
                       " keeps its own time slices (Linux 6.12 and later take requests)");
  }
  return {};
}

Result<std::chrono::nanoseconds> current_time_slice() {
  PSTRAIN_ASSIGN_OR_RETURN(KernelSchedAttr a, get_attr());
  return std::chrono::nanoseconds(static_cast<int64_t>(a.sched_runtime));
}

#else

Status request_time_slice(std::chrono::nanoseconds slice) {
  PSTRAIN_RETURN_IF_ERROR(check_time_slice(slice));
  return unavailable("time-slice requests need Linux's sched_setattr");
}

Result<std::chrono::nanoseconds> current_time_slice() {
  return unavailable("time-slice requests need Linux's sched_setattr");
}

#endif

}  // namespace pstrain
