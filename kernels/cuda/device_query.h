// GPU discovery for the CUDA backend: what `pstrain --version` and backend selection see.
//
// Contract: never aborts; with no driver or no GPU, `gpus` is empty and `error` says why
// ("no NVIDIA driver found ..." and `no_driver` where libcuda.so.1 is not installed at all).
// Thread-safety: safe to call from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace pstrain::cuda {

struct GpuInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  size_t total_memory_bytes = 0;
  int multiprocessors = 0;
};

struct GpuQuery {
  std::vector<GpuInfo> gpus;
  int runtime_version = 0;  // e.g. 13000
  int driver_version = 0;   // 0 when no driver is loaded
  std::string error;        // why no GPU is usable, when gpus is empty
  bool no_driver = false;   // no NVIDIA driver at all (libcuda.so.1 cannot be loaded)
};

GpuQuery query_gpus();

}  // namespace pstrain::cuda
