// The chart `pstrain launch` leaves in a job directory (chart.svg): training loss and accuracy
// against time, drawn as a self-contained SVG (no fonts or scripts fetched; any browser shows
// it).
//
// Contract: render_chart is a pure function of its arguments. Two panels side by side, each
// with axes, five labelled ticks per axis and a legend: `loss` (one line per series, e.g. one
// per worker) and `accuracy` (one line with markers per series, e.g. "test", "validation"),
// x in seconds since the job started. Points need not be sorted (they are drawn in x order);
// non-finite points are left out; a panel with no point says "no data". Series names are
// XML-escaped. The output is well-formed XML (the tests parse it with Python's XML parser).
// Thread-safety: pure function.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace pstrain {

struct ChartSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (seconds, value)
};

std::string render_chart(const std::string& title, const std::vector<ChartSeries>& loss,
                         const std::vector<ChartSeries>& accuracy);

}  // namespace pstrain
