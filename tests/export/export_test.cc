// export/: a trained model read back from checkpoints of one and two shards (and the errors of
// torn or inconsistent ones), the ONNX model's structure parsed back with the same messages,
// the CNN's kernels transposed HWIO -> OIHW, and the safetensors weights decoded again.
#include "export/export.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"
#include "export/proto/onnx.pb.h"
#include "export/trained_model.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using checkpoint::CheckpointIndex;
using checkpoint::ShardData;

std::vector<float> flat_values(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.001f * static_cast<float>(i) - 1.0f;
  return v;
}

// An MLP (hidden 8) checkpoint at `step` whose hid_w is split over two PS; optionally without
// the chunk `drop` in the index.
void write_mlp_checkpoint(const std::string& dir, int64_t step, const std::string& drop = "") {
  ModelOptions o;
  o.hidden_units = 8;
  auto vars = Model::describe(o);
  ASSERT_TRUE(vars.ok());
  int64_t total = 0;
  for (const VariableSpec& v : *vars) total += v.numel();
  const std::vector<float> flat = flat_values(total);
  struct Piece {
    std::string key, variable;
    int ps;
    int64_t offset, count;
  };
  std::vector<Piece> pieces;
  for (const VariableSpec& v : *vars) {
    if (v.name == "hid_w") {
      const int64_t half = v.numel() / 2;
      pieces.push_back({"hid_w/0", v.name, 0, v.offset, half});
      pieces.push_back(
          {"hid_w/" + std::to_string(half), v.name, 1, v.offset + half, v.numel() - half});
    } else {
      pieces.push_back({v.name + "/0", v.name, 1, v.offset, v.numel()});
    }
  }
  CheckpointIndex x;
  x.step = step;
  x.model = "mlp";
  x.num_ps = 2;
  x.training_config = {{"optimizer", "sgd"}};
  for (int ps = 0; ps < 2; ++ps) {
    ShardData s;
    s.step = step;
    s.ps_index = ps;
    s.num_ps = 2;
    s.model = "mlp";
    s.optimizer = "sgd";
    s.training_config = x.training_config;
    for (const Piece& p : pieces) {
      if (p.ps != ps) continue;
      const auto b = flat.begin() + static_cast<std::ptrdiff_t>(p.offset);
      s.chunks.push_back({p.key, {b, b + static_cast<std::ptrdiff_t>(p.count)}, {}});
    }
    auto info = checkpoint::write_shard(dir, s);
    ASSERT_TRUE(info.ok()) << info.status().message();
    x.shards.push_back(*info);
  }
  for (const Piece& p : pieces) {
    if (p.key == drop) continue;
    x.chunks.push_back({.key = p.key,
                        .variable = p.variable,
                        .ps = p.ps,
                        .flat_offset = p.offset,
                        .elements = p.count});
  }
  ASSERT_TRUE(checkpoint::finalize_checkpoint(dir, x, 0).ok());
}

TEST(TrainedModel, ReadsEveryShardIntoTheFlatLayout) {
  testing_util::TempDir d("pstrain_export");
  write_mlp_checkpoint(d.path(), 10);
  write_mlp_checkpoint(d.path(), 20);
  auto m = load_trained_model(d.path(), "");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->step, 20);
  EXPECT_EQ(m->options.name, "mlp");
  EXPECT_EQ(m->options.hidden_units, 8);
  EXPECT_EQ(m->checkpoint, (fs::path(d.path()) / "model.ckpt-20").string());
  EXPECT_EQ(m->parameters, flat_values(784 * 8 + 8 + 8 * 10 + 10));
  EXPECT_EQ(m->values("sm_b").size(), 10u);

  for (const std::string& which :
       {std::string("model.ckpt-10"), std::string("model.ckpt-10.index.json"),
        (fs::path(d.path()) / "model.ckpt-10.index.json").string()}) {
    auto older = load_trained_model(which[0] == '/' ? "" : d.path(), which);
    ASSERT_TRUE(older.ok()) << which << ": " << older.status().message();
    EXPECT_EQ(older->step, 10) << which;
  }
  auto missing = load_trained_model(d.path(), "model.ckpt-15");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("model.ckpt-15"), std::string::npos);
}

TEST(TrainedModel, RefusesMissingTornAndIncompleteCheckpoints) {
  testing_util::TempDir d("pstrain_export");
  auto none = load_trained_model((d / "nope"), "");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  auto empty = load_trained_model(d.path(), "");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no complete checkpoint"), std::string::npos);

  write_mlp_checkpoint(d.path(), 5, /*drop=*/"sm_w/0");
  auto gap = load_trained_model(d.path(), "");
  ASSERT_FALSE(gap.ok());
  EXPECT_NE(gap.status().message().find("no chunk holds element"), std::string::npos)
      << gap.status().message();

  // A torn newer checkpoint (a shard truncated) is skipped for the older complete one.
  write_mlp_checkpoint(d.path(), 6);
  write_mlp_checkpoint(d.path(), 7);
  fs::resize_file((d / checkpoint::shard_file_name(7, 1, 2)), 100);
  auto older = load_trained_model(d.path(), "");
  ASSERT_TRUE(older.ok()) << older.status().message();
  EXPECT_EQ(older->step, 6);
  ASSERT_EQ(older->skipped.size(), 1u);
  auto torn = load_trained_model(d.path(), "model.ckpt-7");
  ASSERT_FALSE(torn.ok());
  EXPECT_NE(torn.status().message().find(checkpoint::shard_file_name(7, 1, 2)), std::string::npos)
      << torn.status().message();
}

TrainedModel random_cnn() {
  TrainedModel m;
  m.options.name = "cnn";
  m.variables = Model::describe(m.options).value();
  int64_t total = 0;
  for (const VariableSpec& v : m.variables) total += v.numel();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  m.parameters.resize(static_cast<size_t>(total));
  for (float& p : m.parameters) p = u(rng);
  m.step = 42;
  m.checkpoint = "/d/model.ckpt-42";
  return m;
}

TEST(Onnx, MlpGraphInputsOutputsAndInitializers) {
  testing_util::TempDir d("pstrain_export");
  write_mlp_checkpoint(d.path(), 3);
  auto m = load_trained_model(d.path(), "");
  ASSERT_TRUE(m.ok());
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(encode_onnx_model(*m, "0.1.0")));
  EXPECT_EQ(model.ir_version(), 7);
  ASSERT_EQ(model.opset_import_size(), 1);
  EXPECT_EQ(model.opset_import(0).domain(), "");
  EXPECT_EQ(model.opset_import(0).version(), 13);
  EXPECT_EQ(model.producer_name(), "pstrain");
  const onnx::GraphProto& g = model.graph();
  ASSERT_EQ(g.input_size(), 1);
  EXPECT_EQ(g.input(0).name(), "images");
  const auto& in_shape = g.input(0).type().tensor_type().shape();
  ASSERT_EQ(in_shape.dim_size(), 2);
  EXPECT_EQ(in_shape.dim(0).dim_param(), "N");
  EXPECT_EQ(in_shape.dim(1).dim_value(), 784);
  ASSERT_EQ(g.output_size(), 2);
  EXPECT_EQ(g.output(0).name(), "logits");
  EXPECT_EQ(g.output(1).name(), "probabilities");
  std::vector<std::string> ops;
  for (const auto& n : g.node()) ops.push_back(n.op_type());
  EXPECT_EQ(ops, (std::vector<std::string>{"Gemm", "Relu", "Gemm", "Softmax"}));
  ASSERT_EQ(g.initializer_size(), 4);
  const onnx::TensorProto& w = g.initializer(0);
  EXPECT_EQ(w.name(), "hid_w");
  EXPECT_EQ(std::vector<int64_t>(w.dims().begin(), w.dims().end()), (std::vector<int64_t>{784, 8}));
  const std::vector<float> hid_w = m->values("hid_w");
  ASSERT_EQ(w.raw_data().size(), hid_w.size() * sizeof(float));
  EXPECT_EQ(0, std::memcmp(w.raw_data().data(), hid_w.data(), w.raw_data().size()));
}

TEST(Onnx, CnnKernelsAreTransposedToOihw) {
  const TrainedModel m = random_cnn();
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(encode_onnx_model(m, "0.1.0")));
  std::vector<std::string> ops;
  for (const auto& n : model.graph().node()) ops.push_back(n.op_type());
  EXPECT_EQ(ops, (std::vector<std::string>{"Reshape", "Conv", "Relu", "MaxPool", "Conv", "Relu",
                                           "MaxPool", "Transpose", "Reshape", "Gemm", "Relu",
                                           "Gemm", "Softmax"}));
  const onnx::TensorProto* k2 = nullptr;
  for (const auto& t : model.graph().initializer()) {
    if (t.name() == "conv2/kernel") k2 = &t;
  }
  ASSERT_NE(k2, nullptr);
  EXPECT_EQ(std::vector<int64_t>(k2->dims().begin(), k2->dims().end()),
            (std::vector<int64_t>{64, 32, 5, 5}));
  std::vector<float> oihw(k2->raw_data().size() / sizeof(float));
  std::memcpy(oihw.data(), k2->raw_data().data(), k2->raw_data().size());
  const std::vector<float> hwio = m.values("conv2/kernel");
  ASSERT_EQ(oihw.size(), hwio.size());
  for (int o : {0, 17, 63}) {
    for (int i : {0, 5, 31}) {
      for (int y : {0, 2, 4}) {
        for (int x : {0, 1, 4}) {
          EXPECT_EQ(oihw[static_cast<size_t>(((o * 32 + i) * 5 + y) * 5 + x)],
                    hwio[static_cast<size_t>(((y * 5 + x) * 32 + i) * 64 + o)]);
        }
      }
    }
  }
}

TEST(Safetensors, WeightsWithNamesShapesAndMetadata) {
  const TrainedModel m = random_cnn();
  auto file = checkpoint::decode_safetensors(encode_weights_safetensors(m), "weights");
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->metadata().at("format"), "pstrain-weights-1");
  EXPECT_EQ(file->metadata().at("model"), "cnn");
  EXPECT_EQ(file->metadata().at("global_step"), "42");
  EXPECT_EQ(file->metadata().count("hidden_units"), 0u);
  ASSERT_EQ(file->tensors().size(), m.variables.size());
  for (const VariableSpec& v : m.variables) {
    const checkpoint::DecodedTensor* t = file->find(v.name);
    ASSERT_NE(t, nullptr) << v.name;
    EXPECT_EQ(t->shape, v.shape) << v.name;
    auto values = file->f32(v.name, v.numel());
    ASSERT_TRUE(values.ok());
    EXPECT_EQ(*values, m.values(v.name)) << v.name;
  }
}

TEST(Export, WritesAtomicallyAndNamesTheFormat) {
  testing_util::TempDir d("pstrain_export");
  const TrainedModel m = random_cnn();
  EXPECT_TRUE(write_export(m, ExportFormat::kOnnx, (d / "m.onnx"), "0.1.0").ok());
  EXPECT_TRUE(fs::file_size((d / "m.onnx")) > 3'000'000u);
  Status st = write_export(m, ExportFormat::kOnnx, (d / "no/such/dir/m.onnx"), "0.1.0");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no/such/dir/m.onnx"), std::string::npos) << st.message();
  EXPECT_FALSE(parse_export_format("pb").ok());
  EXPECT_EQ(parse_export_format("safetensors").value(), ExportFormat::kSafetensors);
}

}  // namespace
}  // namespace pstrain
