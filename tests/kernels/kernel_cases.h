// Parameter types for the kernel tests' shape tables (conv2d and max-pool), with the PrintTo
// overloads gtest uses to name a failing case. Shared by the CPU op and gradient-check tests.
#pragma once

#include <ostream>

#include "kernels/ops.h"

namespace pstrain {

struct ConvCase {
  Conv2dDims d;
  const char* name;
};
inline void PrintTo(const ConvCase& c, std::ostream* os) {
  *os << c.name << " n=" << c.d.n << " h=" << c.d.h << " w=" << c.d.w << " c=" << c.d.c
      << " k=" << c.d.k << " ksize=" << c.d.ksize;
}

struct PoolCase {
  PoolDims d;
};
inline void PrintTo(const PoolCase& c, std::ostream* os) {
  *os << "n=" << c.d.n << " h=" << c.d.h << " w=" << c.d.w << " c=" << c.d.c;
}

}  // namespace pstrain
