#include "kernels/layers.h"
#include "runtime/base/check.h"

namespace pstrain {

DenseLayer::DenseLayer(int in, int out, std::string weight_name, std::string bias_name,
                       InitSpec weight_init)
    : in_(in),
      out_(out),
      weight_name_(std::move(weight_name)),
      bias_name_(std::move(bias_name)),
      weight_init_(weight_init) {
  in_shape_ = {in};
  out_shape_ = {out};
}

std::vector<LayerVariable> DenseLayer::variable_specs() const {
  return {{weight_name_, {in_, out_}, weight_init_}, {bias_name_, {out_}, InitSpec{}}};
}

void DenseLayer::bind(const std::vector<float*>& params, const std::vector<float*>& grads) {
  PSTRAIN_CHECK(params.size() == 2 && grads.size() == 2);
  w_ = params[0];
  b_ = params[1];
  dw_ = grads[0];
  db_ = grads[1];
}

void DenseLayer::forward(Ops& ops, const float* x, float* y, int n, float*, int32_t*) {
  ops.dense_forward(x, w_, b_, y, n, in_, out_);
}

void DenseLayer::backward(Ops& ops, const float* x, const float*, const float* dy, float* dx, int n,
                          float*, int32_t*) {
  ops.dense_backward(x, w_, dy, dx, dw_, db_, n, in_, out_);
}

ReluLayer::ReluLayer(Shape shape) {
  in_shape_ = shape;
  out_shape_ = std::move(shape);
}

void ReluLayer::forward(Ops& ops, const float* x, float* y, int n, float*, int32_t*) {
  ops.relu_forward(x, y, n * in_size());
}

void ReluLayer::backward(Ops& ops, const float*, const float* y, const float* dy, float* dx, int n,
                         float*, int32_t*) {
  if (dx != nullptr) ops.relu_backward(y, dy, dx, n * in_size());
}

Conv2dLayer::Conv2dLayer(int h, int w, int c, int k, int ksize, std::string name)
    : h_(h), w_(w), c_(c), k_(k), ksize_(ksize), name_(std::move(name)) {
  in_shape_ = {h, w, c};
  out_shape_ = {h, w, k};
}

std::vector<LayerVariable> Conv2dLayer::variable_specs() const {
  InitSpec glorot{InitKind::kGlorotUniform, 0.f, static_cast<int64_t>(ksize_) * ksize_ * c_,
                  static_cast<int64_t>(ksize_) * ksize_ * k_};
  return {{name_ + "/kernel", {ksize_, ksize_, c_, k_}, glorot},
          {name_ + "/bias", {k_}, InitSpec{}}};
}

void Conv2dLayer::bind(const std::vector<float*>& params, const std::vector<float*>& grads) {
  PSTRAIN_CHECK(params.size() == 2 && grads.size() == 2);
  w_ptr_ = params[0];
  b_ = params[1];
  dw_ = grads[0];
  db_ = grads[1];
}

size_t Conv2dLayer::scratch_floats(const Ops& ops, int n) const {
  return ops.conv2d_workspace_floats(dims(n));
}

int64_t Conv2dLayer::macs_per_example() const {
  return static_cast<int64_t>(h_) * w_ * k_ * ksize_ * ksize_ * c_;
}

void Conv2dLayer::forward(Ops& ops, const float* x, float* y, int n, float* scratch, int32_t*) {
  ops.conv2d_forward(x, w_ptr_, b_, y, scratch, dims(n));
}

void Conv2dLayer::backward(Ops& ops, const float* x, const float*, const float* dy, float* dx,
                           int n, float* scratch, int32_t*) {
  ops.conv2d_backward(x, w_ptr_, dy, dx, dw_, db_, scratch, dims(n));
}

MaxPoolLayer::MaxPoolLayer(int h, int w, int c) : h_(h), w_(w), c_(c) {
  in_shape_ = {h, w, c};
  out_shape_ = {h / 2, w / 2, c};
}

size_t MaxPoolLayer::scratch_ints(int n) const {
  return static_cast<size_t>(n) * static_cast<size_t>(out_size());
}

void MaxPoolLayer::forward(Ops& ops, const float* x, float* y, int n, float*, int32_t* argmax) {
  ops.maxpool2x2_forward(x, y, argmax, dims(n));
}

void MaxPoolLayer::backward(Ops& ops, const float*, const float*, const float* dy, float* dx, int n,
                            float*, int32_t* argmax) {
  if (dx != nullptr) ops.maxpool2x2_backward(dy, argmax, dx, dims(n));
}

}  // namespace pstrain
