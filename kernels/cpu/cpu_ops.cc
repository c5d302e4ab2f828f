// CpuOps: the Eigen reference backend of the Ops interface (kernels/ops.h), a thin layer over
// the float instantiations of the kernel templates in kernels/cpu/*.h, with conv2d through
// oneDNN (kernels/cpu/onednn_conv.h) when built with it and chosen (kernels/cpu/cpu_ops.h).
// Memory is plain host memory (host_tensor), copies are memcpy and every op completes before
// it returns.
#include "kernels/cpu/cpu_ops.h"

#include <sched.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/dense.h"
#include "kernels/cpu/maxpool.h"
#include "kernels/cpu/relu.h"
#include "kernels/cpu/softmax_xent.h"
#include "kernels/ops.h"
#if PSTRAIN_HAVE_ONEDNN
#include "kernels/cpu/onednn_conv.h"
#endif

namespace pstrain {
namespace {

class CpuOps final : public Ops {
 public:
  CpuOps(int threads, bool onednn) : threads_(threads) {
#if PSTRAIN_HAVE_ONEDNN
    if (onednn) onednn_ = std::make_unique<cpu::OnednnConv>(threads);
#else
    static_cast<void>(onednn);
#endif
  }

  Device device() const override { return Device::kCpu; }
  std::string description() const override {
    std::string conv;
#if PSTRAIN_HAVE_ONEDNN
    if (onednn_) conv = ", conv " + cpu::OnednnConv::version();
#endif
    return "cpu (Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." +
           std::to_string(EIGEN_MAJOR_VERSION) + "." + std::to_string(EIGEN_MINOR_VERSION) + conv +
           ", " + std::to_string(threads_) + (threads_ == 1 ? " thread)" : " threads)");
  }

  Tensor alloc(Shape shape, DType dtype) override { return host_tensor(std::move(shape), dtype); }
  Tensor alloc_host(Shape shape, DType dtype) override {
    return host_tensor(std::move(shape), dtype);
  }
  void copy_to_device(void* dst, const void* host_src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, host_src, bytes);
  }
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(host_dst, src, bytes);
  }
  void synchronize() override {}

  void dense_forward(const float* x, const float* w, const float* b, float* y, int n, int in,
                     int out) override {
    cpu::dense_forward(x, w, b, y, n, in, out);
  }
  void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                      float* db, int n, int in, int out) override {
    cpu::dense_backward(x, w, dy, dx, dw, db, n, in, out);
  }

  void relu_forward(const float* x, float* y, int64_t count) override {
    cpu::relu_forward(x, y, count);
  }
  void relu_backward(const float* y, const float* dy, float* dx, int64_t count) override {
    cpu::relu_backward(y, dy, dx, count);
  }

  // oneDNN keeps its own buffers per shape (no workspace).
  size_t conv2d_workspace_floats(const Conv2dDims& d) const override {
#if PSTRAIN_HAVE_ONEDNN
    if (onednn_) return 0;
#endif
    return cpu::conv2d_workspace_floats(d);
  }
  void conv2d_forward(const float* x, const float* w, const float* b, float* y, float* workspace,
                      const Conv2dDims& d) override {
#if PSTRAIN_HAVE_ONEDNN
    if (onednn_) return onednn_->forward(x, w, b, y, d);
#endif
    cpu::conv2d_forward(x, w, b, y, workspace, d);
  }
  void conv2d_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                       float* db, float* workspace, const Conv2dDims& d) override {
#if PSTRAIN_HAVE_ONEDNN
    if (onednn_) return onednn_->backward(x, w, dy, dx, dw, db, d);
#endif
    cpu::conv2d_backward(x, w, dy, dx, dw, db, workspace, d);
  }

  void maxpool2x2_forward(const float* x, float* y, int32_t* argmax, const PoolDims& d) override {
    cpu::maxpool2x2_forward(x, y, argmax, d);
  }
  void maxpool2x2_backward(const float* dy, const int32_t* argmax, float* dx,
                           const PoolDims& d) override {
    cpu::maxpool2x2_backward(dy, argmax, dx, d);
  }

  void softmax_xent(const float* logits, const int32_t* labels, float* dlogits, float* loss, int n,
                    int k) override {
    cpu::softmax_xent(logits, labels, dlogits, loss, n, k);
  }
  int64_t count_correct(const float* logits, const int32_t* labels, int n, int k) override {
    return cpu::count_correct(logits, labels, n, k);
  }

  void optimizer_update(const OptimizerConfig& config, float* param, const float* grad,
                        float* slot0, float* slot1, int64_t count, int64_t t) override {
    const size_t n = static_cast<size_t>(count);
    const int slots = optimizer_slot_count(config.kind);
    apply_update(config, {param, n}, {grad, n}, {slot0, slots > 0 ? n : 0},
                 {slot1, slots > 1 ? n : 0}, t);
  }

 private:
  int threads_;
#if PSTRAIN_HAVE_ONEDNN
  std::unique_ptr<cpu::OnednnConv> onednn_;  // null: the Eigen convolution
#endif
};

// Cores this process may run on (its CPU affinity, as taskset or a container's cpuset sets it).
int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// kDefault resolved: PSTRAIN_CPU_CONV, else oneDNN when built with it.
CpuConv default_conv() {
  const char* v = std::getenv("PSTRAIN_CPU_CONV");
  if (v != nullptr && *v != '\0') {
    const std::string s(v);
    if (s == "eigen") return CpuConv::kEigen;
    if (s == "onednn") return CpuConv::kOnednn;
    std::cerr << "pstrain: PSTRAIN_CPU_CONV=" << s
              << " is not a CPU convolution (eigen or onednn); using the default\n";
  }
  return cpu_ops_have_onednn() ? CpuConv::kOnednn : CpuConv::kEigen;
}

}  // namespace

bool cpu_ops_have_onednn() {
#if PSTRAIN_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Ops> make_cpu_ops(int threads, CpuConv conv) {
  if (threads <= 0) threads = available_cores();
  if (conv == CpuConv::kDefault) conv = default_conv();
  cpu::set_num_threads(threads);  // the kernels' pool (process-wide)
  return std::make_unique<CpuOps>(threads, conv == CpuConv::kOnednn && cpu_ops_have_onednn());
}

std::unique_ptr<Ops> make_cpu_ops(int threads) { return make_cpu_ops(threads, CpuConv::kDefault); }

}  // namespace pstrain
