// Status and Result<T>: how pstrain reports errors that input can cause.
//
// Contract: anything that bytes from the network or disk, flags, or the environment can break
// returns a Status (or a Result<T> holding a value or a Status) whose message names what is
// wrong and what to do. Assertions and aborts are for programmer errors only.
// Thread-safety: values; no shared state.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "runtime/base/check.h"

namespace pstrain {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // bad flag, environment value, or API argument
  kNotFound,          // file or directory missing
  kDataLoss,          // truncated or corrupt file or message
  kUnavailable,       // peer not reachable, address in use
  kDeadlineExceeded,  // a wait ran past its deadline
  kFailedPrecondition,
  kInternal,
  kCancelled,
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return {}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: <message>", or "OK".
  std::string to_string() const;

  // Returns a copy whose message is "<context>: <message>".
  Status with_context(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status data_loss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status deadline_exceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status failed_precondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }

// A value or an error. Access the value only when ok().
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    PSTRAIN_CHECK(!std::get<Status>(v_).ok(), "Result built from an OK status has no value");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace pstrain

// Returns early from a function returning Status (or Result) when `expr` is an error.
#define PSTRAIN_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::pstrain::Status _pstrain_st = (expr);    \
    if (!_pstrain_st.ok()) return _pstrain_st; \
  } while (0)

#define PSTRAIN_CONCAT_INNER(a, b) a##b
#define PSTRAIN_CONCAT(a, b) PSTRAIN_CONCAT_INNER(a, b)
// PSTRAIN_ASSIGN_OR_RETURN(auto x, f()): assigns the value or returns the error.
#define PSTRAIN_ASSIGN_OR_RETURN(decl, expr) \
  PSTRAIN_ASSIGN_OR_RETURN_IMPL(PSTRAIN_CONCAT(_pstrain_r, __LINE__), decl, expr)
#define PSTRAIN_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  decl = std::move(tmp).value()
