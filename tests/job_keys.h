// Job keys for tests: derived from 32 bytes of `fill`, with "secret-<fill>" as the secret
// file's name in messages (no file is written).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "runtime/wire/security.h"

namespace pstrain::testing_util {

inline std::shared_ptr<const JobKeys> keys_of(char fill) {
  auto k = derive_job_keys(std::string(32, fill));
  EXPECT_TRUE(k.ok());
  auto keys = std::make_shared<JobKeys>(std::move(k).value());
  keys->secret_file = std::string("secret-") + fill;
  return keys;
}

}  // namespace pstrain::testing_util
