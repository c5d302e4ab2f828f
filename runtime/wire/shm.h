// Shared memory between a worker and a parameter server on one machine (--transport=shm).
//
// Contract
// - A segment is a memfd (memfd_create, "pstrain-shm"): anonymous memory with no name in
//   /dev/shm or anywhere else, freed by the kernel once the last process that maps it or holds
//   its descriptor is gone, however it ends (kill -9 included). Nothing can be left behind.
// - The worker creates it (create()), one per PS, and names it in its requests by
//   (pid, descriptor, token). The PS maps it (attach()) through /proc/<pid>/fd/<fd>, and only
//   for a peer on a Unix socket whose kernel credentials (SO_PEERCRED, peer_pid()) say that
//   pid: a PS never maps memory a peer does not own. attach() also checks that the descriptor
//   is a pstrain memfd and that its first bytes hold the magic and the token, and it takes
//   the size from the file itself, not from the request.
// - Layout: the first kShmHeaderBytes hold the magic and the token; the rest is the caller's
//   (the client puts a request region and a reply region there: ps/client.h).
// - The bytes are shared with another process that may write them at any time: a reader
//   validates what it reads as it would bytes from the network (message.h does: offsets and
//   sizes come from the ZeroMQ header, never from the segment).
// Thread-safety: a ShmSegment is immutable after creation; its bytes are the callers' to
// synchronise (the request/reply order of the ZeroMQ messages does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "runtime/base/status.h"

namespace pstrain {

// Bytes at the start of a segment that hold its magic and token (page-sized, so the payload
// is page-aligned).
inline constexpr uint64_t kShmHeaderBytes = 4096;

class ShmSegment {
 public:
  // A new segment of this process with `payload_bytes` after the header, zero-filled, and a
  // random token. Errors: kUnavailable naming the system call (no memfd, out of memory).
  static Result<std::shared_ptr<ShmSegment>> create(uint64_t payload_bytes);
  // Maps process `pid`'s descriptor `fd`. Errors (kInvalidArgument or
  // kUnavailable, naming the pid and descriptor): not openable (another user, the process is
  // gone), not a pstrain memfd, too small, or the token differs.
  static Result<std::shared_ptr<ShmSegment>> attach(uint32_t pid, int fd, uint64_t token);
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  // The creator's pid and descriptor, as requests name the segment.
  uint32_t pid() const { return pid_; }
  int fd() const { return fd_; }
  uint64_t token() const { return token_; }
  // The whole mapping, header included (offsets in messages count from its start).
  std::span<std::byte> bytes() const { return {base_, size_}; }

 private:
  ShmSegment(uint32_t pid, int fd, int own_fd, uint64_t token, std::byte* base, uint64_t size)
      : pid_(pid), fd_(fd), own_fd_(own_fd), token_(token), base_(base), size_(size) {}
  uint32_t pid_;
  int fd_;      // the creator's descriptor (what requests name)
  int own_fd_;  // this process's descriptor of it
  uint64_t token_;
  std::byte* base_;
  uint64_t size_;
};

// The pid of the process at the other end of connected Unix socket `fd` (SO_PEERCRED); -1 when
// `fd` is not one (a TCP connection, a closed descriptor).
int peer_pid(int fd);

}  // namespace pstrain
