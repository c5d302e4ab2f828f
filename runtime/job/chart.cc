#include "runtime/job/chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace pstrain {
namespace {

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#17becf"};
constexpr double kPanelW = 440, kPanelH = 300, kLeft = 60, kRight = 10, kTop = 40, kBottom = 40;

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters are not allowed in XML 1.0 text.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t') out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// One panel at x offset `ox`: frame, ticks, lines, legend.
std::string panel(double ox, const std::string& title, const std::vector<ChartSeries>& series,
                  bool markers) {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  }
  std::string out;
  const double pw = kPanelW - kLeft - kRight, ph = kPanelH - kTop - kBottom;
  const double px = ox + kLeft, py = kTop;
  out += "<text x=\"" + num(ox + kPanelW / 2) + "\" y=\"24\" text-anchor=\"middle\" " +
         "font-size=\"14\">" + escape(title) + "</text>\n";
  out += "<rect x=\"" + num(px) + "\" y=\"" + num(py) + "\" width=\"" + num(pw) + "\" height=\"" +
         num(ph) + "\" fill=\"none\" stroke=\"#888\"/>\n";
  if (!(x0 <= x1)) {
    out += "<text x=\"" + num(px + pw / 2) + "\" y=\"" + num(py + ph / 2) +
           "\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n";
    return out;
  }
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  auto sx = [&](double x) { return px + (x - x0) / (x1 - x0) * pw; };
  auto sy = [&](double y) { return py + ph - (y - y0) / (y1 - y0) * ph; };
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    out += "<text x=\"" + num(sx(xv)) + "\" y=\"" + num(py + ph + 16) +
           "\" text-anchor=\"middle\" font-size=\"11\">" + tick_label(xv) + "</text>\n";
    out += "<text x=\"" + num(px - 6) + "\" y=\"" + num(sy(yv) + 4) +
           "\" text-anchor=\"end\" font-size=\"11\">" + tick_label(yv) + "</text>\n";
    out += "<line x1=\"" + num(px) + "\" y1=\"" + num(sy(yv)) + "\" x2=\"" + num(px + pw) +
           "\" y2=\"" + num(sy(yv)) + "\" stroke=\"#eee\"/>\n";
  }
  out += "<text x=\"" + num(px + pw / 2) + "\" y=\"" + num(py + ph + 32) +
         "\" text-anchor=\"middle\" font-size=\"11\">seconds</text>\n";
  for (size_t i = 0; i < series.size(); ++i) {
    const char* color = kColors[i % (sizeof kColors / sizeof kColors[0])];
    std::vector<std::pair<double, double>> pts;
    for (const auto& p : series[i].points) {
      if (std::isfinite(p.first) && std::isfinite(p.second)) pts.push_back(p);
    }
    std::stable_sort(pts.begin(), pts.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string coords;
    for (const auto& [x, y] : pts) coords += num(sx(x)) + "," + num(sy(y)) + " ";
    if (!coords.empty()) {
      out += "<polyline fill=\"none\" stroke=\"" + std::string(color) +
             "\" stroke-width=\"1.5\" points=\"" + coords + "\"/>\n";
    }
    if (markers) {
      for (const auto& [x, y] : pts) {
        out += "<circle cx=\"" + num(sx(x)) + "\" cy=\"" + num(sy(y)) + "\" r=\"3\" fill=\"" +
               color + "\"/>\n";
      }
    }
    const double ly = py + 14 + 14.0 * static_cast<double>(i);
    out += "<rect x=\"" + num(px + pw - 110) + "\" y=\"" + num(ly - 8) +
           "\" width=\"10\" height=\"3\" fill=\"" + color + "\"/>\n";
    out += "<text x=\"" + num(px + pw - 96) + "\" y=\"" + num(ly) + "\" font-size=\"11\">" +
           escape(series[i].name) + "</text>\n";
  }
  return out;
}

}  // namespace

std::string render_chart(const std::string& title, const std::vector<ChartSeries>& loss,
                         const std::vector<ChartSeries>& accuracy) {
  std::string out =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
      num(2 * kPanelW) + "\" height=\"" + num(kPanelH + 20) + "\" viewBox=\"0 0 " +
      num(2 * kPanelW) + " " + num(kPanelH + 20) + "\" font-family=\"sans-serif\">\n";
  out += "<title>" + escape(title) + "</title>\n";
  out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  out += panel(0, "training loss", loss, /*markers=*/false);
  out += panel(kPanelW, "accuracy", accuracy, /*markers=*/true);
  out += "<text x=\"" + num(kPanelW) + "\" y=\"" + num(kPanelH + 14) +
         "\" text-anchor=\"middle\" font-size=\"11\" fill=\"#555\">" + escape(title) + "</text>\n";
  out += "</svg>\n";
  return out;
}

}  // namespace pstrain
