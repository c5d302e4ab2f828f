// VariableSpec: one model variable's name, shape, place in the flat parameter vector and
// initialiser. Models produce them (kernels/model.h); placement (ps/placement.h) and parameter
// servers consume them without depending on the models, the layers or any backend.
//
// Contract: `offset` is the first element of the variable in the flat float32 vector; the
// variable covers [offset, offset + numel()). Thread-safety: a value.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/init.h"
#include "kernels/tensor.h"

namespace pstrain {

struct VariableSpec {
  std::string name;  // e.g. "hid_w", "conv1/kernel"
  Shape shape;
  int64_t offset = 0;  // into the flat parameter vector
  InitSpec init;
  int64_t numel() const { return num_elements(shape); }
};

}  // namespace pstrain
