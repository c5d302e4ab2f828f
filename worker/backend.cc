#include "worker/backend.h"

#include <sstream>

#if defined(PSTRAIN_CUDA_PLUGIN)
#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "kernels/cuda/plugin.h"
#endif

namespace pstrain {

#if defined(PSTRAIN_CUDA_PLUGIN)
namespace {

// The CUDA plugin (kernels/cuda/plugin.h) once loaded, or why it could not be.
struct LoadedPlugin {
  const cuda::CudaPlugin* plugin = nullptr;
  std::string path;
  std::string error;
};

// Where the plugin may be: $PSTRAIN_CUDA_PLUGIN alone when set; otherwise beside the running
// binary, installed (<bindir>/PSTRAIN_CUDA_PLUGIN_REL) or in a build tree (../lib/pstrain).
std::vector<std::string> plugin_candidates() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("PSTRAIN_CUDA_PLUGIN"); env != nullptr && *env != '\0') {
    return {env};
  }
  std::vector<std::string> out;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return out;
  for (const fs::path& rel : {fs::path(PSTRAIN_CUDA_PLUGIN_REL), fs::path("../lib/pstrain")}) {
    const std::string path = (exe.parent_path() / rel / cuda::kCudaPluginFile).lexically_normal();
    if (out.empty() || out.back() != path) out.push_back(path);
  }
  return out;
}

LoadedPlugin load_plugin() {
  LoadedPlugin l;
  std::string looked;
  for (const std::string& path : plugin_candidates()) {
    if (!std::filesystem::exists(path)) {
      looked += (looked.empty() ? "" : ", ") + path;
      continue;
    }
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = ::dlerror();
      l.error = "the CUDA plugin " + path + " cannot be loaded (" + (why ? why : "dlopen failed") +
                "): are the CUDA runtime and cuBLAS libraries installed?";
      return l;
    }
    using Entry = const cuda::CudaPlugin* (*)();
    auto entry = reinterpret_cast<Entry>(::dlsym(handle, cuda::kCudaPluginSymbol));
    const cuda::CudaPlugin* p = entry != nullptr ? entry() : nullptr;
    if (p == nullptr || p->abi != cuda::kCudaPluginAbi ||
        std::string(p->version) != PSTRAIN_VERSION) {
      l.error = "the CUDA plugin " + path + " belongs to another pstrain build (version " +
                (p != nullptr ? std::string(p->version) : std::string("unknown")) + ", this is " +
                PSTRAIN_VERSION + "): install pstrain and its plugin together";
      return l;
    }
    l.plugin = p;
    l.path = path;
    return l;
  }
  l.error = std::string("the CUDA plugin ") + cuda::kCudaPluginFile +
            " is not installed beside this pstrain (looked for " + looked +
            "); set PSTRAIN_CUDA_PLUGIN to its path";
  return l;
}

// Loaded on first use (never for a CPU task) and kept for the life of the process.
const LoadedPlugin& cuda_plugin() {
  static const LoadedPlugin loaded = load_plugin();
  return loaded;
}

}  // namespace
#endif

bool cuda_backend_built() {
#if defined(PSTRAIN_CUDA_PLUGIN)
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
#if defined(PSTRAIN_CUDA_PLUGIN)
  const LoadedPlugin& plugin = cuda_plugin();
  if (plugin.plugin == nullptr) {
    choice.warning = "--num_gpus=" + std::to_string(num_gpus) + " but " + plugin.error +
                     "; falling back to the CPU";
    choice.ops = make_cpu_ops(cpu_threads);
    return choice;
  }
  const cuda::GpuQuery q = plugin.plugin->query_gpus();
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
  auto ops = plugin.plugin->make_ops(device, tf32);
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

std::string describe_devices(bool list_gpus) {
  std::ostringstream os;
#if defined(PSTRAIN_CUDA_PLUGIN)
  if (!list_gpus) {
    // The plugin is not loaded for this: --version stays as small as a CPU process.
    os << "CUDA backend: built (" << cuda::kCudaPluginFile
       << ", loaded by the tasks that use a GPU; `pstrain devices` lists the GPUs)\n";
    return os.str();
  }
  const LoadedPlugin& plugin = cuda_plugin();
  if (plugin.plugin == nullptr) {
    os << "CUDA backend: built, but " << plugin.error << "\nGPUs: none; using the CPU\n";
    return os.str();
  }
  const cuda::GpuQuery q = plugin.plugin->query_gpus();
  os << "CUDA backend: built (" << plugin.path << "; runtime " << q.runtime_version / 1000 << "."
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
  (void)list_gpus;
  os << "CUDA backend: not built (configure with nvcc present, or -DPSTRAIN_CUDA=ON)\n";
#endif
  return os.str();
}

}  // namespace pstrain
