// The CPU backend's constructor with the convolution chosen explicitly, for tests and
// benchmarks that compare the two paths. make_cpu_ops(threads) (kernels/ops.h) is
// make_cpu_ops(threads, CpuConv::kDefault).
//
// Contract: kDefault is oneDNN when the build has it (PSTRAIN_ONEDNN) unless the environment
// variable PSTRAIN_CPU_CONV=eigen asks for the Eigen reference (PSTRAIN_CPU_CONV=onednn asks
// for oneDNN; any other value is reported on stderr and ignored). kOnednn in a build without
// oneDNN gives the Eigen path (cpu_ops_have_onednn() says which builds have it). Every other op
// is the Eigen reference either way. description() names the convolution in use.
// Thread-safety: as make_cpu_ops.
#pragma once

#include <memory>

#include "kernels/ops.h"

namespace pstrain {

enum class CpuConv { kDefault, kEigen, kOnednn };

std::unique_ptr<Ops> make_cpu_ops(int threads, CpuConv conv);

// Whether this build has oneDNN's convolution.
bool cpu_ops_have_onednn();

}  // namespace pstrain
