#include "kernels/model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <utility>

namespace pstrain {
namespace {

TEST(Model, MlpVariablesMatchMnistReplica) {
  auto vars = Model::describe(ModelOptions{"mlp", 100});
  ASSERT_TRUE(vars.ok()) << vars.status().to_string();
  ASSERT_EQ(vars->size(), 4u);
  EXPECT_EQ((*vars)[0].name, "hid_w");
  EXPECT_EQ((*vars)[0].shape, (Shape{784, 100}));
  EXPECT_EQ((*vars)[1].name, "hid_b");
  EXPECT_EQ((*vars)[2].name, "sm_w");
  EXPECT_EQ((*vars)[2].shape, (Shape{100, 10}));
  EXPECT_EQ((*vars)[3].name, "sm_b");
  int64_t offset = 0;
  for (const auto& v : *vars) {
    EXPECT_EQ(v.offset, offset) << v.name;
    offset += v.numel();
  }
  EXPECT_EQ(offset, 784 * 100 + 100 + 100 * 10 + 10);
}

TEST(Model, CnnVariables) {
  auto vars = Model::describe(ModelOptions{"cnn"});
  ASSERT_TRUE(vars.ok()) << vars.status().to_string();
  ASSERT_EQ(vars->size(), 8u);
  EXPECT_EQ((*vars)[0].name, "conv1/kernel");
  EXPECT_EQ((*vars)[0].shape, (Shape{5, 5, 1, 32}));
  EXPECT_EQ((*vars)[2].shape, (Shape{5, 5, 32, 64}));
  EXPECT_EQ((*vars)[4].name, "dense/kernel");
  EXPECT_EQ((*vars)[4].shape, (Shape{7 * 7 * 64, 1024}));
  EXPECT_EQ((*vars)[6].shape, (Shape{1024, 10}));
}

TEST(Model, UnknownModelAndBadHiddenUnitsAreErrors) {
  auto bad = Model::describe(ModelOptions{"resnet"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("resnet"), std::string::npos);
  EXPECT_NE(bad.status().message().find("mlp"), std::string::npos);
  auto zero = Model::describe(ModelOptions{"mlp", 0});
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("--hidden_units"), std::string::npos);
}

TEST(Model, InitialParametersFollowMnistReplica) {
  auto ops = make_cpu_ops(1);
  auto model = Model::create(ModelOptions{"mlp", 100}, *ops);
  ASSERT_TRUE(model.ok());
  const auto p1 = (*model)->initial_parameters(7);
  const auto p2 = (*model)->initial_parameters(7);
  const auto p3 = (*model)->initial_parameters(8);
  EXPECT_EQ(p1, p2);
  EXPECT_NE(p1, p3);
  const auto& vars = (*model)->variables();
  // hid_w: truncated normal, stddev 1/28: all within 2 stddev, sample stddev near
  // 0.8796 / 28 (the stddev of a normal truncated at 2 sigma).
  double sum = 0, sq = 0;
  const int64_t n = vars[0].numel();
  for (int64_t i = 0; i < n; ++i) {
    const double v = p1[static_cast<size_t>(i)];
    EXPECT_LE(std::abs(v), 2.0 / 28 + 1e-7);
    sum += v;
    sq += v * v;
  }
  const double mean = sum / n;
  const double sd = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_NEAR(sd, 0.8796 / 28, 0.001);
  for (int64_t i = 0; i < vars[1].numel(); ++i) {
    EXPECT_EQ(p1[static_cast<size_t>(vars[1].offset + i)], 0.f);
  }
  // sm_w: bound 2 / sqrt(100).
  for (int64_t i = 0; i < vars[2].numel(); ++i) {
    EXPECT_LE(std::abs(p1[static_cast<size_t>(vars[2].offset + i)]), 0.2f + 1e-7f);
  }
}

// Loss of the model at parameters `p` on the uploaded batch.
float loss_at(Model& m, const std::vector<float>& p, int n) {
  m.ops().copy_to_device(m.parameters().raw(), p.data(), p.size() * sizeof(float));
  m.forward_backward(n);
  return m.read_loss();
}

void check_model_gradient(const ModelOptions& options) {
  auto ops = make_cpu_ops(1);
  auto created = Model::create(options, *ops);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  Model& m = **created;
  const int n = 3;
  const int64_t features = static_cast<int64_t>(options.image_rows) * options.image_cols;
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> images(static_cast<size_t>(n * features));
  for (float& v : images) v = u(gen);
  std::vector<int32_t> labels = {1, 0, 2};
  m.upload_batch(images, labels, n);
  std::vector<float> p = m.initial_parameters(5);
  // Non-zero biases so that their gradients matter.
  for (const auto& v : m.variables()) {
    if (v.shape.size() == 1) {
      for (int64_t i = 0; i < v.numel(); ++i) p[static_cast<size_t>(v.offset + i)] = 0.1f * u(gen);
    }
  }
  loss_at(m, p, n);
  std::vector<float> grad(p.size());
  m.ops().copy_to_host(grad.data(), m.gradients().raw(), grad.size() * sizeof(float));
  m.ops().synchronize();
  // Central differences on a sample of coordinates of every variable.
  std::uniform_int_distribution<int64_t> pick;
  for (const auto& v : m.variables()) {
    for (int trial = 0; trial < 6; ++trial) {
      const size_t i = static_cast<size_t>(v.offset + pick(gen) % v.numel());
      const float h = 1e-3f;
      std::vector<float> q = p;
      q[i] = p[i] + h;
      const double up = loss_at(m, q, n);
      q[i] = p[i] - h;
      const double down = loss_at(m, q, n);
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(grad[i], numeric, 1e-3 + 0.05 * std::abs(numeric))
          << options.name << " " << v.name << "[" << i - static_cast<size_t>(v.offset) << "]";
    }
  }
}

TEST(Model, MlpGradientMatchesFiniteDifferences) {
  ModelOptions o{"mlp", 6};
  o.image_rows = 5;
  o.image_cols = 4;
  o.classes = 3;
  check_model_gradient(o);
}

TEST(Model, CnnGradientMatchesFiniteDifferences) {
  ModelOptions o{"cnn"};
  o.image_rows = 8;
  o.image_cols = 8;
  o.classes = 3;
  check_model_gradient(o);
}

TEST(Model, SgdOnOneBatchLowersTheLoss) {
  auto ops = make_cpu_ops(1);
  ModelOptions o{"mlp", 16};
  o.image_rows = 6;
  o.image_cols = 6;
  o.classes = 4;
  auto created = Model::create(o, *ops);
  ASSERT_TRUE(created.ok());
  Model& m = **created;
  const int n = 8;
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> images(static_cast<size_t>(n * 36));
  for (float& v : images) v = u(gen);
  std::vector<int32_t> labels = {0, 1, 2, 3, 0, 1, 2, 3};
  m.upload_batch(images, labels, n);
  std::vector<float> p = m.initial_parameters(1);
  ops->copy_to_device(m.parameters().raw(), p.data(), p.size() * 4);
  m.forward_backward(n);
  const float first = m.read_loss();
  OptimizerConfig sgd{OptimizerKind::kSgd, 0.5f};
  for (int step = 1; step <= 100; ++step) {
    m.forward_backward(n);
    ops->optimizer_update(sgd, m.parameters().f32(), m.gradients().f32(), nullptr, nullptr,
                          m.num_parameters(), step);
  }
  m.forward_backward(n);
  EXPECT_LT(m.read_loss(), 0.2f * first);
  EXPECT_EQ(m.evaluate(images, labels, 3).correct, n);
}

// A model `name` (mlp, cnn) of 16 hidden units on 8x8 images on the CPU backend: small
// enough for exact checks. `model` is null (and the test has failed) if it cannot be made.
struct SmallModel {
  explicit SmallModel(const char* name) : ops(make_cpu_ops(1)) {
    ModelOptions o{name, 16};
    o.image_rows = 8;
    o.image_cols = 8;
    auto created = Model::create(o, *ops);
    EXPECT_TRUE(created.ok()) << created.status().to_string();
    if (created.ok()) model = std::move(created).value();
  }
  std::unique_ptr<Ops> ops;
  std::unique_ptr<Model> model;
};

// Model::GradientsReady, what --overlap sends by: each report comes after the layers behind
// it are done, from the last layer to the second, and what it calls final does not change
// before forward_backward() returns (a second step's gradients differ, so a report made too
// early would show the first step's values).
TEST(Model, BackwardReportsEachLayersGradientsOnceTheyAreFinal) {
  struct Recorder final : Model::GradientsReady {
    Model* model = nullptr;
    std::vector<int64_t> froms;
    std::vector<std::vector<float>> values;
    void ready(int64_t from) override {
      froms.push_back(from);
      const float* g = model->gradients().f32();
      std::vector<float>& v = values.emplace_back();
      v.assign(g + from, g + model->num_parameters());
    }
  };
  for (const char* name : {"mlp", "cnn"}) {
    SCOPED_TRACE(name);
    SmallModel small(name);
    ASSERT_NE(small.model, nullptr);
    Ops* ops = small.ops.get();
    Model& m = *small.model;
    const int n = 4;
    std::mt19937 gen(3);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    std::vector<float> images(static_cast<size_t>(n * 64));
    std::vector<int32_t> labels = {0, 1, 2, 3};
    std::vector<float> p = m.initial_parameters(1);
    ops->copy_to_device(m.parameters().raw(), p.data(), p.size() * 4);
    for (int step = 0; step < 2; ++step) {
      for (float& v : images) v = u(gen);
      m.upload_batch(images, labels, n);
      Recorder r;
      r.model = &m;
      m.forward_backward(n, &r);
      ops->synchronize();
      // One report per layer with variables but the first: the MLP's softmax layer; the
      // CNN's logits, dense and second convolution, each at its first variable.
      std::vector<int64_t> layer_starts;
      for (const VariableSpec& v : m.variables()) {
        if (v.offset > 0 && (v.name.ends_with("kernel") || v.name.ends_with("_w"))) {
          layer_starts.push_back(v.offset);
        }
      }
      std::reverse(layer_starts.begin(), layer_starts.end());
      EXPECT_EQ(r.froms, layer_starts);
      const float* g = m.gradients().f32();
      for (size_t k = 0; k < r.froms.size(); ++k) {
        const auto from = static_cast<size_t>(r.froms[k]);
        for (size_t j = 0; j < r.values[k].size(); ++j) {
          ASSERT_EQ(r.values[k][j], g[from + j]) << "report " << k << " element " << from + j;
        }
      }
    }
  }
}

// Model::forward_ahead(), what the pull's overlap runs while the rest of the parameters
// arrive: forward in pieces, each as far as the parameters given reach, and then
// forward_backward() gives the same loss and gradients to the bit as forward_backward() alone;
// a piece run on parameters that then change is forgotten by discard_forward_ahead() (and,
// kept, would give other gradients: the pieces are what forward_backward() goes on from).
TEST(Model, ForwardAheadInPiecesGivesTheSameBitsAsOneForward) {
  for (const char* name : {"mlp", "cnn"}) {
    SCOPED_TRACE(name);
    SmallModel small(name);
    ASSERT_NE(small.model, nullptr);
    Ops* ops = small.ops.get();
    Model& m = *small.model;
    const int n = 4;
    const size_t count = static_cast<size_t>(m.num_parameters());
    std::mt19937 gen(5);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    std::vector<float> images(static_cast<size_t>(n * 64));
    for (float& v : images) v = u(gen);
    const std::vector<int32_t> labels = {0, 1, 2, 3};
    const std::vector<float> p = m.initial_parameters(1);
    const auto set_parameters = [&](const std::vector<float>& values) {
      ops->copy_to_device(m.parameters().raw(), values.data(), values.size() * sizeof(float));
    };
    const auto gradients = [&] {
      ops->synchronize();
      return std::vector<float>(m.gradients().f32(), m.gradients().f32() + count);
    };
    set_parameters(p);
    m.upload_batch(images, labels, n);
    m.forward_backward(n);
    const float loss = m.read_loss();
    const std::vector<float> expected = gradients();

    // Every variable's end in turn, then all: each piece runs the layers it completes.
    std::vector<int64_t> ends;
    for (const VariableSpec& v : m.variables()) ends.push_back(v.offset + v.numel());
    m.upload_batch(images, labels, n);
    m.forward_ahead(n, 0);
    size_t ran = m.layers_ahead();
    for (int64_t end : ends) {
      m.forward_ahead(n, end);
      EXPECT_GE(m.layers_ahead(), ran);
      ran = m.layers_ahead();
    }
    EXPECT_GT(ran, 1u);  // more than one layer had run before forward_backward()
    m.forward_backward(n);
    EXPECT_EQ(m.layers_ahead(), 0u);
    EXPECT_EQ(m.read_loss(), loss);
    std::vector<float> got = gradients();
    for (size_t i = 0; i < count; ++i) ASSERT_EQ(got[i], expected[i]) << "element " << i;

    // Pieces run on other parameters: forgotten, the same bits again; kept, others.
    std::vector<float> other = p;
    for (float& v : other) v *= 1.5f;
    for (bool discard : {true, false}) {
      SCOPED_TRACE(discard ? "discarded" : "kept");
      m.upload_batch(images, labels, n);
      set_parameters(other);
      m.forward_ahead(n, ends.back());
      EXPECT_GT(m.layers_ahead(), 0u);
      set_parameters(p);
      if (discard) m.discard_forward_ahead();
      m.forward_backward(n);
      got = gradients();
      if (discard) {
        EXPECT_EQ(m.read_loss(), loss);
        for (size_t i = 0; i < count; ++i) ASSERT_EQ(got[i], expected[i]) << "element " << i;
      } else {
        EXPECT_NE(got, expected);
      }
    }
  }
}

TEST(Model, EvaluateGivesTheMeanCrossEntropyOverBatchesOfAnySize) {
  auto ops = make_cpu_ops(1);
  ModelOptions o{"mlp", 16};
  o.image_rows = 6;
  o.image_cols = 6;
  o.classes = 4;
  auto created = Model::create(o, *ops);
  ASSERT_TRUE(created.ok());
  Model& m = **created;
  const int n = 7;
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> images(static_cast<size_t>(n * 36));
  for (float& v : images) v = u(gen);
  std::vector<int32_t> labels = {0, 1, 2, 3, 0, 1, 2};
  const std::vector<float> p = m.initial_parameters(2);
  ops->copy_to_device(m.parameters().raw(), p.data(), p.size() * 4);
  // The reference: the mean loss of the whole set as one batch, from forward_backward.
  m.upload_batch(images, labels, n);
  m.forward_backward(n);
  const double whole = m.read_loss();
  const int64_t correct = m.evaluate(images, labels, n).correct;  // one batch
  std::vector<float> grads_before(p.size());
  ops->copy_to_host(grads_before.data(), m.gradients().raw(), grads_before.size() * 4);
  ops->synchronize();
  for (int batch : {1, 3, 7, 100}) {
    const Model::Evaluation e = m.evaluate(images, labels, batch);
    EXPECT_NEAR(e.cross_entropy, whole, 1e-5 * whole) << "batch " << batch;
    EXPECT_EQ(e.correct, correct) << "batch " << batch;
  }
  std::vector<float> grads_after(p.size());
  ops->copy_to_host(grads_after.data(), m.gradients().raw(), grads_after.size() * 4);
  ops->synchronize();
  EXPECT_EQ(grads_after, grads_before);  // evaluation leaves the gradients alone
  EXPECT_EQ(m.evaluate({}, {}, 4).cross_entropy, 0.0);
}

TEST(Model, LogitsAndPredictedClassesMatchEvaluate) {
  auto ops = make_cpu_ops(1);
  ModelOptions o{"cnn", 0};
  o.image_rows = 8;
  o.image_cols = 8;
  o.classes = 5;
  auto created = Model::create(o, *ops);
  ASSERT_TRUE(created.ok());
  Model& m = **created;
  const int n = 9;
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> images(static_cast<size_t>(n * 64));
  for (float& v : images) v = u(gen);
  std::vector<int32_t> labels = {0, 1, 2, 3, 4, 0, 1, 2, 3};
  const std::vector<float> p = m.initial_parameters(4);
  ops->copy_to_device(m.parameters().raw(), p.data(), p.size() * 4);
  std::vector<float> logits(static_cast<size_t>(n * 5), -1e30f);
  m.logits(images, n, logits);
  std::vector<int32_t> argmax(static_cast<size_t>(n));
  int64_t correct = 0;
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    const auto row = logits.begin() + static_cast<std::ptrdiff_t>(i * 5);
    argmax[i] = static_cast<int32_t>(std::max_element(row, row + 5) - row);
    correct += argmax[i] == labels[i] ? 1 : 0;
    for (size_t j = 0; j < 5; ++j) EXPECT_GT(logits[i * 5 + j], -1e29f) << "not written";
  }
  for (int batch : {2, 9}) {
    std::vector<int32_t> predicted(static_cast<size_t>(n), -1);
    const Model::Evaluation e = m.evaluate(images, labels, batch, predicted);
    EXPECT_EQ(predicted, argmax) << "batch " << batch;
    EXPECT_EQ(e.correct, correct) << "batch " << batch;
  }
}

}  // namespace
}  // namespace pstrain
