#include "worker/data.h"
#include "runtime/base/check.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <utility>

namespace pstrain {
namespace {

// Largest data section accepted (bytes): far above any MNIST-style set, small enough that a
// corrupt header cannot make us allocate absurd amounts of memory.
constexpr uint64_t kMaxIdxDataBytes = uint64_t{1} << 30;
constexpr uint8_t kIdxTypeUnsignedByte = 0x08;
constexpr size_t kChunk = size_t{1} << 16;
// When counting trailing bytes of a gzip stream, stop counting here (a gzip bomb must not make
// us inflate for ever just to print a number).
constexpr uint64_t kMaxTrailingCount = uint64_t{64} << 20;

std::string dims_string(const std::vector<int32_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) s += 'x';
    s += std::to_string(dims[i]);
  }
  return s;
}

std::string hex_bytes(const uint8_t* b, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) s += ' ';
    s += kHex[b[i] >> 4];
    s += kHex[b[i] & 0xf];
  }
  return s;
}

Status file_error(const std::string& path, const std::string& what) {
  return data_loss(path + ": " + what);
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// A byte stream over one file: the raw bytes, or the inflated bytes when the file starts with
// the gzip magic. read() returns fewer bytes than asked only at the end of the stream.
class ByteStream {
 public:
  ByteStream() = default;
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;
  ~ByteStream() {
    if (zinit_) inflateEnd(&zs_);
  }

  Status open(const std::string& path) {
    path_ = path;
    errno = 0;
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (!file_) {
      const int err = errno;
      std::string msg = path + ": cannot open: " + std::strerror(err);
      if (err == ENOENT) return not_found(msg);
      return failed_precondition(msg);
    }
    struct stat st {};
    if (fstat(fileno(file_.get()), &st) != 0) {
      return failed_precondition(path + ": cannot stat: " + std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return failed_precondition(path + ": not a regular file");
    file_size_ = static_cast<uint64_t>(st.st_size);

    uint8_t magic[2] = {0, 0};
    const size_t n = std::fread(magic, 1, 2, file_.get());
    if (std::ferror(file_.get())) return read_error();
    gzip_ = n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (std::fseek(file_.get(), 0, SEEK_SET) != 0) {
      return failed_precondition(path + ": cannot seek: " + std::strerror(errno));
    }
    if (gzip_) {
      in_.resize(kChunk);
      zs_.next_in = in_.data();
      zs_.avail_in = 0;
      // 16 + MAX_WBITS: gzip wrapper only (header, CRC-32 and length are checked).
      if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) {
        return internal_error(path + ": zlib inflateInit2 failed");
      }
      zinit_ = true;
    }
    return {};
  }

  bool gzip() const { return gzip_; }
  uint64_t file_size() const { return file_size_; }

  // Reads up to n bytes into dst; *got < n only at the end of the stream.
  Status read(uint8_t* dst, size_t n, size_t* got) {
    return gzip_ ? read_gzip(dst, n, got) : read_raw(dst, n, got);
  }

  // Reads and discards the rest of the stream, counting it (up to about `limit` bytes).
  Status skip_rest(uint64_t limit, uint64_t* count) {
    std::vector<uint8_t> scratch(kChunk);
    *count = 0;
    while (*count < limit) {
      size_t got = 0;
      Status s = read(scratch.data(), scratch.size(), &got);
      *count += got;  // what was read before a fault, too
      if (!s.ok()) return s;
      if (got < scratch.size()) break;
    }
    return {};
  }

 private:
  Status read_error() {
    return file_error(path_, std::string("read error: ") + std::strerror(errno));
  }

  Status read_raw(uint8_t* dst, size_t n, size_t* got) {
    *got = std::fread(dst, 1, n, file_.get());
    if (*got < n && std::ferror(file_.get())) return read_error();
    return {};
  }

  // Makes at least `k` compressed bytes available unless the file ends first.
  Status fill_input(size_t k) {
    if (zs_.avail_in >= k) return {};
    std::memmove(in_.data(), zs_.next_in, zs_.avail_in);
    zs_.next_in = in_.data();
    while (zs_.avail_in < k) {
      const size_t r =
          std::fread(in_.data() + zs_.avail_in, 1, in_.size() - zs_.avail_in, file_.get());
      if (r == 0) {
        if (std::ferror(file_.get())) return read_error();
        break;
      }
      zs_.avail_in += static_cast<uInt>(r);
    }
    return {};
  }

  Status read_gzip(uint8_t* dst, size_t n, size_t* got) {
    *got = 0;
    while (*got < n && !ended_) {
      if (zs_.avail_in == 0) {
        PSTRAIN_RETURN_IF_ERROR(fill_input(1));
        if (zs_.avail_in == 0) {
          return file_error(path_, "truncated gzip stream: the file (" +
                                       std::to_string(file_size_) +
                                       " bytes) ends before the end of its compressed data");
        }
      }
      const size_t want = std::min<size_t>(n - *got, std::numeric_limits<uInt>::max());
      zs_.next_out = dst + *got;
      zs_.avail_out = static_cast<uInt>(want);
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      *got += want - zs_.avail_out;
      switch (rc) {
        case Z_OK:
        case Z_BUF_ERROR:  // no progress without more input; the loop refills
          break;
        case Z_STREAM_END: {
          // Another gzip member may follow (as `gzip -d` accepts); anything else is garbage.
          PSTRAIN_RETURN_IF_ERROR(fill_input(2));
          if (zs_.avail_in == 0) {
            ended_ = true;
          } else if (zs_.avail_in >= 2 && zs_.next_in[0] == 0x1f && zs_.next_in[1] == 0x8b) {
            if (inflateReset(&zs_) != Z_OK) return internal_error(path_ + ": inflateReset failed");
          } else {
            const uint64_t pos = static_cast<uint64_t>(std::ftell(file_.get()));
            const uint64_t extra = zs_.avail_in + (file_size_ > pos ? file_size_ - pos : 0);
            return file_error(path_, std::to_string(extra) +
                                         " bytes of trailing data after the end of the gzip "
                                         "stream (not another gzip member)");
          }
          break;
        }
        case Z_NEED_DICT:
          return file_error(path_, "corrupt gzip stream: it asks for a preset dictionary");
        case Z_DATA_ERROR:
          return file_error(path_, std::string("corrupt gzip stream: ") +
                                       (zs_.msg ? zs_.msg : "invalid compressed data"));
        case Z_MEM_ERROR:
          return internal_error(path_ + ": out of memory while inflating");
        default:
          return internal_error(path_ + ": inflate returned " + std::to_string(rc));
      }
    }
    return {};
  }

  std::string path_;
  FilePtr file_;
  uint64_t file_size_ = 0;
  bool gzip_ = false;
  bool zinit_ = false;
  bool ended_ = false;
  z_stream zs_{};
  std::vector<uint8_t> in_;
};

// Reads and validates an IDX file. With keep_data false the data section is checked (length,
// and for gzip the whole stream with its CRC) but not stored.
Result<IdxArray> read_idx(const std::string& path, int expected_rank, bool keep_data) {
  PSTRAIN_CHECK(expected_rank >= 1 && expected_rank <= 255);
  ByteStream in;
  PSTRAIN_RETURN_IF_ERROR(in.open(path));
  const char* what = in.gzip() ? "decompressed data" : "file";
  // A corrupt gzip stream can inflate to bytes that look like a bad header; report the gzip
  // fault, which is the cause, when the rest of the stream has one.
  auto fail = [&](Status s) -> Status {
    if (in.gzip()) {
      uint64_t ignored = 0;
      Status gz = in.skip_rest(kMaxIdxDataBytes + kMaxTrailingCount, &ignored);
      if (!gz.ok()) return gz;
    }
    return s;
  };

  const size_t header_len = 4 + 4 * static_cast<size_t>(expected_rank);
  uint8_t magic[4];
  size_t got = 0;
  PSTRAIN_RETURN_IF_ERROR(in.read(magic, 4, &got));
  if (got < 4) {
    return fail(file_error(path, std::string("truncated: ") + what + " has " + std::to_string(got) +
                                     " bytes, fewer than the 4-byte IDX magic number"));
  }
  const uint8_t want_magic[4] = {0, 0, kIdxTypeUnsignedByte, static_cast<uint8_t>(expected_rank)};
  if (magic[0] != 0 || magic[1] != 0) {
    return fail(file_error(path, std::string("not an IDX file: ") + what + " starts with " +
                                     hex_bytes(magic, 4) + ", expected " +
                                     hex_bytes(want_magic, 4)));
  }
  if (magic[2] != kIdxTypeUnsignedByte) {
    return fail(
        file_error(path, "IDX element type 0x" + hex_bytes(magic + 2, 1) +
                             " is not supported (only 0x08, unsigned byte, as MNIST uses)"));
  }
  if (magic[3] != expected_rank) {
    return fail(file_error(path, "IDX rank " + std::to_string(magic[3]) + ", expected " +
                                     std::to_string(expected_rank) +
                                     " (an images file has 3 dimensions, a labels file 1)"));
  }

  std::vector<uint8_t> dim_bytes(4 * static_cast<size_t>(expected_rank));
  PSTRAIN_RETURN_IF_ERROR(in.read(dim_bytes.data(), dim_bytes.size(), &got));
  if (got < dim_bytes.size()) {
    return fail(file_error(path, std::string("truncated: ") + what +
                                     " ends inside the IDX header (" + std::to_string(4 + got) +
                                     " of " + std::to_string(header_len) + " header bytes)"));
  }
  std::vector<uint32_t> dims(static_cast<size_t>(expected_rank));
  std::string dims_text;  // as written, for messages
  for (size_t i = 0; i < dims.size(); ++i) {
    const uint8_t* b = dim_bytes.data() + 4 * i;
    dims[i] =
        (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
    dims_text += (i > 0 ? "x" : "") + std::to_string(dims[i]);
  }
  uint64_t total = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 0) {
      return fail(file_error(
          path, "IDX dimension " + std::to_string(i) + " is 0 (header says " + dims_text + ")"));
    }
    // total <= 2^30 and dims[i] < 2^32 here, so the product cannot overflow 64 bits.
    total *= dims[i];
    if (total > kMaxIdxDataBytes) {
      return fail(file_error(path, "IDX header says " + dims_text + ", more than " +
                                       std::to_string(kMaxIdxDataBytes) +
                                       " bytes of data; the header is corrupt or this is not a "
                                       "data set pstrain can load"));
    }
  }
  IdxArray out;
  out.dims.assign(dims.begin(), dims.end());
  const std::string says =
      "header says " + dims_string(out.dims) + " = " + std::to_string(total) + " bytes of data";

  if (!in.gzip()) {
    // The file size tells both truncation and trailing bytes before anything is allocated.
    const uint64_t data_on_disk = in.file_size() - header_len;
    if (data_on_disk < total) {
      return file_error(path, "truncated: " + says + ", file has " + std::to_string(data_on_disk));
    }
    if (data_on_disk > total) {
      return file_error(path, says + ", file has " + std::to_string(data_on_disk - total) +
                                  " trailing bytes after it");
    }
    if (!keep_data) return out;
    out.data.resize(total);
    PSTRAIN_RETURN_IF_ERROR(in.read(out.data.data(), out.data.size(), &got));
    if (got < total) {  // the file shrank while we read it
      return file_error(path, "truncated: " + says + ", could read only " + std::to_string(got));
    }
    return out;
  }

  uint64_t have = 0;
  Status st;
  if (keep_data) {
    out.data.resize(total);
    got = 0;
    st = in.read(out.data.data(), out.data.size(), &got);
    have = got;
  } else {
    st = in.skip_rest(total, &have);
  }
  if (!st.ok()) {
    return Status(st.code(), st.message() + "; " + says + ", " +
                                 std::to_string(std::min(have, total)) +
                                 " inflated before the fault");
  }
  if (have < total) {
    out.data.clear();
    return file_error(path,
                      "truncated: " + says + ", decompressed data has " + std::to_string(have));
  }
  // Read the stream to its end: checks the CRC and finds trailing bytes.
  uint64_t extra = have - total;  // skip_rest may read past `total`
  uint64_t more = 0;
  PSTRAIN_RETURN_IF_ERROR(in.skip_rest(kMaxTrailingCount, &more));
  extra += more;
  if (extra > 0) {
    return file_error(path, says + ", decompressed data has " +
                                (extra >= kMaxTrailingCount ? "at least " : "") +
                                std::to_string(extra) + " trailing bytes after it");
  }
  return out;
}

Status check_labels(const std::string& path, const IdxArray& labels) {
  for (size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= kNumClasses) {
      return file_error(path, "label " + std::to_string(labels.data[i]) + " at index " +
                                  std::to_string(i) + " is not a class in [0, " +
                                  std::to_string(kNumClasses) + ")");
    }
  }
  return {};
}

Status check_counts(const std::string& images_path, const IdxArray& images,
                    const std::string& labels_path, const IdxArray& labels) {
  if (images.dims[0] != labels.dims[0]) {
    return data_loss(images_path + " has " + std::to_string(images.dims[0]) + " images but " +
                     labels_path + " has " + std::to_string(labels.dims[0]) +
                     " labels; the two files must come from the same data set");
  }
  return {};
}

// --- data directories -------------------------------------------------------------------

struct DataFiles {
  std::string train_images, train_labels, test_images, test_labels;
};

constexpr const char* kTrainImages = "train-images-idx3-ubyte";
constexpr const char* kTrainLabels = "train-labels-idx1-ubyte";
constexpr const char* kTestImages = "t10k-images-idx3-ubyte";
constexpr const char* kTestLabels = "t10k-labels-idx1-ubyte";

std::string how_to_get_data() {
  return std::string(
             "install Debian's package dataset-fashion-mnist (`apt-get install "
             "dataset-fashion-mnist` or `bash scripts/setup.sh`), which puts the files in ") +
         kDefaultDataDir + ", or pass --data_dir=DIR holding the four MNIST IDX files (" +
         kTrainImages + ", " + kTrainLabels + ", " + kTestImages + ", " + kTestLabels +
         ", raw or .gz)";
}

Result<DataFiles> find_data_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) {
    return not_found("data directory " + dir + " does not exist: " + how_to_get_data());
  }
  if (!fs::is_directory(st)) {
    return not_found("data directory " + dir + " is not a directory: " + how_to_get_data());
  }
  std::vector<std::string> missing;
  auto find = [&](const char* base) -> std::string {
    const fs::path gz = fs::path(dir) / (std::string(base) + ".gz");
    const fs::path raw = fs::path(dir) / base;
    std::error_code e;
    if (fs::exists(gz, e)) return gz.string();
    if (fs::exists(raw, e)) return raw.string();
    missing.push_back(gz.filename().string() + " or " + raw.filename().string());
    return {};
  };
  DataFiles f;
  f.train_images = find(kTrainImages);
  f.train_labels = find(kTrainLabels);
  f.test_images = find(kTestImages);
  f.test_labels = find(kTestLabels);
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size(); ++i) {
      if (i > 0) list += "; ";
      list += missing[i];
    }
    return not_found("data directory " + dir + " lacks " + list + ": " + how_to_get_data());
  }
  return f;
}

Status check_same_image_size(const std::string& a_path, int a_rows, int a_cols,
                             const std::string& b_path, int b_rows, int b_cols) {
  if (a_rows != b_rows || a_cols != b_cols) {
    return data_loss(a_path + " holds " + std::to_string(a_rows) + "x" + std::to_string(a_cols) +
                     " images but " + b_path + " holds " + std::to_string(b_rows) + "x" +
                     std::to_string(b_cols) + "; train and test images must be the same size");
  }
  return {};
}

// The permutation and per-epoch shuffles use mt19937_64 and std::seed_seq, whose outputs the
// standard fixes, and a Fisher-Yates shuffle written here with a fixed way of drawing bounded
// integers (std::shuffle and std::uniform_int_distribution are implementation-defined), so all
// workers agree on the shards whatever standard library each was built with.
uint64_t bounded(std::mt19937_64& rng, uint64_t n) {  // uniform in [0, n), n > 0
  const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                         std::numeric_limits<uint64_t>::max() % n;  // reject the biased tail
  uint64_t r;
  do {
    r = rng();
  } while (r >= limit);
  return r % n;
}

void fisher_yates(std::vector<int64_t>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(bounded(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

std::mt19937_64 seeded_rng(std::initializer_list<uint64_t> parts) {
  std::vector<uint32_t> words;
  for (uint64_t p : parts) {
    words.push_back(static_cast<uint32_t>(p));
    words.push_back(static_cast<uint32_t>(p >> 32));
  }
  std::seed_seq seq(words.begin(), words.end());
  return std::mt19937_64(seq);
}

constexpr uint64_t kPermutationStream = 0x7065726d;  // "perm"
constexpr uint64_t kEpochStream = 0x65706f63;        // "epoc"

}  // namespace

Result<IdxArray> read_idx_file(const std::string& path, int expected_rank) {
  return read_idx(path, expected_rank, /*keep_data=*/true);
}

struct IdxImageStream::Reader {
  ByteStream in;
};

IdxImageStream::IdxImageStream() = default;
IdxImageStream::~IdxImageStream() = default;

Result<std::unique_ptr<IdxImageStream>> IdxImageStream::open(const std::string& path) {
  // The whole file checked first (constant memory), then read again image by image.
  PSTRAIN_ASSIGN_OR_RETURN(IdxArray header, read_idx(path, 3, /*keep_data=*/false));
  std::unique_ptr<IdxImageStream> s(new IdxImageStream());
  s->reader_ = std::make_unique<Reader>();
  s->path_ = path;
  s->count_ = header.dims[0];
  s->rows_ = header.dims[1];
  s->cols_ = header.dims[2];
  PSTRAIN_RETURN_IF_ERROR(s->reader_->in.open(path));
  uint8_t skip[16];
  size_t got = 0;
  PSTRAIN_RETURN_IF_ERROR(s->reader_->in.read(skip, sizeof skip, &got));
  if (got < sizeof skip) return file_error(path, "truncated while reading it again");
  return s;
}

Result<int64_t> IdxImageStream::next(int64_t max, std::vector<float>& images) {
  PSTRAIN_CHECK(max > 0);
  const int64_t n = std::min(max, count_ - read_);
  const size_t pixels = static_cast<size_t>(rows_) * static_cast<size_t>(cols_);
  images.resize(static_cast<size_t>(n) * pixels);
  if (n == 0) return n;
  std::vector<uint8_t> bytes(images.size());
  size_t got = 0;
  PSTRAIN_RETURN_IF_ERROR(reader_->in.read(bytes.data(), bytes.size(), &got));
  if (got < bytes.size()) {
    return file_error(path_, "truncated: the file changed while it was read (image " +
                                 std::to_string(read_ + static_cast<int64_t>(got / pixels)) +
                                 " of " + std::to_string(count_) + ")");
  }
  for (size_t i = 0; i < bytes.size(); ++i) images[i] = static_cast<float>(bytes[i]) / 255.0f;
  read_ += n;
  return n;
}

Result<Dataset> load_dataset(const std::string& images_path, const std::string& labels_path) {
  PSTRAIN_ASSIGN_OR_RETURN(IdxArray images, read_idx(images_path, 3, true));
  PSTRAIN_ASSIGN_OR_RETURN(IdxArray labels, read_idx(labels_path, 1, true));
  PSTRAIN_RETURN_IF_ERROR(check_counts(images_path, images, labels_path, labels));
  PSTRAIN_RETURN_IF_ERROR(check_labels(labels_path, labels));
  Dataset d;
  d.count = images.dims[0];
  d.rows = images.dims[1];
  d.cols = images.dims[2];
  d.images.resize(images.data.size());
  for (size_t i = 0; i < images.data.size(); ++i) d.images[i] = images.data[i] / 255.f;
  d.labels.assign(labels.data.begin(), labels.data.end());
  return d;
}

Result<TrainTestData> load_data_dir(const std::string& dir) {
  PSTRAIN_ASSIGN_OR_RETURN(DataFiles f, find_data_files(dir));
  TrainTestData out;
  PSTRAIN_ASSIGN_OR_RETURN(out.train, load_dataset(f.train_images, f.train_labels));
  PSTRAIN_ASSIGN_OR_RETURN(out.test, load_dataset(f.test_images, f.test_labels));
  PSTRAIN_RETURN_IF_ERROR(check_same_image_size(f.train_images, out.train.rows, out.train.cols,
                                                f.test_images, out.test.rows, out.test.cols));
  return out;
}

Result<Dataset> load_test_set(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return not_found("data directory " + dir + " is not a directory: " + how_to_get_data());
  }
  std::string paths[2];
  const char* bases[2] = {kTestImages, kTestLabels};
  for (int i = 0; i < 2; ++i) {
    const fs::path gz = fs::path(dir) / (std::string(bases[i]) + ".gz");
    const fs::path raw = fs::path(dir) / bases[i];
    if (fs::exists(gz, ec)) {
      paths[i] = gz.string();
    } else if (fs::exists(raw, ec)) {
      paths[i] = raw.string();
    } else {
      return not_found("data directory " + dir + " lacks " + gz.filename().string() + " or " +
                       raw.filename().string() + ": " + how_to_get_data());
    }
  }
  return load_dataset(paths[0], paths[1]);
}

Result<std::string> check_data_dir(const std::string& dir) {
  PSTRAIN_ASSIGN_OR_RETURN(DataFiles f, find_data_files(dir));
  // Images: header, length, and (gzip) the whole stream with its CRC, without storing it.
  // Labels are small: read and range-checked in full.
  PSTRAIN_ASSIGN_OR_RETURN(IdxArray train_images, read_idx(f.train_images, 3, false));
  PSTRAIN_ASSIGN_OR_RETURN(IdxArray train_labels, read_idx(f.train_labels, 1, true));
  PSTRAIN_ASSIGN_OR_RETURN(IdxArray test_images, read_idx(f.test_images, 3, false));
  PSTRAIN_ASSIGN_OR_RETURN(IdxArray test_labels, read_idx(f.test_labels, 1, true));
  PSTRAIN_RETURN_IF_ERROR(check_counts(f.train_images, train_images, f.train_labels, train_labels));
  PSTRAIN_RETURN_IF_ERROR(check_counts(f.test_images, test_images, f.test_labels, test_labels));
  PSTRAIN_RETURN_IF_ERROR(check_labels(f.train_labels, train_labels));
  PSTRAIN_RETURN_IF_ERROR(check_labels(f.test_labels, test_labels));
  PSTRAIN_RETURN_IF_ERROR(check_same_image_size(f.train_images, train_images.dims[1],
                                                train_images.dims[2], f.test_images,
                                                test_images.dims[1], test_images.dims[2]));
  return dir + ": train " + dims_string(train_images.dims) + ", test " +
         dims_string(test_images.dims);
}

BatchSource::BatchSource(const Dataset& data, int task_index, int num_tasks, uint64_t seed)
    : data_(&data), task_index_(task_index), seed_(seed) {
  PSTRAIN_CHECK(num_tasks > 0, "num_tasks must be positive");
  PSTRAIN_CHECK(task_index >= 0 && task_index < num_tasks, "task_index out of range");
  PSTRAIN_CHECK(data.count >= 0 && static_cast<int64_t>(data.labels.size()) == data.count &&
                static_cast<int64_t>(data.images.size()) == data.count * data.pixels());
  std::vector<int64_t> perm(static_cast<size_t>(data.count));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::mt19937_64 rng = seeded_rng({kPermutationStream, seed});
  fisher_yates(perm, rng);
  for (size_t p = static_cast<size_t>(task_index); p < perm.size();
       p += static_cast<size_t>(num_tasks)) {
    shard_.push_back(perm[p]);
  }
  reshuffle();
}

void BatchSource::reshuffle() {
  // The order of an epoch depends only on (seed, task_index, epoch), not on earlier epochs.
  std::sort(shard_.begin(), shard_.end());
  std::mt19937_64 rng = seeded_rng(
      {kEpochStream, seed_, static_cast<uint64_t>(task_index_), static_cast<uint64_t>(epoch_)});
  fisher_yates(shard_, rng);
  pos_ = 0;
}

void BatchSource::next(int batch, std::span<float> images, std::span<int32_t> labels) {
  PSTRAIN_CHECK(batch > 0, "batch must be positive");
  PSTRAIN_CHECK(!shard_.empty(), "empty shard: check shard_size() before asking for batches");
  const int64_t pixels = data_->pixels();
  PSTRAIN_CHECK(static_cast<int64_t>(images.size()) == batch * pixels, "images span size");
  PSTRAIN_CHECK(static_cast<int64_t>(labels.size()) == batch, "labels span size");
  for (int b = 0; b < batch; ++b) {
    const int64_t idx = shard_[static_cast<size_t>(pos_)];
    std::copy_n(data_->images.begin() + idx * pixels, pixels, images.begin() + b * pixels);
    labels[static_cast<size_t>(b)] = data_->labels[static_cast<size_t>(idx)];
    if (++pos_ == shard_size()) {
      ++epoch_;
      reshuffle();
    }
  }
}

Status hold_out_validation(TrainTestData& data, int64_t size) {
  if (size < 0 || size >= data.train.count) {
    return invalid_argument("--validation_size=" + std::to_string(size) + " must be at least 0 " +
                            "and less than the " + std::to_string(data.train.count) +
                            " training examples");
  }
  Dataset& train = data.train;
  Dataset& val = data.validation;
  const auto pixels = static_cast<size_t>(train.pixels());
  const auto n = static_cast<size_t>(size);
  val.count = size;
  val.rows = train.rows;
  val.cols = train.cols;
  val.images.assign(train.images.begin(),
                    train.images.begin() + static_cast<ptrdiff_t>(n * pixels));
  val.labels.assign(train.labels.begin(), train.labels.begin() + static_cast<ptrdiff_t>(n));
  train.images.erase(train.images.begin(),
                     train.images.begin() + static_cast<ptrdiff_t>(n * pixels));
  train.labels.erase(train.labels.begin(), train.labels.begin() + static_cast<ptrdiff_t>(n));
  // No shrink_to_fit: it would copy the remaining images while the originals still live (the
  // worker's peak grew by 170 MB for Fashion-MNIST); the held-out part's capacity stays unused.
  train.count -= size;
  return Status();
}

}  // namespace pstrain
