// Uses an installed pstrain: picks the CPU backend (pstrain::worker), builds the MLP on it
// (pstrain::kernels) and reports through Status (pstrain::base). Prints one line the install
// test checks.
#include <cstdio>

#include "kernels/model.h"
#include "runtime/base/status.h"
#include "worker/backend.h"

int main() {
  auto backend = pstrain::select_backend(/*num_gpus=*/0, /*task_index=*/0, /*tf32=*/false,
                                         /*cpu_threads=*/1);
  if (!backend.ok()) {
    std::fprintf(stderr, "select_backend: %s\n", backend.status().message().c_str());
    return 1;
  }
  pstrain::ModelOptions options;  // the MLP: 784 -> 100 -> 10
  auto model = pstrain::Model::create(options, *backend->ops);
  if (!model.ok()) {
    std::fprintf(stderr, "Model::create: %s\n", model.status().message().c_str());
    return 1;
  }
  std::printf("consumer: model %s has %lld parameters on %s\n", options.name.c_str(),
              static_cast<long long>(model.value()->num_parameters()),
              backend->ops->description().c_str());
  return 0;
}
