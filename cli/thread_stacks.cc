// Thread stacks large enough for this executable's static TLS.
//
// With the CUDA backend linked in, cuBLAS and cuBLASLt bring about 110 KiB of static
// thread-local storage, which glibc places at the top of every thread's stack. A library that
// asks for a small stack gets EINVAL from pthread_create: civetweb (the HTTP server behind
// prometheus-cpp's --metrics_port) asks for 100 KiB and could not start a single thread. This
// definition interposes pthread_attr_setstacksize for the whole process (the executable's
// symbol wins over libc's, and the link exports it) and raises a request below kMinStack to
// kMinStack; larger requests and the default stack (8 MiB) are untouched.
#include <dlfcn.h>
#include <pthread.h>

#include <cstddef>

namespace {

constexpr size_t kMinStack = size_t{1} << 20;  // 1 MiB: the TLS above and room to run

using SetStackSize = int (*)(pthread_attr_t*, size_t);

SetStackSize real_set_stack_size() {
  static const SetStackSize real =
      reinterpret_cast<SetStackSize>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  return real;
}

}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) noexcept {
  const SetStackSize real = real_set_stack_size();
  if (real == nullptr) return 22;  // EINVAL: cannot happen with glibc
  return real(attr, size < kMinStack ? kMinStack : size);
}
