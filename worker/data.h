// Training data: the MNIST IDX file format (gzip or raw), data sets, sharding and batches.
//
// Contract
// - Every byte read from disk is validated: magic number, element type, rank, dimensions and
//   lengths. A missing, truncated, corrupt or inconsistent file is a Status naming the file and
//   the fault; nothing here crashes on a bad file or reads short silently.
// - Images are scaled to [0, 1] floats, stored [count, rows, cols] (NHWC with c = 1); labels
//   are int32 in [0, 10).
// - A data directory holds train-images-idx3-ubyte, train-labels-idx1-ubyte,
//   t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or with a .gz suffix (the .gz
//   file is used when both exist).
// Thread-safety: Dataset is an immutable value after loading; a BatchSource is used by one
// thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace pstrain {

inline constexpr const char* kDefaultDataDir = "/usr/share/datasets/fashion-mnist";
inline constexpr int kNumClasses = 10;

// One IDX file's contents (element type unsigned byte, as MNIST uses).
struct IdxArray {
  std::vector<int32_t> dims;  // e.g. {60000, 28, 28}
  std::vector<uint8_t> data;  // product(dims) bytes
};

// Reads an IDX file of unsigned bytes; gzip-compressed when the file starts with the gzip
// magic, whatever its name. `expected_rank` (1 labels, 3 images) is checked.
Result<IdxArray> read_idx_file(const std::string& path, int expected_rank);

struct Dataset {
  int64_t count = 0;
  int rows = 0;
  int cols = 0;
  std::vector<float> images;    // count * rows * cols, in [0, 1]
  std::vector<int32_t> labels;  // count, in [0, kNumClasses)

  int64_t pixels() const { return static_cast<int64_t>(rows) * cols; }
};

// Loads an images file and a labels file and checks that they agree (counts) and that every
// label is a class in [0, kNumClasses).
Result<Dataset> load_dataset(const std::string& images_path, const std::string& labels_path);

struct TrainTestData {
  Dataset train;
  Dataset test;
  Dataset validation;  // held out of the training set by hold_out_validation(); empty before
};

// Moves the first `size` training examples into `validation`, as mnist_replica's input reader
// (read_data_sets(validation_size=5000)) does: training uses the rest. 0 holds out nothing. A
// size that would leave no training example is an InvalidArgument naming --validation_size.
Status hold_out_validation(TrainTestData& data, int64_t size);

// Loads the four files from `dir`. A missing directory or file is an error that says how to
// get the data (install Debian's dataset-fashion-mnist, or pass --data_dir).
Result<TrainTestData> load_data_dir(const std::string& dir);

// Loads only the test set (t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, raw or .gz) from
// `dir`, as `pstrain eval` needs; errors as load_data_dir's.
Result<Dataset> load_test_set(const std::string& dir);

// Checks that `dir` holds the four files and that their headers are valid, without decoding
// them all (what --download_only does). Returns a one-line description on success.
Result<std::string> check_data_dir(const std::string& dir);

// The images of one IDX images file (raw or gzip), in batches, without holding the whole file
// (what `pstrain predict` reads). open() first checks the whole file as read_idx_file does
// (header, length, gzip stream and CRC) without storing it, so a truncated or corrupt file is
// an error naming it before any image is returned; next() then reads the images in order,
// scaled to [0, 1]. Thread-safety: one thread.
class IdxImageStream {
 public:
  static Result<std::unique_ptr<IdxImageStream>> open(const std::string& path);
  ~IdxImageStream();
  IdxImageStream(const IdxImageStream&) = delete;
  IdxImageStream& operator=(const IdxImageStream&) = delete;

  int64_t count() const { return count_; }
  int rows() const { return rows_; }
  int cols() const { return cols_; }
  // Up to `max` (> 0) next images into `images` (resized to n * rows * cols); returns n, 0 at
  // the end. An error (the file changed since open()) names the file.
  Result<int64_t> next(int64_t max, std::vector<float>& images);

 private:
  struct Reader;
  IdxImageStream();
  std::unique_ptr<Reader> reader_;
  std::string path_;
  int64_t count_ = 0, read_ = 0;
  int rows_ = 0, cols_ = 0;
};

// Batches over one worker's shard of a data set, reshuffled each epoch.
//
// The shard of task `task_index` of `num_tasks` is every example whose position in a
// permutation fixed by `seed` is congruent to task_index modulo num_tasks, so shards are
// disjoint, cover the data set, and differ in size by at most one. Within the shard the order
// is reshuffled every epoch by a generator seeded from (seed, task_index, epoch), so two
// sources with equal arguments produce identical batches.
// `data` must outlive the source. Bad arguments (num_tasks <= 0, task_index out of range, span
// sizes that do not match `batch`, next() on an empty shard) are programmer errors and fail a
// PSTRAIN_CHECK; a data set smaller than num_tasks gives some tasks an empty shard, so check
// shard_size().
class BatchSource {
 public:
  BatchSource(const Dataset& data, int task_index, int num_tasks, uint64_t seed);

  // Fills images [batch, rows, cols] and labels [batch]; wraps into the next epoch as needed.
  void next(int batch, std::span<float> images, std::span<int32_t> labels);

  int64_t shard_size() const { return static_cast<int64_t>(shard_.size()); }
  // Complete passes over the shard so far (0 until its last example has been delivered).
  int64_t epoch() const { return epoch_; }

 private:
  void reshuffle();

  const Dataset* data_;
  int task_index_;
  uint64_t seed_;
  std::vector<int64_t> shard_;  // indices into data_, in this epoch's order
  int64_t pos_ = 0;
  int64_t epoch_ = 0;
};

}  // namespace pstrain
