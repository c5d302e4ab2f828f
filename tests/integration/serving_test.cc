// `pstrain eval`, `pstrain predict` and `pstrain export` through the real binary, checked by
// the tools their users read the outputs with (tests/integration/check_serving.py, in the test
// venv that scripts/test-venv.sh makes): a short `pstrain train` of the MLP and of the CNN
// into a checkpoint directory; eval's accuracy equals train's; onnxruntime runs the exported
// model on the 10,000 test images and gives the same class for every image as predict's CSV,
// probabilities within 1e-5, and eval's accuracy; the safetensors export has every variable
// with its shape. Then predict's PNG input and its bad inputs (a truncated IDX file, a PNG of
// another size, a file that is not an image): exit 2, the file named, nothing at --output.
// Every process is waited for with a deadline.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/job/process.h"
#include "tests/integration/paths.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;
using testing_util::read_all;
using testing_util::test_python;

class ServingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(testing_util::kFashionMnist)) {
      GTEST_SKIP() << testing_util::kFashionMnist << " is missing: install dataset-fashion-mnist";
    }
    ASSERT_TRUE(fs::exists(test_python()))
        << test_python() << " is missing: run scripts/test-venv.sh (it makes the test venv "
        << "with onnxruntime and safetensors), or set PSTRAIN_VENV";
  }

  // Runs argv to completion (stdout and stderr into dir_/name.out, .err) within `seconds`.
  ExitStatus run(const std::string& name, std::vector<std::string> argv, int seconds = 120) {
    const SubprocessOptions o = testing_util::task_options(dir_, name, std::move(argv));
    auto p = Subprocess::spawn(o);
    EXPECT_TRUE(p.ok()) << p.status().to_string();
    if (!p.ok()) return ExitStatus{};
    auto st = p->wait_until(Clock::now() + std::chrono::seconds(seconds));
    EXPECT_TRUE(st.ok()) << name << " did not finish within " << seconds << " s: killed";
    return st.ok() ? *st : p->kill();
  }
  ExitStatus pstrain(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), testing_util::kPstrain);
    return run(name, std::move(args));
  }
  ExitStatus python(const std::string& name, const std::string& script,
                    std::vector<std::string> args) {
    args.insert(args.begin(), {test_python(), std::string(PSTRAIN_TEST_SOURCE_DIR) +
                                                  "/tests/integration/" + script});
    return run(name, std::move(args));
  }

  // Trains `model` briefly into dir_/<model>, then checks eval, predict and both exports.
  void train_eval_predict_export(const std::string& model, const std::vector<std::string>& extra) {
    const std::string ckpt = (dir_ / model).string();
    std::vector<std::string> train = {
        "train",
        "--model=" + model,
        "--num_gpus=0",
        "--validation_size=0",
        "--checkpoint_dir=" + ckpt,
        "--summary_json=" + (dir_ / (model + "_train.json")).string()};
    train.insert(train.end(), extra.begin(), extra.end());
    ExitStatus st = pstrain(model + "_train", train);
    ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / (model + "_train.err"));
    const json trained = json::parse(read_all(dir_ / (model + "_train.json")));

    const fs::path eval_json = dir_ / (model + "_eval.json");
    st = pstrain(model + "_eval",
                 {"eval", "--checkpoint_dir=" + ckpt, "--summary_json=" + eval_json.string()});
    ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / (model + "_eval.err"));
    const json ev = json::parse(read_all(eval_json));
    EXPECT_EQ(ev.at("model"), model);
    EXPECT_EQ(ev.at("examples"), 10000);
    // The same parameters, batches and forward pass as train's final evaluation.
    EXPECT_DOUBLE_EQ(ev.at("accuracy").get<double>(), trained.at("test_accuracy").get<double>());
    const std::string eval_out = read_all(dir_ / (model + "_eval.out"));
    EXPECT_NE(eval_out.find("confusion matrix"), std::string::npos) << eval_out;
    EXPECT_NE(eval_out.find("precision"), std::string::npos) << eval_out;
    int64_t diagonal = 0, total = 0;
    const json& cm = ev.at("confusion_matrix");
    ASSERT_EQ(cm.size(), 10u);
    for (size_t i = 0; i < 10; ++i) {
      for (size_t j = 0; j < 10; ++j) {
        total += cm.at(i).at(j).get<int64_t>();
        if (i == j) diagonal += cm.at(i).at(j).get<int64_t>();
      }
    }
    EXPECT_EQ(total, 10000);
    EXPECT_EQ(diagonal, ev.at("correct").get<int64_t>());
    ASSERT_EQ(ev.at("classes").size(), 10u);

    const fs::path csv = dir_ / (model + "_predict.csv");
    st = pstrain(model + "_predict", {"predict", "--checkpoint_dir=" + ckpt, "--batch_size=300",
                                      "--input=" + std::string(testing_util::kFashionMnist) +
                                          "/t10k-images-idx3-ubyte.gz",
                                      "--output=" + csv.string()});
    ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / (model + "_predict.err"));

    const fs::path onnx = dir_ / (model + ".onnx");
    const fs::path weights = dir_ / (model + ".safetensors");
    st = pstrain(model + "_export_onnx", {"export", "--checkpoint_dir=" + ckpt, "--format=onnx",
                                          "--output=" + onnx.string()});
    ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / (model + "_export_onnx.err"));
    st = pstrain(model + "_export_st", {"export", "--checkpoint_dir=" + ckpt,
                                        "--format=safetensors", "--output=" + weights.string()});
    ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / (model + "_export_st.err"));

    st = python(model + "_check", "check_serving.py",
                {testing_util::kFashionMnist, onnx.string(), weights.string(), csv.string()});
    ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / (model + "_check.err"));
    const json r = json::parse(read_all(dir_ / (model + "_check.out")));
    EXPECT_EQ(r.at("inputs"), json::parse(R"j([["images", "tensor(float)", ["N", 784]]])j"));
    EXPECT_EQ(r.at("outputs"), json::parse(R"j([["logits", "tensor(float)", ["N", 10]],
        ["probabilities", "tensor(float)", ["N", 10]]])j"));
    EXPECT_EQ(r.at("examples"), 10000);
    EXPECT_EQ(r.at("csv_rows"), 10000);
    EXPECT_TRUE(r.at("csv_index_in_order").get<bool>());
    EXPECT_EQ(r.at("class_mismatches"), 0) << "onnxruntime and pstrain predict disagree";
    EXPECT_GE(r.at("max_probability_difference").get<double>(), 0.0);
    EXPECT_LE(r.at("max_probability_difference").get<double>(), 1e-5);
    EXPECT_TRUE(r.at("logits_argmax_agrees").get<bool>());
    EXPECT_LE(r.at("probabilities_sum_max_error").get<double>(), 1e-5);
    EXPECT_EQ(r.at("onnx_correct").get<int64_t>(), ev.at("correct").get<int64_t>());
    EXPECT_DOUBLE_EQ(r.at("onnx_accuracy").get<double>(), ev.at("accuracy").get<double>());
    EXPECT_DOUBLE_EQ(r.at("csv_accuracy").get<double>(), ev.at("accuracy").get<double>());
    EXPECT_EQ(r.at("safetensors_dtypes"), json::parse(R"(["float32"])"));
    EXPECT_EQ(r.at("safetensors_metadata").at("model"), model);
    EXPECT_EQ(r.at("safetensors_metadata").at("global_step"),
              std::to_string(trained.at("steps").get<int64_t>()));
    EXPECT_GT(ev.at("accuracy").get<double>(), 0.3) << "the model did not learn: a weak check";
    variables_ = r.at("safetensors");
    ckpt_ = ckpt;
    trained_steps_ = trained.at("steps").get<int64_t>();
  }

  testing_util::TempDir tmp_{"pstrain_serving", /*keep_on_failure=*/true};
  fs::path dir_ = tmp_.path();
  json variables_;
  std::string ckpt_;
  int64_t trained_steps_ = 0;
};

TEST_F(ServingTest, MlpEvalPredictExportAgreeWithOnnxruntime) {
  train_eval_predict_export("mlp", {"--train_steps=100", "--hidden_units=64"});
  EXPECT_EQ(variables_, json::parse(R"({"hid_w": [784, 64], "hid_b": [64], "sm_w": [64, 10],
      "sm_b": [10]})"));
}

TEST_F(ServingTest, CnnEvalPredictExportAgreeWithOnnxruntime) {
#if defined(__SANITIZE_THREAD__)
  // Three CNN passes over the 10,000 test images take 12 s in a Release build, 210 s under
  // AddressSanitizer and well over the test's limit under ThreadSanitizer; the CNN's threads
  // are checked there by the training tests, and its export by export_test.
  GTEST_SKIP() << "the CNN's 10,000-image passes are too slow under ThreadSanitizer";
#endif
  train_eval_predict_export(
      "cnn", {"--train_steps=20", "--batch_size=32", "--learning_rate=0.001", "--cpu_threads=2"});
  EXPECT_EQ(variables_, json::parse(R"({"conv1/kernel": [5, 5, 1, 32], "conv1/bias": [32],
      "conv2/kernel": [5, 5, 32, 64], "conv2/bias": [64], "dense/kernel": [3136, 1024],
      "dense/bias": [1024], "logits/kernel": [1024, 10], "logits/bias": [10]})"));
}

// PNG input and predict's bad inputs, on an MLP checkpoint.
TEST_F(ServingTest, PredictReadsPngsAndRefusesBadInputWithoutWritingOutput) {
  const std::string ckpt = (dir_ / "ckpt").string();
  ExitStatus st = pstrain("train", {"train", "--num_gpus=0", "--train_steps=30",
                                    "--validation_size=0", "--checkpoint_dir=" + ckpt});
  ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / "train.err");
  st = python("pngs", "make_pngs.py", {testing_util::kFashionMnist, dir_.string()});
  ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / "pngs.err");

  // A directory of PNGs: one line per file, in name order; RGB with equal channels and grey
  // with an opaque alpha channel read as the same grey image.
  const fs::path good_csv = dir_ / "good.csv";
  st = pstrain("good", {"predict", "--checkpoint_dir=" + ckpt,
                        "--input=" + (dir_ / "good").string(), "--output=" + good_csv.string()});
  ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / "good.err");
  std::ifstream in(good_csv);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 5u) << read_all(good_csv);
  EXPECT_EQ(lines[0], "file,predicted,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9");
  auto tail = [](const std::string& line) { return line.substr(line.find(',')); };
  EXPECT_EQ(lines[1].substr(0, 6), "a.png,");
  EXPECT_EQ(lines[2].substr(0, 6), "b.png,");
  EXPECT_EQ(lines[3].substr(0, 10), "c_rgb.png,");
  EXPECT_EQ(lines[4].substr(0, 9), "d_la.png,");
  EXPECT_EQ(tail(lines[3]), tail(lines[1]));
  EXPECT_EQ(tail(lines[4]), tail(lines[1]));

  // A header saying 3 images, the data of 2 and a bit: truncated.
  const fs::path truncated = dir_ / "truncated-idx3-ubyte";
  {
    std::ofstream t(truncated, std::ios::binary);
    const unsigned char header[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28};
    t.write(reinterpret_cast<const char*>(header), sizeof header);
    const std::string pixels(2 * 784 + 100, '\x40');
    t.write(pixels.data(), static_cast<std::streamsize>(pixels.size()));
  }

  struct Bad {
    std::string name;
    std::string input;
    std::string names;  // the file the error must name
  };
  const std::vector<Bad> bad = {
      {"truncated_idx", truncated.string(), truncated.string()},
      {"wrong_size_png", (dir_ / "small").string(), (dir_ / "small" / "bad.png").string()},
      {"not_an_image", (dir_ / "text").string(), (dir_ / "text" / "notes.png").string()},
      {"not_an_image_file", (dir_ / "text" / "notes.png").string(),
       (dir_ / "text" / "notes.png").string()},
      {"train_log", (dir_ / "train.err").string(), (dir_ / "train.err").string()},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.name);
    const fs::path out = dir_ / (b.name + ".csv");
    st = pstrain(b.name, {"predict", "--checkpoint_dir=" + ckpt, "--input=" + b.input,
                          "--output=" + out.string()});
    EXPECT_EQ(st, ExitStatus::exited(2)) << st.to_string();
    const std::string err = read_all(dir_ / (b.name + ".err"));
    EXPECT_NE(err.find(b.names), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(out)) << "a failed predict left " << out;
  }
  // An existing output file is left as it was, and no temporary file is left beside it.
  const fs::path kept = dir_ / "kept" / "out.csv";
  fs::create_directories(kept.parent_path());
  { std::ofstream(kept) << "before\n"; }
  st = pstrain("kept", {"predict", "--checkpoint_dir=" + ckpt, "--input=" + truncated.string(),
                        "--output=" + kept.string()});
  EXPECT_EQ(st, ExitStatus::exited(2)) << st.to_string();
  EXPECT_EQ(read_all(kept), "before\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(kept.parent_path()), fs::directory_iterator()), 1);

  // No checkpoint: exit 2 naming the directory.
  st = pstrain("no_ckpt", {"predict", "--checkpoint_dir=" + (dir_ / "none").string(),
                           "--input=" + truncated.string(), "--output=" + kept.string()});
  EXPECT_EQ(st, ExitStatus::exited(2));
  EXPECT_NE(read_all(dir_ / "no_ckpt.err").find((dir_ / "none").string()), std::string::npos);
  st = pstrain("eval_no_ckpt", {"eval", "--checkpoint_dir=" + (dir_ / "none").string()});
  EXPECT_EQ(st, ExitStatus::exited(2));
  st = pstrain("export_bad_format",
               {"export", "--checkpoint_dir=" + ckpt, "--format=pb", "--output=x"});
  EXPECT_EQ(st, ExitStatus::exited(2));
}

// A checkpoint of a 2 PS + 2 workers job (two shards): eval gives the chief's test accuracy;
// --checkpoint picks an older checkpoint than the latest.
TEST_F(ServingTest, EvalReadsAMultiPsJobsCheckpointAndAChosenOne) {
  const std::string ckpt = (dir_ / "ckpt").string();
  const fs::path job = dir_ / "job";
  ExitStatus st =
      pstrain("launch", {"launch", "--ps=2", "--workers=2", "--num_gpus=0", "--sync_replicas",
                         "--train_steps=50", "--save_checkpoint_steps=25",
                         "--checkpoint_dir=" + ckpt, "--job_dir=" + job.string()});
  ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / "launch.err");
  const json summary = json::parse(read_all(job / "summary.json"));
  ASSERT_TRUE(fs::exists(fs::path(ckpt) / "model.ckpt-50.ps-1-of-2.safetensors"));

  st = pstrain("eval", {"eval", "--checkpoint_dir=" + ckpt,
                        "--summary_json=" + (dir_ / "eval.json").string()});
  ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / "eval.err");
  const json ev = json::parse(read_all(dir_ / "eval.json"));
  EXPECT_EQ(ev.at("global_step"), 50);
  EXPECT_DOUBLE_EQ(ev.at("accuracy").get<double>(), summary.at("test_accuracy").get<double>());

  st = pstrain("eval25", {"eval", "--checkpoint_dir=" + ckpt, "--checkpoint=model.ckpt-25",
                          "--summary_json=" + (dir_ / "eval25.json").string()});
  ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / "eval25.err");
  EXPECT_EQ(json::parse(read_all(dir_ / "eval25.json")).at("global_step"), 25);
  // The index file's path alone is enough.
  st = pstrain("export25", {"export", "--checkpoint=" + ckpt + "/model.ckpt-25.index.json",
                            "--format=safetensors", "--output=" + (dir_ / "w25").string()});
  ASSERT_TRUE(st.success()) << st.to_string() << read_all(dir_ / "export25.err");
  EXPECT_NE(read_all(dir_ / "export25.out").find("global step 25"), std::string::npos);
  st = pstrain("eval_missing", {"eval", "--checkpoint_dir=" + ckpt, "--checkpoint=model.ckpt-7"});
  EXPECT_EQ(st, ExitStatus::exited(2));
  EXPECT_NE(read_all(dir_ / "eval_missing.err").find("model.ckpt-7"), std::string::npos);
}

}  // namespace
}  // namespace pstrain
