// tiny_mnist_dir: a data set in MNIST's raw IDX files (train-*/t10k-*), written into `dir` by
// the test: `train` training and 2 test examples of 28x28, every pixel and label 1. For tests
// that run a worker task in this process. Thread-safety: reentrant.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/base/files.h"

namespace pstrain::testing_util {

inline std::string tiny_mnist_dir(const std::string& dir, int train) {
  const auto idx = [&](const std::string& name, std::vector<int> dims) {
    std::string bytes = {0, 0, 0x08, static_cast<char>(dims.size())};
    size_t payload = 1;
    for (int n : dims) {
      for (int shift : {24, 16, 8, 0}) bytes += static_cast<char>((n >> shift) & 0xff);
      payload *= static_cast<size_t>(n);
    }
    bytes.append(payload, '\1');
    EXPECT_TRUE(write_file_atomically(dir + "/" + name, bytes).ok()) << name;
  };
  idx("train-images-idx3-ubyte", {train, 28, 28});
  idx("train-labels-idx1-ubyte", {train});
  idx("t10k-images-idx3-ubyte", {2, 28, 28});
  idx("t10k-labels-idx1-ubyte", {2});
  return dir;
}

}  // namespace pstrain::testing_util
