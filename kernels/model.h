// Models: the MLP and the CNN, built from layers that run on any Ops backend.
//
// Contract
// - A model's variables (name, shape) live in one flat float32 vector, in the order
//   variables() lists them, each at its `offset`. Parameters and gradients are flat buffers of
//   the backend's memory with that layout, so a parameter server can place slices of it.
// - forward_backward() overwrites every gradient element (no accumulation across calls).
// - Activation buffers are allocated once per batch size and reused on later calls with that
//   size; nothing is allocated per step.
// - Input images are [n, 28, 28, 1] floats in [0, 1] (row-major, i.e. NHWC), labels int32.
// Thread-safety: a Model is used by one thread at a time (its Ops is not thread-safe).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "kernels/variable.h"
#include "runtime/base/status.h"

namespace pstrain {

struct ModelOptions {
  std::string name = "mlp";  // "mlp" or "cnn"
  int hidden_units = 100;    // MLP hidden layer width
  int image_rows = 28;
  int image_cols = 28;
  int classes = 10;
};

class Layer;

class Model {
 public:
  // The variables of model `options.name` without binding a backend (for parameter servers,
  // placement and tests). Errors name the unknown model or bad option.
  static Result<std::vector<VariableSpec>> describe(const ModelOptions& options);
  static Result<std::unique_ptr<Model>> create(const ModelOptions& options, Ops& ops);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelOptions& options() const { return options_; }
  const std::vector<VariableSpec>& variables() const { return variables_; }
  int64_t num_parameters() const { return num_parameters_; }
  // Multiply-adds of one example's forward pass (for FLOP/s figures).
  int64_t forward_macs_per_example() const;
  Ops& ops() { return *ops_; }

  // Initial values of every variable in the flat layout; deterministic in `seed`.
  std::vector<float> initial_parameters(uint64_t seed) const;

  // Flat buffers of the backend's memory.
  Tensor& parameters() { return params_; }
  Tensor& gradients() { return grads_; }
  // From now on backward writes the gradients into `grads` (the backend's memory, float32,
  // num_parameters() elements; e.g. the shared memory a parameter-server client sends from)
  // instead of the model's own buffer, which is freed; gradients() returns it. Errors
  // (kInvalidArgument) name a device, dtype or size that does not fit.
  Status use_gradient_buffer(Tensor grads);

  // Told by forward_backward() as backward goes, layer by layer from the last: the gradients
  // at flat offsets >= from are final for this call (backward writes no element there again),
  // and synchronized (readable in the gradients' memory). Not told for the first layer's
  // (offset 0): those are final when forward_backward() returns. Overlap: a worker sends each
  // layer's gradients while backward computes the next (ps/client.h push_part()).
  class GradientsReady {
   public:
    virtual void ready(int64_t from) = 0;

   protected:
    ~GradientsReady() = default;
  };
  // Runs forward and backward on a batch already uploaded by upload_batch(); gradients are
  // left in gradients(), and `ready` (when given) is told of each layer's as above. Returns
  // nothing: the mean loss is in the device float loss_slot() (read it with read_loss(), which
  // synchronizes).
  void forward_backward(int n, GradientsReady* ready = nullptr);
  // Overlap of the pull: runs forward on the batch upload_batch() gave for size n through the
  // layers, in order from where the last call stopped, whose variables all lie in the flat
  // parameters [0, until) (a layer without variables goes with the one before it), so that
  // the step's forward can start on the first layers' parameters while the rest still arrive.
  // The next forward_backward(n) goes on from there; the parameters of the layers run must
  // not change before it, or discard_forward_ahead() must be called. upload_batch(),
  // evaluate() and logits() forget what was run.
  void forward_ahead(int n, int64_t until);
  // Forgets the layers forward_ahead() ran (the parameters they read changed): the next
  // forward_backward() runs forward whole.
  void discard_forward_ahead() { ahead_ = 0; }
  // How many layers forward_ahead() has run for the next forward_backward() (tests, logs).
  size_t layers_ahead() const { return ahead_; }
  // Copies a host batch into the model's input buffers for batch size n (stream-ordered).
  void upload_batch(std::span<const float> images, std::span<const int32_t> labels, int n);
  float read_loss();

  // A host data set, in batches of `batch`: the number of correctly classified examples and the
  // mean softmax cross-entropy (0 for no example). Leaves gradients() untouched. When
  // `predicted` is not empty (one element per label) it also gets each example's predicted
  // class, the first largest logit (what count_correct counts), from the same forward pass.
  struct Evaluation {
    int64_t correct = 0;
    double cross_entropy = 0;
  };
  Evaluation evaluate(std::span<const float> images, std::span<const int32_t> labels, int batch,
                      std::span<int32_t> predicted = {});

  // The forward pass alone on a host batch of n images ([n, rows * cols]): the logits
  // [n, classes] into the host span `logits` (synchronizes). Leaves gradients() untouched.
  void logits(std::span<const float> images, int n, std::span<float> logits);

 private:
  struct Buffers;  // activations, their gradients and layer scratch for one batch size
  Model(ModelOptions options, Ops& ops);
  Buffers& buffers_for(int n);
  void bind_layers();  // each layer's variables to their slices of params_ and grads_
  // Forward through layers [from, to).
  void forward(Buffers& b, int n, size_t from, size_t to);

  ModelOptions options_;
  Ops* ops_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<int64_t> layer_offset_;  // per layer: its first variable's offset, -1: none
  std::vector<int64_t> layer_end_;     // per layer: where its variables (or the last's) end
  size_t ahead_ = 0;                   // layers forward_ahead() ran for batch size ahead_n_
  int ahead_n_ = 0;
  std::vector<VariableSpec> variables_;
  int64_t num_parameters_ = 0;
  Tensor params_;
  Tensor grads_;
  Tensor loss_;       // one float, backend memory
  Tensor loss_host_;  // one float, host memory
  std::map<int, std::unique_ptr<Buffers>> buffers_;
  int64_t input_features_ = 0;
};

}  // namespace pstrain
