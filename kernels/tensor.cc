#include "kernels/tensor.h"
#include "runtime/base/check.h"

#include <cstdlib>
#include <new>
#include <sstream>

namespace pstrain {

const char* device_name(Device d) { return d == Device::kCpu ? "cpu" : "cuda"; }

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32:
      return 4;
    case DType::kInt32:
      return 4;
  }
  return 0;
}

int64_t num_elements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const Shape& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

Tensor::Tensor(Device device, DType dtype, Shape shape, std::shared_ptr<void> memory)
    : device_(device),
      dtype_(dtype),
      shape_(std::move(shape)),
      numel_(num_elements(shape_)),
      memory_(std::move(memory)) {}

float* Tensor::f32() {
  PSTRAIN_CHECK(dtype_ == DType::kFloat32);
  return static_cast<float*>(memory_.get());
}
const float* Tensor::f32() const {
  PSTRAIN_CHECK(dtype_ == DType::kFloat32);
  return static_cast<const float*>(memory_.get());
}
int32_t* Tensor::i32() {
  PSTRAIN_CHECK(dtype_ == DType::kInt32);
  return static_cast<int32_t*>(memory_.get());
}
const int32_t* Tensor::i32() const {
  PSTRAIN_CHECK(dtype_ == DType::kInt32);
  return static_cast<const int32_t*>(memory_.get());
}

std::span<float> Tensor::host_f32() {
  PSTRAIN_CHECK(device_ == Device::kCpu);
  return {f32(), static_cast<size_t>(numel_)};
}
std::span<const float> Tensor::host_f32() const {
  PSTRAIN_CHECK(device_ == Device::kCpu);
  return {f32(), static_cast<size_t>(numel_)};
}

Tensor host_tensor(Shape shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(num_elements(shape)) * dtype_size(dtype);
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (p == nullptr) throw std::bad_alloc();
  return Tensor(Device::kCpu, dtype, std::move(shape), std::shared_ptr<void>(p, std::free));
}

}  // namespace pstrain
