// The CUDA backend as a plugin: the shared object pstrain-cuda.so (kCudaPluginFile), which a
// process loads (dlopen, worker/backend.h) only when it asks for a GPU or lists the GPUs, so
// that a parameter server, a CPU worker and `pstrain --version` never map the CUDA runtime and
// cuBLAS (about 200 MB resident).
//
// Contract: the plugin exports one C symbol, kCudaPluginSymbol, a function returning a pointer
// to a static CudaPlugin that lives as long as the plugin stays loaded (it is never unloaded).
// Both sides exchange C++ objects (GpuQuery, Result<std::unique_ptr<Ops>>), so a loader accepts
// the plugin only when `abi` equals its kCudaPluginAbi and `version` its own PSTRAIN_VERSION:
// both must come from the same build. The functions never throw and are thread-safe; an Ops
// that make_ops returns is used as any Ops (kernels/ops.h) and may be destroyed by the loader.
#pragma once

#include <memory>

#include "kernels/cuda/device_query.h"
#include "kernels/ops.h"
#include "runtime/base/status.h"

namespace pstrain::cuda {

inline constexpr int kCudaPluginAbi = 1;
inline constexpr const char* kCudaPluginSymbol = "pstrain_cuda_plugin";
inline constexpr const char* kCudaPluginFile = "pstrain-cuda.so";

struct CudaPlugin {
  int abi = 0;
  const char* version = "";
  GpuQuery (*query_gpus)() = nullptr;
  Result<std::unique_ptr<Ops>> (*make_ops)(int device, bool tf32) = nullptr;
};

}  // namespace pstrain::cuda

extern "C" const pstrain::cuda::CudaPlugin* pstrain_cuda_plugin();
