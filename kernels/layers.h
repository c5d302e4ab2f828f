// Layers: the building blocks of the models, each a thin shell over Ops calls.
//
// Contract: a layer maps a batch of n per-example inputs of in_shape() to outputs of
// out_shape(). Variables it owns are declared by variable_specs() (names relative to the
// layer) and bound to pointers into the model's flat parameter and gradient buffers by
// bind(). forward() and backward() write every element of their outputs; backward() skips dx
// when it is null. Scratch memory of scratch_floats(n)/scratch_ints(n) elements comes from the
// model, allocated once per batch size. Thread-safety: used by one thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/init.h"
#include "kernels/ops.h"

namespace pstrain {

struct LayerVariable {
  std::string name;
  Shape shape;
  InitSpec init;
};

class Layer {
 public:
  virtual ~Layer() = default;
  const Shape& in_shape() const { return in_shape_; }
  const Shape& out_shape() const { return out_shape_; }
  int64_t in_size() const { return num_elements(in_shape_); }
  int64_t out_size() const { return num_elements(out_shape_); }

  virtual std::vector<LayerVariable> variable_specs() const { return {}; }
  // params[i] / grads[i] point at variable i of variable_specs() in the flat buffers.
  virtual void bind(const std::vector<float*>& /*params*/, const std::vector<float*>& /*grads*/) {}
  virtual size_t scratch_floats(const Ops& /*ops*/, int /*n*/) const { return 0; }
  virtual size_t scratch_ints(int /*n*/) const { return 0; }
  // Multiply-adds per example in the forward pass.
  virtual int64_t macs_per_example() const { return 0; }

  virtual void forward(Ops& ops, const float* x, float* y, int n, float* scratch,
                       int32_t* iscratch) = 0;
  virtual void backward(Ops& ops, const float* x, const float* y, const float* dy, float* dx, int n,
                        float* scratch, int32_t* iscratch) = 0;

 protected:
  Shape in_shape_;
  Shape out_shape_;
};

class DenseLayer final : public Layer {
 public:
  // Variables "<prefix>w"/"<prefix>b" style names are given explicitly (mnist_replica uses
  // hid_w/hid_b, TensorFlow layers use dense/kernel, dense/bias).
  DenseLayer(int in, int out, std::string weight_name, std::string bias_name, InitSpec weight_init);
  std::vector<LayerVariable> variable_specs() const override;
  void bind(const std::vector<float*>& params, const std::vector<float*>& grads) override;
  int64_t macs_per_example() const override { return static_cast<int64_t>(in_) * out_; }
  void forward(Ops& ops, const float* x, float* y, int n, float*, int32_t*) override;
  void backward(Ops& ops, const float* x, const float* y, const float* dy, float* dx, int n, float*,
                int32_t*) override;

 private:
  int in_, out_;
  std::string weight_name_, bias_name_;
  InitSpec weight_init_;
  float *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
};

class ReluLayer final : public Layer {
 public:
  explicit ReluLayer(Shape shape);
  void forward(Ops& ops, const float* x, float* y, int n, float*, int32_t*) override;
  void backward(Ops& ops, const float* x, const float* y, const float* dy, float* dx, int n, float*,
                int32_t*) override;
};

// 2-D convolution, stride 1, SAME padding; input [h, w, c] -> [h, w, k].
class Conv2dLayer final : public Layer {
 public:
  Conv2dLayer(int h, int w, int c, int k, int ksize, std::string name);
  std::vector<LayerVariable> variable_specs() const override;
  void bind(const std::vector<float*>& params, const std::vector<float*>& grads) override;
  size_t scratch_floats(const Ops& ops, int n) const override;
  int64_t macs_per_example() const override;
  void forward(Ops& ops, const float* x, float* y, int n, float* scratch, int32_t*) override;
  void backward(Ops& ops, const float* x, const float* y, const float* dy, float* dx, int n,
                float* scratch, int32_t*) override;

 private:
  Conv2dDims dims(int n) const { return {n, h_, w_, c_, k_, ksize_}; }
  int h_, w_, c_, k_, ksize_;
  std::string name_;
  float *w_ptr_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
};

// 2x2 max-pool, stride 2: [h, w, c] -> [h/2, w/2, c].
class MaxPoolLayer final : public Layer {
 public:
  MaxPoolLayer(int h, int w, int c);
  size_t scratch_ints(int n) const override;
  void forward(Ops& ops, const float* x, float* y, int n, float*, int32_t* argmax) override;
  void backward(Ops& ops, const float* x, const float* y, const float* dy, float* dx, int n, float*,
                int32_t* argmax) override;

 private:
  PoolDims dims(int n) const { return {n, h_, w_, c_}; }
  int h_, w_, c_;
};

}  // namespace pstrain
