#include "kernels/cuda/plugin.h"

#include "kernels/cuda/cuda_ops.h"

namespace {

pstrain::Result<std::unique_ptr<pstrain::Ops>> make_ops(int device, bool tf32) {
  return pstrain::make_cuda_ops(device, tf32);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const pstrain::cuda::CudaPlugin*
pstrain_cuda_plugin() {
  static const pstrain::cuda::CudaPlugin plugin{
      .abi = pstrain::cuda::kCudaPluginAbi,
      .version = PSTRAIN_VERSION,
      .query_gpus = &pstrain::cuda::query_gpus,
      .make_ops = &make_ops,
  };
  return &plugin;
}
