// PSTRAIN_CHECK: an always-on check for programmer errors (a broken invariant, a caller that
// violated a documented precondition), in every build type: assert() is compiled out under
// NDEBUG, which Release and RelWithDebInfo define, so it guards nothing in the builds people run.
//
// Contract: PSTRAIN_CHECK(cond) evaluates `cond` once; when it is false, prints
// "pstrain: check failed at FILE:LINE: cond" (plus the optional message) to stderr and aborts.
// PSTRAIN_CHECK(cond, "message") adds the message; it may be any expression convertible to
// std::string_view and is evaluated only on failure. Never use it on bytes from outside the
// process (network, files, flags, environment): those get a Status with a clear message.
// Usable in host code compiled by nvcc (C++17), not in device code.
// Thread-safety: safe from any thread.
#pragma once

#include <string_view>

namespace pstrain::detail {

[[noreturn]] void check_failed(const char* file, int line, const char* condition,
                               std::string_view message);

}  // namespace pstrain::detail

#define PSTRAIN_CHECK_1(cond)                                         \
  do {                                                                \
    if (!(cond)) [[unlikely]] {                                       \
      ::pstrain::detail::check_failed(__FILE__, __LINE__, #cond, {}); \
    }                                                                 \
  } while (false)
#define PSTRAIN_CHECK_2(cond, message)                                       \
  do {                                                                       \
    if (!(cond)) [[unlikely]] {                                              \
      ::pstrain::detail::check_failed(__FILE__, __LINE__, #cond, (message)); \
    }                                                                        \
  } while (false)
#define PSTRAIN_CHECK_PICK(_1, _2, name, ...) name
#define PSTRAIN_CHECK(...) \
  PSTRAIN_CHECK_PICK(__VA_ARGS__, PSTRAIN_CHECK_2, PSTRAIN_CHECK_1, unused)(__VA_ARGS__)
