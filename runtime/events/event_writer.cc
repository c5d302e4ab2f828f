#include "runtime/events/event_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>
#include <vector>

#include "runtime/base/files.h"
#include "runtime/events/crc32c.h"
#include "runtime/events/proto/tensorboard.pb.h"

namespace pstrain::events {
namespace {

constexpr int kBuckets = 30;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

std::string frame_record(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_u64(out, data.size());
  put_u32(out, masked_crc32c(crc32c(out.data(), 8)));
  out += data;
  put_u32(out, masked_crc32c(crc32c(data.data(), data.size())));
  return out;
}

Result<std::unique_ptr<EventWriter>> EventWriter::open(const std::string& dir) {
  PSTRAIN_RETURN_IF_ERROR(make_directories(dir, "--log_dir"));
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%010lld", static_cast<long long>(std::time(nullptr)));
  std::string path = dir + "/events.out.tfevents." + secs + "." + host_name();
  if (std::filesystem::exists(path)) {
    path.append(".");
    path.append(std::to_string(::getpid()));
  }
  std::FILE* f = std::fopen(path.c_str(), "wbx");
  if (!f) {
    return invalid_argument("cannot create the event file " + path + ": " + std::strerror(errno) +
                            " (check --log_dir)");
  }
  std::unique_ptr<EventWriter> w(new EventWriter(path, f));
  tb::Event first;
  first.set_wall_time(now_seconds());
  first.set_file_version("brain.Event:2");
  PSTRAIN_RETURN_IF_ERROR(w->write_record(first.SerializeAsString()));
  return w;
}

EventWriter::~EventWriter() {
  if (file_) std::fclose(file_);
}

Status EventWriter::write_record(const std::string& data) {
  const std::string record = frame_record(data);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fflush(file_) != 0) {
    return unavailable("cannot write the event file " + path_ + ": " + std::strerror(errno));
  }
  return Status();
}

Status EventWriter::scalar(const std::string& tag, int64_t step, double value, double wall_time) {
  tb::Event e;
  e.set_wall_time(wall_time > 0 ? wall_time : now_seconds());
  e.set_step(step);
  tb::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  return write_record(e.SerializeAsString());
}

Result<int64_t> EventWriter::histogram(const std::string& tag, int64_t step,
                                       std::span<const float> values, double wall_time) {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -lo;
  double sum = 0, sum_sq = 0;
  int64_t n = 0, skipped = 0;
  for (float f : values) {
    if (!std::isfinite(f)) {
      ++skipped;
      continue;
    }
    const double d = f;
    lo = std::min(lo, d);
    hi = std::max(hi, d);
    sum += d;
    sum_sq += d * d;
    ++n;
  }
  tb::Event e;
  e.set_wall_time(wall_time > 0 ? wall_time : now_seconds());
  e.set_step(step);
  tb::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  tb::HistogramProto* h = v->mutable_histo();
  if (n == 0) {
    lo = hi = 0;
  }
  h->set_min(lo);
  h->set_max(hi);
  h->set_num(static_cast<double>(n));
  h->set_sum(sum);
  h->set_sum_squares(sum_sq);
  if (n > 0) {
    if (hi > lo) {
      std::vector<double> counts(kBuckets, 0.0);
      const double width = (hi - lo) / kBuckets;
      for (float f : values) {
        if (!std::isfinite(f)) continue;
        // Bucket i holds (lo + i*width, lo + (i+1)*width]; the minimum goes into bucket 0.
        int i = static_cast<int>(std::ceil((static_cast<double>(f) - lo) / width)) - 1;
        counts[static_cast<size_t>(std::clamp(i, 0, kBuckets - 1))] += 1;
      }
      for (int i = 0; i < kBuckets; ++i) {
        h->add_bucket_limit(i == kBuckets - 1 ? hi : lo + (i + 1) * width);
        h->add_bucket(counts[static_cast<size_t>(i)]);
      }
    } else {
      h->add_bucket_limit(hi);
      h->add_bucket(static_cast<double>(n));
    }
  }
  PSTRAIN_RETURN_IF_ERROR(write_record(e.SerializeAsString()));
  return skipped;
}

}  // namespace pstrain::events
