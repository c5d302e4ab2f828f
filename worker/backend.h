// Choosing the compute backend for a task: CPU (Eigen) or one GPU (CUDA).
//
// --num_gpus=N (N >= 1) makes task i use GPU i % N, as mnist_replica places its ops; 0 means
// the CPU. When no usable GPU exists (no CUDA backend built, its plugin missing, no driver, no
// device) the task falls back to the CPU with a warning, as TensorFlow's soft placement does.
// The CUDA backend is a plugin (kernels/cuda/plugin.h) that a process loads only when it asks
// for a GPU or lists the GPUs; CPU tasks never map the CUDA libraries.
// Thread-safety: call from one thread.
#pragma once

#include <memory>
#include <string>

#include "kernels/ops.h"
#include "runtime/base/status.h"

namespace pstrain {

struct BackendChoice {
  std::unique_ptr<Ops> ops;
  std::string warning;  // non-empty when the request could not be met as asked (CPU fallback)
};

// `cpu_threads` <= 0: all cores. `tf32` turns on TF32 matrix math on GPUs (opt-in).
Result<BackendChoice> select_backend(int num_gpus, int task_index, bool tf32, int cpu_threads = 0);

// True when this binary was built with the CUDA backend.
bool cuda_backend_built();

// Lines describing the CUDA backend and, with `list_gpus`, the GPUs this process sees (or why
// it sees none) for `pstrain devices`; without, what --version prints, and the CUDA plugin is
// not loaded.
std::string describe_devices(bool list_gpus);

}  // namespace pstrain
