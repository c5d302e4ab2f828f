// File helpers: atomic writes and directory creation.
//
// Contract: write_file_atomically never leaves a half-written file at `path`: it writes a
// temporary file in the same directory, flushes it, and renames it over `path`. Errors name the
// path and the system error. Thread-safety: safe for distinct paths.
#pragma once

#include <string>

#include "runtime/base/status.h"

namespace pstrain {

Status write_file_atomically(const std::string& path, const std::string& contents);
// Creates `path` and its parents; `what` names the flag or purpose in errors ("--log_dir").
Status make_directories(const std::string& path, const std::string& what);
Result<std::string> read_file(const std::string& path);

}  // namespace pstrain
