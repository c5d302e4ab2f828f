#include "export/export.h"

#include <span>
#include <utility>
#include <vector>

#include "checkpoint/safetensors.h"
#include "export/proto/onnx.pb.h"
#include "runtime/base/check.h"
#include "runtime/base/files.h"

namespace pstrain {
namespace {

using onnx::AttributeProto;
using onnx::GraphProto;
using onnx::NodeProto;
using onnx::TensorProto;

// Builds the graph node by node; names every node after its first output.
class GraphBuilder {
 public:
  explicit GraphBuilder(GraphProto& g) : g_(g) {}

  // A float initializer (row-major values of `dims`).
  void add_float(const std::string& name, const std::vector<int64_t>& dims,
                 std::span<const float> values) {
    TensorProto* t = g_.add_initializer();
    t->set_name(name);
    t->set_data_type(TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    // raw_data is little-endian; pstrain builds only for little-endian hosts (x86-64).
    t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size_bytes()));
  }
  // An int64 vector initializer (Reshape's shape).
  void add_int64(const std::string& name, const std::vector<int64_t>& values) {
    TensorProto* t = g_.add_initializer();
    t->set_name(name);
    t->set_data_type(TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    t->set_raw_data(
        std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t)));
  }

  NodeProto* node(const std::string& op, std::vector<std::string> inputs,
                  const std::string& output) {
    NodeProto* n = g_.add_node();
    n->set_op_type(op);
    n->set_name(output);
    for (std::string& in : inputs) n->add_input(std::move(in));
    n->add_output(output);
    return n;
  }

  static void ints(NodeProto* n, const std::string& name, const std::vector<int64_t>& values) {
    AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(AttributeProto::INTS);
    for (int64_t v : values) a->add_ints(v);
  }
  static void int_attr(NodeProto* n, const std::string& name, int64_t value) {
    AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(AttributeProto::INT);
    a->set_i(value);
  }

 private:
  GraphProto& g_;
};

void set_float_matrix_type(onnx::ValueInfoProto* v, const std::string& name, int64_t cols,
                           const std::string& doc) {
  v->set_name(name);
  v->set_doc_string(doc);
  onnx::TypeProto::Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(TensorProto::FLOAT);
  t->mutable_shape()->add_dim()->set_dim_param("N");
  t->mutable_shape()->add_dim()->set_dim_value(cols);
}

// HWIO [ks, ks, c, k] -> OIHW [k, c, ks, ks].
std::vector<float> hwio_to_oihw(const std::vector<float>& w, const Shape& hwio) {
  const int64_t kh = hwio[0], kw = hwio[1], c = hwio[2], k = hwio[3];
  std::vector<float> out(w.size());
  for (int64_t y = 0; y < kh; ++y) {
    for (int64_t x = 0; x < kw; ++x) {
      for (int64_t i = 0; i < c; ++i) {
        for (int64_t o = 0; o < k; ++o) {
          out[static_cast<size_t>(((o * c + i) * kh + y) * kw + x)] =
              w[static_cast<size_t>(((y * kw + x) * c + i) * k + o)];
        }
      }
    }
  }
  return out;
}

const VariableSpec& variable(const TrainedModel& m, const std::string& name) {
  for (const VariableSpec& v : m.variables) {
    if (v.name == name) return v;
  }
  PSTRAIN_CHECK(false && "a variable of the model's own description is missing");
  return m.variables.front();
}

// A dense layer: Gemm(x, W [in, out], b [out]) -> `out`.
void dense(GraphBuilder& b, const TrainedModel& m, const std::string& x, const std::string& w,
           const std::string& bias, const std::string& out) {
  b.add_float(w, variable(m, w).shape, m.values(w));
  b.add_float(bias, variable(m, bias).shape, m.values(bias));
  b.node("Gemm", {x, w, bias}, out);
}

// conv (SAME, stride 1) + bias, ReLU, 2x2/2 max-pool, in NCHW.
std::string conv_block(GraphBuilder& b, const TrainedModel& m, const std::string& x,
                       const std::string& name) {
  const std::string kernel = name + "/kernel", bias = name + "/bias";
  const Shape& hwio = variable(m, kernel).shape;
  b.add_float(kernel, {hwio[3], hwio[2], hwio[0], hwio[1]}, hwio_to_oihw(m.values(kernel), hwio));
  b.add_float(bias, variable(m, bias).shape, m.values(bias));
  NodeProto* conv = b.node("Conv", {x, kernel, bias}, name + "/conv");
  const int64_t pad = hwio[0] / 2;
  GraphBuilder::ints(conv, "kernel_shape", {hwio[0], hwio[1]});
  GraphBuilder::ints(conv, "pads", {pad, pad, pad, pad});
  GraphBuilder::ints(conv, "strides", {1, 1});
  b.node("Relu", {name + "/conv"}, name + "/relu");
  NodeProto* pool = b.node("MaxPool", {name + "/relu"}, name + "/pool");
  GraphBuilder::ints(pool, "kernel_shape", {2, 2});
  GraphBuilder::ints(pool, "strides", {2, 2});
  return name + "/pool";
}

}  // namespace

Result<ExportFormat> parse_export_format(const std::string& name) {
  if (name == "onnx") return ExportFormat::kOnnx;
  if (name == "safetensors") return ExportFormat::kSafetensors;
  return invalid_argument("--format " + name + ": choose onnx or safetensors");
}

std::string encode_onnx_model(const TrainedModel& m, const std::string& producer_version) {
  const ModelOptions& o = m.options;
  onnx::ModelProto model;
  model.set_ir_version(kOnnxIrVersion);
  model.set_producer_name("pstrain");
  model.set_producer_version(producer_version);
  model.set_model_version(m.step);
  model.set_doc_string("pstrain " + o.name + " at global step " + std::to_string(m.step) + " (" +
                       m.checkpoint + ")");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  std::vector<std::pair<std::string, std::string>> props = {
      {"pstrain.model", o.name},
      {"pstrain.global_step", std::to_string(m.step)},
      {"pstrain.input", "grey pixels / 255, row-major " + std::to_string(o.image_rows) + "x" +
                            std::to_string(o.image_cols)}};
  if (o.name == "mlp") props.emplace_back("pstrain.hidden_units", std::to_string(o.hidden_units));
  for (const auto& [key, value] : props) {
    onnx::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(key);
    e->set_value(value);
  }

  GraphProto* g = model.mutable_graph();
  g->set_name("pstrain_" + o.name);
  GraphBuilder b(*g);
  const int64_t pixels = int64_t{o.image_rows} * o.image_cols;
  set_float_matrix_type(g->add_input(), kOnnxInput, pixels,
                        "grey images, pixel values / 255, row-major");
  set_float_matrix_type(g->add_output(), kOnnxLogits, o.classes, "unnormalized class scores");
  set_float_matrix_type(g->add_output(), kOnnxProbabilities, o.classes,
                        "softmax of the logits over the classes");

  if (o.name == "mlp") {
    dense(b, m, kOnnxInput, "hid_w", "hid_b", "hidden/dense");
    b.node("Relu", {"hidden/dense"}, "hidden/relu");
    dense(b, m, "hidden/relu", "sm_w", "sm_b", kOnnxLogits);
  } else {
    PSTRAIN_CHECK(o.name == "cnn");
    b.add_int64("shape/nchw", {-1, 1, o.image_rows, o.image_cols});
    b.node("Reshape", {kOnnxInput, "shape/nchw"}, "images/nchw");
    std::string x = conv_block(b, m, "images/nchw", "conv1");
    x = conv_block(b, m, x, "conv2");
    // Back to NHWC, then flatten in pstrain's order.
    NodeProto* t = b.node("Transpose", {x}, "conv2/nhwc");
    GraphBuilder::ints(t, "perm", {0, 2, 3, 1});
    const int64_t flat = variable(m, "dense/kernel").shape[0];
    b.add_int64("shape/flat", {-1, flat});
    b.node("Reshape", {"conv2/nhwc", "shape/flat"}, "flat");
    dense(b, m, "flat", "dense/kernel", "dense/bias", "dense/dense");
    b.node("Relu", {"dense/dense"}, "dense/relu");
    dense(b, m, "dense/relu", "logits/kernel", "logits/bias", kOnnxLogits);
  }
  NodeProto* softmax = b.node("Softmax", {kOnnxLogits}, kOnnxProbabilities);
  GraphBuilder::int_attr(softmax, "axis", 1);
  return model.SerializeAsString();
}

std::string encode_weights_safetensors(const TrainedModel& m) {
  std::vector<std::vector<float>> values;
  values.reserve(m.variables.size());
  std::vector<checkpoint::TensorRef> refs;
  for (const VariableSpec& v : m.variables) {
    values.push_back(m.values(v.name));
    checkpoint::TensorRef r = checkpoint::f32_tensor(v.name, values.back());
    r.shape = v.shape;
    refs.push_back(std::move(r));
  }
  checkpoint::Metadata metadata = {{"format", "pstrain-weights-1"},
                                   {"model", m.options.name},
                                   {"global_step", std::to_string(m.step)}};
  if (m.options.name == "mlp") metadata["hidden_units"] = std::to_string(m.options.hidden_units);
  return checkpoint::encode_safetensors(refs, metadata);
}

Status write_export(const TrainedModel& model, ExportFormat format, const std::string& output,
                    const std::string& producer_version) {
  const std::string bytes = format == ExportFormat::kOnnx
                                ? encode_onnx_model(model, producer_version)
                                : encode_weights_safetensors(model);
  return write_file_atomically(output, bytes);
}

}  // namespace pstrain
