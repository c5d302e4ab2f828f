#include "kernels/cuda/device_query.h"

#include <cuda_runtime.h>

namespace pstrain::cuda {

GpuQuery query_gpus() {
  GpuQuery q;
  cudaRuntimeGetVersion(&q.runtime_version);
  if (cudaDriverGetVersion(&q.driver_version) != cudaSuccess) q.driver_version = 0;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    q.error = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return q;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuInfo g;
    g.index = i;
    g.name = prop.name;
    g.compute_major = prop.major;
    g.compute_minor = prop.minor;
    g.total_memory_bytes = prop.totalGlobalMem;
    g.multiprocessors = prop.multiProcessorCount;
    q.gpus.push_back(g);
  }
  if (q.gpus.empty()) q.error = "the CUDA runtime reports no GPU";
  return q;
}

}  // namespace pstrain::cuda
