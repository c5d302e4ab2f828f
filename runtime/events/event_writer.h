// EventWriter: a TensorBoard event file (what tf.summary.FileWriter writes), so that
// `tensorboard --logdir` shows a job's scalars and histograms while it runs.
//
// Contract
// - open(dir) creates `dir` (and its parents) and the file
//   `events.out.tfevents.<10-digit seconds>.<hostname>` in it (a suffix .<pid> when a file of
//   that name exists), and writes the first event (file_version "brain.Event:2").
// - Each event is one TFRecord: uint64 length (little-endian), uint32 masked CRC-32C of those
//   8 bytes, the serialised Event (runtime/events/proto/tensorboard.proto, TensorFlow's field
//   numbers), uint32 masked CRC-32C of the data (crc32c.h). This is the one place that writes
//   the format.
// - scalar() writes one simple_value; histogram() a HistogramProto of the finite values
//   (min, max, count, sum, sum of squares, and 30 equal-width buckets between min and max, empty
//   ones included; all equal values: one bucket). Non-finite values are counted in no bucket
//   and reported by the return value.
// - Every write is flushed to the file before it returns (a running job shows up live), so a
//   crash loses at most the event being written. Write errors (a full disk) are returned; the
//   caller decides whether to carry on.
// Thread-safety: one writer per thread.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>

#include "runtime/base/status.h"

namespace pstrain::events {

class EventWriter {
 public:
  static Result<std::unique_ptr<EventWriter>> open(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  const std::string& path() const { return path_; }
  // wall_time: seconds since the epoch (0: now).
  Status scalar(const std::string& tag, int64_t step, double value, double wall_time = 0);
  // Returns the number of non-finite values left out (NaN, Inf), or a write error.
  Result<int64_t> histogram(const std::string& tag, int64_t step, std::span<const float> values,
                            double wall_time = 0);

 private:
  EventWriter(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  Status write_record(const std::string& data);

  std::string path_;
  std::FILE* file_;
};

// The TFRecord framing of `data` (length, masked CRC of the length, data, masked CRC of the
// data): what EventWriter appends for each event.
std::string frame_record(const std::string& data);

}  // namespace pstrain::events
