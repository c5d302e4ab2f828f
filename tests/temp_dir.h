// TempDir: a fresh directory under gtest's temporary directory, removed with everything in
// it when the object goes away (kept when `keep_on_failure` and the test failed, for
// inspection). Thread-safety: one owner.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace pstrain::testing_util {

class TempDir {
 public:
  // `prefix` names the test in the directory name, e.g. "pstrain_data".
  explicit TempDir(const std::string& prefix, bool keep_on_failure = false)
      : keep_on_failure_(keep_on_failure) {
    std::string tmpl =
        (std::filesystem::path(::testing::TempDir()) / (prefix + "_XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp(" << tmpl << ") failed";
      return;
    }
    path_ = tmpl;
  }
  ~TempDir() {
    if (path_.empty()) return;
    if (keep_on_failure_ && ::testing::Test::HasFailure()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
  bool keep_on_failure_;
};

}  // namespace pstrain::testing_util
