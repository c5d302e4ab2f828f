#include "worker/backend.h"

#include <sstream>

#if defined(PSTRAIN_WITH_CUDA)
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device_query.h"
#endif

namespace pstrain {

bool cuda_backend_built() {
#if defined(PSTRAIN_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

Result<BackendChoice> select_backend(int num_gpus, int task_index, bool tf32, int cpu_threads) {
  if (num_gpus < 0) {
    return invalid_argument("--num_gpus must be 0 (CPU) or more, got " + std::to_string(num_gpus));
  }
  BackendChoice choice;
  if (num_gpus == 0) {
    choice.ops = make_cpu_ops(cpu_threads);
    return choice;
  }
#if defined(PSTRAIN_WITH_CUDA)
  const cuda::GpuQuery q = cuda::query_gpus();
  if (q.gpus.empty()) {
    choice.warning = "--num_gpus=" + std::to_string(num_gpus) + " but " + q.error +
                     (q.no_driver ? "; using the CPU" : "; falling back to the CPU");
    choice.ops = make_cpu_ops(cpu_threads);
    return choice;
  }
  int device = task_index % num_gpus;
  if (device >= static_cast<int>(q.gpus.size())) {
    const int visible = static_cast<int>(q.gpus.size());
    choice.warning = "--num_gpus=" + std::to_string(num_gpus) + " asks for GPU " +
                     std::to_string(device) + " but only " + std::to_string(visible) +
                     " are visible; using GPU " + std::to_string(device % visible);
    device %= visible;
  }
  auto ops = make_cuda_ops(device, tf32);
  if (!ops.ok()) {
    choice.warning = "cannot use GPU " + std::to_string(device) + ": " + ops.status().message() +
                     "; falling back to the CPU";
    choice.ops = make_cpu_ops(cpu_threads);
    return choice;
  }
  choice.ops = std::move(ops).value();
  return choice;
#else
  (void)task_index;
  (void)tf32;
  choice.warning = "--num_gpus=" + std::to_string(num_gpus) +
                   " but this pstrain was built without the CUDA backend; falling back to the CPU";
  choice.ops = make_cpu_ops(cpu_threads);
  return choice;
#endif
}

std::string describe_devices() {
  std::ostringstream os;
#if defined(PSTRAIN_WITH_CUDA)
  const cuda::GpuQuery q = cuda::query_gpus();
  os << "CUDA backend: built (runtime " << q.runtime_version / 1000 << "."
     << (q.runtime_version % 1000) / 10 << ", driver ";
  if (q.driver_version > 0) {
    os << q.driver_version / 1000 << "." << (q.driver_version % 1000) / 10 << ")\n";
  } else {
    os << "none)\n";
  }
  if (q.no_driver) {
    os << "GPUs: none; " << q.error << "; using the CPU\n";
  } else if (q.gpus.empty()) {
    os << "GPUs: none (" << q.error << ")\n";
  } else {
    for (const auto& g : q.gpus) {
      os << "GPU " << g.index << ": " << g.name << ", compute capability " << g.compute_major << "."
         << g.compute_minor << ", " << g.multiprocessors << " SMs, "
         << g.total_memory_bytes / (1024 * 1024) << " MiB\n";
    }
  }
#else
  os << "CUDA backend: not built (configure with nvcc present, or -DPSTRAIN_CUDA=ON)\n";
#endif
  return os.str();
}

}  // namespace pstrain
