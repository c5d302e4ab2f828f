// Exporting a trained model (export/trained_model.h) out of pstrain (docs/serving.md):
//
//   onnx         an ONNX model (IR version 7, opset 13, the default domain only) of the MLP or
//                the CNN. Input "images": float [N, rows * cols], grey pixels scaled to
//                [0, 1], row-major (what pstrain trains on). Outputs "logits" [N, classes] and
//                "probabilities" [N, classes] (Softmax over axis 1). The graph computes what
//                kernels/model.h computes: dense layers are Gemm with the [in, out] weights as
//                stored; the CNN reshapes to NCHW (one channel), convolves with the HWIO
//                kernels transposed to ONNX's OIHW (5x5, stride 1, pads 2: SAME), ReLU,
//                2x2/2 MaxPool, and transposes back to NHWC before flattening, so the dense
//                weights apply to the same element order as in pstrain.
//   safetensors  the model's variables with their names and shapes as pstrain holds them
//                (HWIO kernels, [in, out] dense weights), no optimizer slot; __metadata__:
//                format "pstrain-weights-1", model, global_step and (MLP) hidden_units.
//
// Contract: encode_* are pure functions of the model; write_export() writes the bytes to
// `output` atomically (runtime/base/files.h), so a failed export leaves nothing there; its
// error names the path. Thread-safety: functions over values.
#pragma once

#include <string>

#include "export/trained_model.h"
#include "runtime/base/status.h"

namespace pstrain {

enum class ExportFormat { kOnnx, kSafetensors };

// "onnx" or "safetensors"; anything else is an InvalidArgument naming --format.
Result<ExportFormat> parse_export_format(const std::string& name);

inline constexpr int kOnnxOpset = 13;
inline constexpr int kOnnxIrVersion = 7;
inline constexpr const char* kOnnxInput = "images";
inline constexpr const char* kOnnxLogits = "logits";
inline constexpr const char* kOnnxProbabilities = "probabilities";

// The serialized ONNX ModelProto.
std::string encode_onnx_model(const TrainedModel& model, const std::string& producer_version);
// The safetensors file of the model's variables.
std::string encode_weights_safetensors(const TrainedModel& model);

Status write_export(const TrainedModel& model, ExportFormat format, const std::string& output,
                    const std::string& producer_version);

}  // namespace pstrain
