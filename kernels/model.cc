#include "kernels/model.h"
#include "runtime/base/check.h"

#include <algorithm>
#include <cmath>

#include "kernels/layers.h"

namespace pstrain {
namespace {

Result<std::vector<std::unique_ptr<Layer>>> build_layers(const ModelOptions& o) {
  if (o.image_rows <= 0 || o.image_cols <= 0 || o.classes <= 1) {
    return invalid_argument("model input must be at least 1x1 pixels and 2 classes");
  }
  const int pixels = o.image_rows * o.image_cols;
  std::vector<std::unique_ptr<Layer>> layers;
  if (o.name == "mlp") {
    if (o.hidden_units <= 0) {
      return invalid_argument("--hidden_units must be positive, got " +
                              std::to_string(o.hidden_units));
    }
    // mnist_replica.py: hid_w ~ truncated_normal(stddev=1/IMAGE_PIXELS) with IMAGE_PIXELS=28,
    // sm_w ~ truncated_normal(stddev=1/sqrt(hidden_units)), zero biases.
    InitSpec hid{InitKind::kTruncatedNormal, 1.0f / static_cast<float>(o.image_rows)};
    InitSpec sm{InitKind::kTruncatedNormal, 1.0f / std::sqrt(static_cast<float>(o.hidden_units))};
    layers.push_back(std::make_unique<DenseLayer>(pixels, o.hidden_units, "hid_w", "hid_b", hid));
    layers.push_back(std::make_unique<ReluLayer>(Shape{o.hidden_units}));
    layers.push_back(std::make_unique<DenseLayer>(o.hidden_units, o.classes, "sm_w", "sm_b", sm));
    return layers;
  }
  if (o.name == "cnn") {
    // TensorFlow's layers tutorial model: conv5x5x32-relu-pool, conv5x5x64-relu-pool,
    // dense 1024-relu, dense classes. Glorot-uniform kernels, zero biases.
    const int h = o.image_rows, w = o.image_cols;
    layers.push_back(std::make_unique<Conv2dLayer>(h, w, 1, 32, 5, "conv1"));
    layers.push_back(std::make_unique<ReluLayer>(Shape{h, w, 32}));
    layers.push_back(std::make_unique<MaxPoolLayer>(h, w, 32));
    const int h2 = h / 2, w2 = w / 2;
    if (h2 < 2 || w2 < 2) return invalid_argument("the cnn model needs images of at least 4x4");
    layers.push_back(std::make_unique<Conv2dLayer>(h2, w2, 32, 64, 5, "conv2"));
    layers.push_back(std::make_unique<ReluLayer>(Shape{h2, w2, 64}));
    layers.push_back(std::make_unique<MaxPoolLayer>(h2, w2, 64));
    const int flat = (h2 / 2) * (w2 / 2) * 64;
    auto glorot = [](int in, int out) { return InitSpec{InitKind::kGlorotUniform, 0.f, in, out}; };
    layers.push_back(
        std::make_unique<DenseLayer>(flat, 1024, "dense/kernel", "dense/bias", glorot(flat, 1024)));
    layers.push_back(std::make_unique<ReluLayer>(Shape{1024}));
    layers.push_back(std::make_unique<DenseLayer>(1024, o.classes, "logits/kernel", "logits/bias",
                                                  glorot(1024, o.classes)));
    return layers;
  }
  return invalid_argument("unknown model '" + o.name + "': choose --model=mlp or --model=cnn");
}

std::vector<VariableSpec> lay_out(const std::vector<std::unique_ptr<Layer>>& layers) {
  std::vector<VariableSpec> vars;
  int64_t offset = 0;
  for (const auto& layer : layers) {
    for (LayerVariable& v : layer->variable_specs()) {
      VariableSpec spec{v.name, v.shape, offset, v.init};
      offset += spec.numel();
      vars.push_back(std::move(spec));
    }
  }
  return vars;
}

}  // namespace

// Per-batch-size memory: acts[0] is the input, acts[i+1] layer i's output; dacts likewise
// (dacts[0] is never needed: the first layer computes no input gradient).
struct Model::Buffers {
  std::vector<Tensor> acts;
  std::vector<Tensor> dacts;
  std::vector<Tensor> scratch;
  std::vector<Tensor> iscratch;
  Tensor labels;
};

Result<std::vector<VariableSpec>> Model::describe(const ModelOptions& options) {
  PSTRAIN_ASSIGN_OR_RETURN(auto layers, build_layers(options));
  return lay_out(layers);
}

Result<std::unique_ptr<Model>> Model::create(const ModelOptions& options, Ops& ops) {
  PSTRAIN_ASSIGN_OR_RETURN(auto layers, build_layers(options));
  std::unique_ptr<Model> m(new Model(options, ops));
  m->layers_ = std::move(layers);
  m->variables_ = lay_out(m->layers_);
  for (const auto& v : m->variables_) m->num_parameters_ += v.numel();
  m->params_ = ops.alloc({m->num_parameters_});
  m->grads_ = ops.alloc({m->num_parameters_});
  m->loss_ = ops.alloc({1});
  m->loss_host_ = ops.alloc_host({1});
  m->input_features_ = m->layers_.front()->in_size();
  m->bind_layers();
  return m;
}

void Model::bind_layers() {
  size_t next = 0;
  layer_offset_.clear();
  layer_end_.clear();
  for (auto& layer : layers_) {
    layer_offset_.push_back(layer->variable_specs().empty() ? -1 : variables_[next].offset);
    int64_t end = layer_end_.empty() ? 0 : layer_end_.back();
    for (size_t i = 0; i < layer->variable_specs().size(); ++i) {
      const VariableSpec& v = variables_[next + i];
      end = std::max(end, v.offset + v.numel());
    }
    layer_end_.push_back(end);
    std::vector<float*> p, g;
    for (size_t i = 0; i < layer->variable_specs().size(); ++i, ++next) {
      p.push_back(params_.f32() + variables_[next].offset);
      g.push_back(grads_.f32() + variables_[next].offset);
    }
    layer->bind(p, g);
  }
}

Status Model::use_gradient_buffer(Tensor grads) {
  if (grads.empty() || grads.device() != grads_.device() || grads.dtype() != DType::kFloat32 ||
      grads.numel() != num_parameters_) {
    return invalid_argument("a gradient buffer of " + std::to_string(grads.numel()) +
                            " values on " + std::string(device_name(grads.device())) +
                            " for a model of " + std::to_string(num_parameters_) +
                            " float32 parameters on " + std::string(device_name(grads_.device())));
  }
  grads_ = std::move(grads);
  bind_layers();
  return {};
}

Model::Model(ModelOptions options, Ops& ops) : options_(std::move(options)), ops_(&ops) {}
Model::~Model() = default;

int64_t Model::forward_macs_per_example() const {
  int64_t macs = 0;
  for (const auto& l : layers_) macs += l->macs_per_example();
  return macs;
}

std::vector<float> Model::initial_parameters(uint64_t seed) const {
  std::vector<float> flat(static_cast<size_t>(num_parameters_));
  for (size_t i = 0; i < variables_.size(); ++i) {
    const VariableSpec& v = variables_[i];
    initialize(v.init, mix_seed(seed, i),
               std::span<float>(flat).subspan(static_cast<size_t>(v.offset),
                                              static_cast<size_t>(v.numel())));
  }
  return flat;
}

Model::Buffers& Model::buffers_for(int n) {
  auto it = buffers_.find(n);
  if (it != buffers_.end()) return *it->second;
  auto b = std::make_unique<Buffers>();
  b->acts.push_back(ops_->alloc({n, input_features_}));
  b->dacts.emplace_back();
  for (const auto& layer : layers_) {
    b->acts.push_back(ops_->alloc({n, layer->out_size()}));
    b->dacts.push_back(ops_->alloc({n, layer->out_size()}));
    const size_t f = layer->scratch_floats(*ops_, n);
    const size_t i = layer->scratch_ints(n);
    b->scratch.push_back(f ? ops_->alloc({static_cast<int64_t>(f)}) : Tensor());
    b->iscratch.push_back(i ? ops_->alloc({static_cast<int64_t>(i)}, DType::kInt32) : Tensor());
  }
  b->labels = ops_->alloc({n}, DType::kInt32);
  return *buffers_.emplace(n, std::move(b)).first->second;
}

void Model::upload_batch(std::span<const float> images, std::span<const int32_t> labels, int n) {
  PSTRAIN_CHECK(images.size() == static_cast<size_t>(n * input_features_));
  PSTRAIN_CHECK(labels.size() == static_cast<size_t>(n));
  Buffers& b = buffers_for(n);
  ops_->copy_to_device(b.acts[0].raw(), images.data(), images.size_bytes());
  ops_->copy_to_device(b.labels.raw(), labels.data(), labels.size_bytes());
  ahead_ = 0;
}

void Model::forward(Buffers& b, int n, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i) {
    layers_[i]->forward(*ops_, b.acts[i].f32(), b.acts[i + 1].f32(), n,
                        b.scratch[i].empty() ? nullptr : b.scratch[i].f32(),
                        b.iscratch[i].empty() ? nullptr : b.iscratch[i].i32());
  }
}

void Model::forward_ahead(int n, int64_t until) {
  if (ahead_n_ != n) ahead_ = 0;
  ahead_n_ = n;
  size_t to = ahead_;
  while (to < layers_.size() && layer_end_[to] <= until) ++to;
  if (to == ahead_) return;
  forward(buffers_for(n), n, ahead_, to);
  ahead_ = to;
}

void Model::forward_backward(int n, GradientsReady* ready) {
  Buffers& b = buffers_for(n);
  forward(b, n, ahead_n_ == n ? ahead_ : 0, layers_.size());
  ahead_ = 0;
  const size_t last = layers_.size();
  ops_->softmax_xent(b.acts[last].f32(), b.labels.i32(), b.dacts[last].f32(), loss_.f32(), n,
                     options_.classes);
  for (size_t i = last; i-- > 0;) {
    float* dx = i == 0 ? nullptr : b.dacts[i].f32();
    layers_[i]->backward(*ops_, b.acts[i].f32(), b.acts[i + 1].f32(), b.dacts[i + 1].f32(), dx, n,
                         b.scratch[i].empty() ? nullptr : b.scratch[i].f32(),
                         b.iscratch[i].empty() ? nullptr : b.iscratch[i].i32());
    if (ready != nullptr && layer_offset_[i] > 0) {
      ops_->synchronize();
      ready->ready(layer_offset_[i]);
    }
  }
}

float Model::read_loss() {
  ops_->copy_to_host(loss_host_.raw(), loss_.raw(), sizeof(float));
  ops_->synchronize();
  return loss_host_.f32()[0];
}

Model::Evaluation Model::evaluate(std::span<const float> images, std::span<const int32_t> labels,
                                  int batch, std::span<int32_t> predicted) {
  const int64_t total = static_cast<int64_t>(labels.size());
  PSTRAIN_CHECK(predicted.empty() || predicted.size() == labels.size());
  std::vector<float> host_logits;
  Evaluation e;
  double loss_sum = 0;
  const size_t last = layers_.size();
  for (int64_t start = 0; start < total; start += batch) {
    const int n = static_cast<int>(std::min<int64_t>(batch, total - start));
    upload_batch(images.subspan(static_cast<size_t>(start * input_features_),
                                static_cast<size_t>(n * input_features_)),
                 labels.subspan(static_cast<size_t>(start), static_cast<size_t>(n)), n);
    Buffers& b = buffers_for(n);
    forward(b, n, 0, layers_.size());
    // The loss into loss_ (its gradient into the logits' gradient buffer, unused here).
    ops_->softmax_xent(b.acts[last].f32(), b.labels.i32(), b.dacts[last].f32(), loss_.f32(), n,
                       options_.classes);
    e.correct += ops_->count_correct(b.acts[last].f32(), b.labels.i32(), n, options_.classes);
    loss_sum += static_cast<double>(read_loss()) * n;  // the batch's mean times its size
    if (!predicted.empty()) {
      const size_t k = static_cast<size_t>(options_.classes);
      host_logits.resize(static_cast<size_t>(n) * k);
      ops_->copy_to_host(host_logits.data(), b.acts[last].raw(),
                         host_logits.size() * sizeof(float));
      ops_->synchronize();
      for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
        const float* row = host_logits.data() + i * k;
        predicted[static_cast<size_t>(start) + i] =
            static_cast<int32_t>(std::max_element(row, row + k) - row);
      }
    }
  }
  e.cross_entropy = total > 0 ? loss_sum / static_cast<double>(total) : 0.0;
  return e;
}

void Model::logits(std::span<const float> images, int n, std::span<float> logits) {
  PSTRAIN_CHECK(images.size() == static_cast<size_t>(n * input_features_));
  PSTRAIN_CHECK(logits.size() == static_cast<size_t>(n) * static_cast<size_t>(options_.classes));
  Buffers& b = buffers_for(n);
  ops_->copy_to_device(b.acts[0].raw(), images.data(), images.size_bytes());
  ahead_ = 0;
  forward(b, n, 0, layers_.size());
  ops_->copy_to_host(logits.data(), b.acts[layers_.size()].raw(), logits.size_bytes());
  ops_->synchronize();
}

}  // namespace pstrain
