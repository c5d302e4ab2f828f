#include "kernels/cuda/device_query.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

namespace pstrain::cuda {
namespace {

// Whether the NVIDIA driver's user-space library can be loaded. Without it the CUDA runtime
// reports cudaErrorInsufficientDriver (or cudaErrorNoDevice), which reads as "update your
// driver" on a machine that has none at all.
bool driver_library_present() {
  void* h = dlopen("libcuda.so.1", RTLD_NOLOAD | RTLD_LAZY);
  if (h == nullptr) h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (h == nullptr) return false;
  dlclose(h);
  return true;
}

}  // namespace

GpuQuery query_gpus() {
  GpuQuery q;
  cudaRuntimeGetVersion(&q.runtime_version);
  if (cudaDriverGetVersion(&q.driver_version) != cudaSuccess) q.driver_version = 0;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if ((err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice) &&
        !driver_library_present()) {
      q.no_driver = true;
      q.error = "no NVIDIA driver found (libcuda.so.1 is not installed)";
      cudaGetLastError();
      return q;
    }
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
