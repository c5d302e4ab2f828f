// Tensor: a dense float32 or int32 array with a shape, living on one device.
//
// Contract: a Tensor owns its memory through a shared deleter (copies share the memory, as a
// handle would); it is created by a backend (Ops::alloc / Ops::alloc_host) or by host_tensor().
// Layout is row-major; images are NHWC, conv weights HWIO [kh, kw, in, out], dense weights
// [in, out] (TensorFlow's layouts). Thread-safety: a Tensor is a value handle; concurrent
// writes to the same memory need external synchronisation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pstrain {

enum class Device { kCpu, kCuda };
enum class DType { kFloat32, kInt32 };

const char* device_name(Device d);
size_t dtype_size(DType t);

using Shape = std::vector<int64_t>;
int64_t num_elements(const Shape& shape);
// "[100, 28, 28, 1]"
std::string shape_string(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  Tensor(Device device, DType dtype, Shape shape, std::shared_ptr<void> memory);

  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return numel_; }
  size_t bytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  bool empty() const { return memory_ == nullptr; }

  // The shared owner of the memory (keeps it alive, e.g. while a send is in flight).
  std::shared_ptr<const void> memory() const { return memory_; }
  void* raw() { return memory_.get(); }
  const void* raw() const { return memory_.get(); }
  float* f32();
  const float* f32() const;
  int32_t* i32();
  const int32_t* i32() const;

  // Host tensors only: the elements as a span.
  std::span<float> host_f32();
  std::span<const float> host_f32() const;

 private:
  Device device_ = Device::kCpu;
  DType dtype_ = DType::kFloat32;
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<void> memory_;
};

// Plain host memory, 64-byte aligned, contents undefined.
Tensor host_tensor(Shape shape, DType dtype = DType::kFloat32);

}  // namespace pstrain
