// `pstrain export --checkpoint_dir D [--checkpoint C] --format onnx|safetensors --output F`:
// a checkpoint's model as an ONNX model or as plain safetensors weights (export/export.h,
// docs/serving.md), written atomically. Exit codes: 0 written, 2 bad usage or no complete
// checkpoint, 1 the file could not be written.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/serving.h"
#include "export/export.h"
#include "export/trained_model.h"

namespace pstrain {

int run_export_command(const std::vector<std::string>& args, std::FILE* out) {
  CLI::App app{
      "Export a checkpoint's model: --format onnx (an ONNX model, opset 13: input \"images\" "
      "[N, 784] of pixels / 255, outputs \"logits\" and \"probabilities\" [N, 10]) or "
      "--format safetensors (the model's variables, without optimizer slots).\n"
      "Exit codes: 0 written, 1 the file could not be written, 2 bad usage or no complete "
      "checkpoint.",
      "pstrain export"};
  ServingFlags f;
  std::string format, output;
  add_serving_checkpoint_flags(app, f);
  app.add_option("--format", format, "onnx or safetensors")
      ->required()
      ->check(CLI::IsMember({"onnx", "safetensors"}));
  app.add_option("--output", output, "The file to write")->required();
  add_log_level_flag(app);
  if (std::optional<int> code = parse_command_words(app, args)) return *code;
  auto fail = [](const Status& st) {
    std::fprintf(stderr, "pstrain export: %s\n", st.message().c_str());
    return exit_code_for(st);
  };
  if (Status st = apply_environment(app); !st.ok()) return fail(st);
  auto parsed = parse_export_format(format);
  if (!parsed.ok()) return fail(parsed.status());
  if (f.checkpoint_dir.empty() && f.checkpoint.empty()) {
    return fail(invalid_argument("give --checkpoint_dir (or --checkpoint)"));
  }
  auto model = load_trained_model(f.checkpoint_dir, f.checkpoint);
  if (!model.ok()) return fail(model.status());
  if (Status st = write_export(*model, *parsed, output, PSTRAIN_VERSION); !st.ok()) {
    std::fprintf(stderr, "pstrain export: %s\n", st.message().c_str());
    return kExitFailure;
  }
  std::fprintf(out, "exported %s (%s, global step %lld) as %s to %s\n", model->checkpoint.c_str(),
               model->options.name.c_str(), static_cast<long long>(model->step), format.c_str(),
               output.c_str());
  return kExitOk;
}

}  // namespace pstrain
