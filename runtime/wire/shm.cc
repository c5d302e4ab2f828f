#include "runtime/wire/shm.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

namespace pstrain {
namespace {

constexpr char kMagic[16] = "pstrain-shm-v1";
constexpr char kMemfdName[] = "pstrain-shm";

std::string errno_text() { return std::strerror(errno); }

}  // namespace

Result<std::shared_ptr<ShmSegment>> ShmSegment::create(uint64_t payload_bytes) {
  const uint64_t size = kShmHeaderBytes + payload_bytes;
  const int fd = memfd_create(kMemfdName, MFD_CLOEXEC);
  if (fd < 0) return unavailable("memfd_create for a shared-memory segment: " + errno_text());
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const std::string why = errno_text();
    close(fd);
    return unavailable("sizing a shared-memory segment to " + std::to_string(size) +
                       " bytes: " + why);
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const std::string why = errno_text();
    close(fd);
    return unavailable("mapping a shared-memory segment of " + std::to_string(size) +
                       " bytes: " + why);
  }
  std::random_device rd;
  const uint64_t token = (uint64_t{rd()} << 32) ^ rd() ^ 1;  // never 0
  auto* base = static_cast<std::byte*>(p);
  std::memcpy(base, kMagic, sizeof kMagic);
  std::memcpy(base + sizeof kMagic, &token, sizeof token);
  return std::shared_ptr<ShmSegment>(
      new ShmSegment(static_cast<uint32_t>(getpid()), fd, fd, token, base, size));
}

Result<std::shared_ptr<ShmSegment>> ShmSegment::attach(uint32_t pid, int fd, uint64_t token) {
  const std::string what = "shared-memory segment of process " + std::to_string(pid) +
                           " (descriptor " + std::to_string(fd) + ")";
  if (pid == 0 || fd < 0) return invalid_argument(what + ": no such process or descriptor");
  const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  char target[256] = {};
  const ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
  if (n < 0) {
    const bool denied = errno == EACCES || errno == EPERM;
    return unavailable(what + ": " + errno_text() +
                       (denied ? " (the worker and the PS must run as the same user)" : ""));
  }
  if (std::string(target, static_cast<size_t>(n)).rfind(std::string("/memfd:") + kMemfdName, 0) !=
      0) {
    return invalid_argument(what + " is not a pstrain segment (it is " +
                            std::string(target, static_cast<size_t>(n)) + ")");
  }
  const int own = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (own < 0) return unavailable(what + ": open " + path + ": " + errno_text());
  struct stat st {};
  if (fstat(own, &st) != 0 || st.st_size < static_cast<off_t>(kShmHeaderBytes)) {
    close(own);
    return invalid_argument(what + " is smaller than its header");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, own, 0);
  if (p == MAP_FAILED) {
    const std::string why = errno_text();
    close(own);
    return unavailable(what + ": mmap: " + why);
  }
  auto* base = static_cast<std::byte*>(p);
  uint64_t found = 0;
  std::memcpy(&found, base + sizeof kMagic, sizeof found);
  if (std::memcmp(base, kMagic, sizeof kMagic) != 0 || found != token) {
    munmap(p, size);
    close(own);
    return invalid_argument(what + ": its magic or token is not the one the request names");
  }
  return std::shared_ptr<ShmSegment>(new ShmSegment(pid, fd, own, token, base, size));
}

ShmSegment::~ShmSegment() {
  munmap(base_, size_);
  close(own_fd_);
}

int peer_pid(int fd) {
  if (fd < 0) return -1;
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) return -1;
  return cred.pid > 0 ? cred.pid : -1;
}

}  // namespace pstrain
