// TempDir: a fresh directory under gtest's temporary directory, removed with everything in
// it when the object goes away. With `keep_on_failure`, a failed test keeps it for inspection
// and prints its path and the last kLogTail bytes of each task log in it (*.out, *.err, *.log,
// not recursive), so that a failure in CI, where the directory is gone afterwards, can still be
// read from ctest's output. Thread-safety: one owner.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

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
    if (keep_on_failure_ && ::testing::Test::HasFailure()) {
      print_logs();
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  static constexpr std::streamoff kLogTail = 6000;

  void print_logs() const {
    std::cerr << "kept " << path_ << " (the test failed)\n";
    std::error_code ec;
    std::vector<std::filesystem::path> logs;
    for (const auto& e : std::filesystem::directory_iterator(path_, ec)) {
      const std::string ext = e.path().extension().string();
      if (e.is_regular_file(ec) && (ext == ".out" || ext == ".err" || ext == ".log")) {
        logs.push_back(e.path());
      }
    }
    std::sort(logs.begin(), logs.end());
    for (const auto& log : logs) {
      std::ifstream in(log, std::ios::binary | std::ios::ate);
      const std::streamoff size = in.tellg();
      const std::streamoff from = std::max<std::streamoff>(0, size - kLogTail);
      in.seekg(from);
      std::cerr << "--- " << log.filename().string() << " (" << size << " bytes"
                << (from > 0 ? ", the last " + std::to_string(kLogTail) : std::string()) << ")\n"
                << in.rdbuf() << "\n";
    }
  }

  std::string path_;
  bool keep_on_failure_;
};

}  // namespace pstrain::testing_util
