// The job chart (runtime/job/chart.h) and the metrics-file lines (runtime/job/task_env.h).
#include "runtime/job/chart.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "runtime/job/task_env.h"
#include "tests/integration/paths.h"
#include "tests/temp_dir.h"

namespace pstrain {
namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Chart, OneLinePerSeriesEscapedNamesAndWellFormedXml) {
  const std::vector<ChartSeries> loss = {{"wk-0", {{2, 0.9}, {0, 2.3}, {1, 1.1}}},
                                         {"<wk&1>", {{0, 2.2}, {2, 0.8}}}};
  const std::vector<ChartSeries> acc = {{"test", {{2, 0.85}}}, {"validation", {{2, 0.86}}}};
  const std::string svg = render_chart("mlp \"job\"", loss, acc);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_EQ(count(svg, "<polyline"), 4u);
  EXPECT_EQ(count(svg, "<circle"), 2u);  // the accuracy panel marks its points
  EXPECT_NE(svg.find("&lt;wk&amp;1&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("<wk&1>"), std::string::npos);
  EXPECT_NE(svg.find("mlp &quot;job&quot;"), std::string::npos);
  // Points are drawn in x order: the first point of wk-0's line is x = 0 (the left edge, 60).
  const size_t line = svg.find("<polyline");
  EXPECT_NE(svg.find("points=\"60.00,", line), std::string::npos) << svg.substr(line, 200);

  // Python's XML parser accepts it (the test venv's Python: scripts/test-venv.sh).
  testing_util::TempDir dir("pstrain_chart");
  const std::string path = dir.path() + "/chart.svg";
  std::ofstream(path) << svg;
  const std::string python = testing_util::test_python();
  ASSERT_TRUE(std::ifstream(python).good()) << python << " is missing: run scripts/test-venv.sh";
  const std::string cmd = python +
                          " -c \"import sys, xml.etree.ElementTree as E; "
                          "r = E.parse(sys.argv[1]).getroot(); "
                          "sys.exit(0 if r.tag.endswith('svg') else 1)\" '" +
                          path + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(Chart, EmptyPanelsSayNoDataAndNonFinitePointsAreLeftOut) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::string empty = render_chart("t", {}, {});
  EXPECT_EQ(count(empty, "no data"), 2u);
  EXPECT_EQ(count(empty, "<polyline"), 0u);
  const std::string svg = render_chart("t", {{"w", {{0, 1}, {1, nan}, {2, 0.5}}}}, {});
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(count(svg, "no data"), 1u);  // the accuracy panel
  const size_t line = svg.find("points=\"");
  ASSERT_NE(line, std::string::npos);
  const std::string pts = svg.substr(line, svg.find('"', line + 8) - line);
  EXPECT_EQ(count(pts, ","), 2u) << pts;  // two finite points
}

TEST(MetricsLine, StepAndEvalRecordsRoundTrip) {
  MetricsRecord step;
  step.time = 1796040000.5;
  step.elapsed = 1.25;
  step.index = 1;
  step.global_step = 300;
  step.local_step = 150;
  step.loss = 0.5;
  step.mean_loss = 0.625;
  step.examples_per_second = 42000;
  const std::string line = to_json_line(step);
  EXPECT_EQ(line.rfind("{\"kind\":\"step\",\"time\":", 0), 0u) << line;
  auto back = parse_metrics_line(line);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->kind, "step");
  EXPECT_EQ(back->time, step.time);
  EXPECT_EQ(back->index, 1);
  EXPECT_EQ(back->global_step, 300);
  EXPECT_EQ(back->local_step, 150);
  EXPECT_EQ(back->mean_loss, 0.625);
  EXPECT_EQ(back->examples_per_second, 42000);

  MetricsRecord eval;
  eval.kind = "eval";
  eval.split = "test";
  eval.global_step = 300;
  eval.accuracy = 0.8512;
  eval.cross_entropy = 0.41;
  back = parse_metrics_line(to_json_line(eval));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->split, "test");
  EXPECT_EQ(back->accuracy, 0.8512);
  EXPECT_EQ(back->cross_entropy, 0.41);
}

TEST(MetricsLine, TornOrForeignLinesAreSkipped) {
  for (const std::string& bad : {std::string(""), std::string("{\"kind\":\"step\",\"ti"),
                                 std::string("[1,2]"), std::string("{\"kind\":\"other\"}"),
                                 std::string("{\"time\":1}"), std::string("\xff\xfe")}) {
    EXPECT_FALSE(parse_metrics_line(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace pstrain
