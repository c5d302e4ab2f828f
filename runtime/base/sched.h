// Time-slice requests to the Linux scheduler (EEVDF: Linux 6.12 and later take them).
//
// Why: when a parameter server and its workers share cores (the main job runs three processes
// on two), the threads that move a step's messages (the PS's, and ZeroMQ's I/O threads in
// every task) wake while a worker computes. Under EEVDF a waking thread with the default slice
// waits until the running one has had its slice (1.4 ms here), longer than a worker's whole MLP
// step: in a sync job one worker's answer came about 0.55 ms after the other's, step after step.
// A thread that asks for a short slice gets an earlier deadline when it wakes and runs first;
// it needs the CPU for microseconds. The computing threads keep the default slice.
//
// Contract: request_time_slice(slice) asks for `slice` for the calling thread (sched_setattr's
// sched_runtime under SCHED_OTHER); threads it creates afterwards inherit the request.
// request_time_slice(0) returns to the kernel's default; any other slice must lie within the
// kernel's range, kMinTimeSlice to kMaxTimeSlice (else invalid_argument, and the kernel is not
// asked: it would round the request into the range). The thread's policy and nice value
// stay as they were; a thread that is not SCHED_OTHER is left alone (an error says so). It
// fails, changing nothing, where the kernel keeps its own slices (before Linux 6.12, or not
// Linux), naming why: callers treat the request as a hint. current_time_slice() reads the
// calling thread's slice as the kernel reports it (0 where it does not).
// Thread-safety: each call touches the calling thread only.
#pragma once

#include <chrono>

#include "runtime/base/status.h"

namespace pstrain {

inline constexpr std::chrono::microseconds kMinTimeSlice{100};
inline constexpr std::chrono::milliseconds kMaxTimeSlice{100};
// What threads that only move messages ask for: the kernel's minimum.
inline constexpr std::chrono::microseconds kMessageThreadSlice = kMinTimeSlice;

Status request_time_slice(std::chrono::nanoseconds slice);
// The range check of request_time_slice() alone.
Status check_time_slice(std::chrono::nanoseconds slice);
Result<std::chrono::nanoseconds> current_time_slice();

}  // namespace pstrain
