// Test helper: runs tests/checkpoint/read_safetensors.py with the test venv's Python (made by
// scripts/test-venv.sh) and returns its JSON (path -> {metadata, tensors: name -> {dtype,
// shape, hex}}). The venv is $PSTRAIN_VENV, else PSTRAIN_TEST_VENV from CMake (<repo>/build-venv).
// Thread-safety: none needed (tests).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/base/status.h"
#include "tests/integration/paths.h"

namespace pstrain::checkpoint {

using testing_util::test_python;

inline std::string hex_of(const void* data, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(digits[p[i] >> 4]);
    s.push_back(digits[p[i] & 15]);
  }
  return s;
}

inline Result<nlohmann::json> read_with_python(const std::vector<std::string>& paths) {
  std::string cmd = "'";
  cmd += test_python();
  cmd += "' '";
  cmd += PSTRAIN_TEST_SOURCE_DIR;
  cmd += "/tests/checkpoint/read_safetensors.py'";
  for (const std::string& p : paths) cmd += " '" + p + "'";
  cmd += " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return unavailable("cannot run " + cmd);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int rc = ::pclose(pipe);
  if (rc != 0) return internal_error("`" + cmd + "` failed (" + std::to_string(rc) + "): " + out);
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) return internal_error("`" + cmd + "` printed no JSON: " + out);
  return j;
}

}  // namespace pstrain::checkpoint
