#include "worker/data.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include <zlib.h>
#include "tests/temp_dir.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace pstrain {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using Bytes = std::vector<uint8_t>;

void put_be32(Bytes& b, uint32_t v) {
  b.push_back(static_cast<uint8_t>(v >> 24));
  b.push_back(static_cast<uint8_t>(v >> 16));
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

// An IDX file of unsigned bytes, built independently of the reader.
Bytes idx_bytes(const std::vector<uint32_t>& dims, const Bytes& data) {
  Bytes b = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) put_be32(b, d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes pattern(size_t n, int mul, int add) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((i * mul + add) % 256);
  return b;
}

Bytes labels_pattern(size_t n, int add) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((i + add) % 10);
  return b;
}

void write_raw(const fs::path& p, const Bytes& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << p;
}

void write_gz(const fs::path& p, const Bytes& b) {
  gzFile g = gzopen(p.c_str(), "wb");
  ASSERT_NE(g, nullptr) << p;
  if (!b.empty()) {
    ASSERT_EQ(gzwrite(g, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  }
  ASSERT_EQ(gzclose(g), Z_OK);
}

Bytes read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

class DataTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes a complete data directory: train `n_train` and test `n_test` images of rows x cols.
  void write_dir(const fs::path& d, uint32_t n_train, uint32_t n_test, uint32_t rows, uint32_t cols,
                 bool gz) {
    fs::create_directories(d);
    auto w = [&](const std::string& name, const Bytes& b) {
      if (gz) {
        write_gz(d / (name + ".gz"), b);
      } else {
        write_raw(d / name, b);
      }
    };
    w("train-images-idx3-ubyte",
      idx_bytes({n_train, rows, cols}, pattern(size_t{n_train} * rows * cols, 7, 1)));
    w("train-labels-idx1-ubyte", idx_bytes({n_train}, labels_pattern(n_train, 0)));
    w("t10k-images-idx3-ubyte",
      idx_bytes({n_test, rows, cols}, pattern(size_t{n_test} * rows * cols, 3, 5)));
    w("t10k-labels-idx1-ubyte", idx_bytes({n_test}, labels_pattern(n_test, 3)));
  }

  testing_util::TempDir tmp_{"pstrain_data"};
  fs::path dir_ = tmp_.path();
};

// --- read_idx_file ----------------------------------------------------------------------

TEST_F(DataTest, ReadsRawAndGzipIdentically) {
  const Bytes data = pattern(4 * 3 * 5, 13, 2);
  const Bytes file = idx_bytes({4, 3, 5}, data);
  write_raw(path("img"), file);
  write_gz(path("img.gz"), file);
  for (const char* name : {"img", "img.gz"}) {
    auto r = read_idx_file(path(name), 3);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->dims, (std::vector<int32_t>{4, 3, 5})) << name;
    EXPECT_EQ(r->data, data) << name;
  }
}

TEST_F(DataTest, DetectsGzipByMagicNotName) {
  const Bytes data = pattern(7, 1, 0);
  const Bytes file = idx_bytes({7}, data);
  write_gz(path("labels_no_suffix"), file);  // gzip without .gz
  write_raw(path("raw.gz"), file);           // raw with .gz
  for (const char* name : {"labels_no_suffix", "raw.gz"}) {
    auto r = read_idx_file(path(name), 1);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->data, data) << name;
  }
}

TEST_F(DataTest, ReadsConcatenatedGzipMembers) {
  const Bytes file = idx_bytes({2, 2, 3}, pattern(12, 5, 9));
  write_gz(path("a.gz"), Bytes(file.begin(), file.begin() + 10));
  write_gz(path("b.gz"), Bytes(file.begin() + 10, file.end()));
  Bytes both = read_all(path("a.gz"));
  const Bytes b = read_all(path("b.gz"));
  both.insert(both.end(), b.begin(), b.end());
  write_raw(path("cat.gz"), both);
  auto r = read_idx_file(path("cat.gz"), 3);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->data, pattern(12, 5, 9));
}

// Expects reading `name` to fail with DataLoss, naming the file and containing `fault`.
void expect_bad(const std::string& p, int rank, const std::string& fault) {
  auto r = read_idx_file(p, rank);
  ASSERT_FALSE(r.ok()) << p << " was accepted";
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().to_string();
  EXPECT_THAT(r.status().message(), HasSubstr(p));
  EXPECT_THAT(r.status().message(), HasSubstr(fault));
}

TEST_F(DataTest, TruncatedHeader) {
  const Bytes file = idx_bytes({4, 3, 5}, pattern(60, 1, 0));
  write_raw(path("short_magic"), Bytes(file.begin(), file.begin() + 3));
  expect_bad(path("short_magic"), 3, "truncated");
  write_raw(path("short_dims"), Bytes(file.begin(), file.begin() + 10));
  expect_bad(path("short_dims"), 3, "truncated");
  write_gz(path("short_dims.gz"), Bytes(file.begin(), file.begin() + 10));
  expect_bad(path("short_dims.gz"), 3, "truncated");
  write_raw(path("empty"), {});
  expect_bad(path("empty"), 1, "truncated");
}

TEST_F(DataTest, TruncatedData) {
  const Bytes file = idx_bytes({4, 3, 5}, pattern(60, 1, 0));
  const Bytes cut(file.begin(), file.end() - 1);
  write_raw(path("cut"), cut);
  expect_bad(path("cut"), 3, "truncated: header says 4x3x5 = 60 bytes of data, file has 59");
  write_gz(path("cut.gz"), cut);
  expect_bad(path("cut.gz"), 3, "truncated: header says 4x3x5 = 60 bytes of data");
}

TEST_F(DataTest, TrailingBytes) {
  Bytes file = idx_bytes({5}, labels_pattern(5, 0));
  file.push_back(0);
  file.push_back(1);
  write_raw(path("trail"), file);
  expect_bad(path("trail"), 1, "trailing");
  write_gz(path("trail.gz"), file);
  expect_bad(path("trail.gz"), 1, "trailing");
}

TEST_F(DataTest, GarbageAfterGzipStream) {
  write_gz(path("g.gz"), idx_bytes({5}, labels_pattern(5, 0)));
  Bytes b = read_all(path("g.gz"));
  b.push_back('x');
  b.push_back('y');
  write_raw(path("g.gz"), b);
  expect_bad(path("g.gz"), 1, "trailing");
}

TEST_F(DataTest, WrongMagic) {
  Bytes file = idx_bytes({4, 3, 5}, pattern(60, 1, 0));
  file[1] = 0x01;
  write_raw(path("magic"), file);
  expect_bad(path("magic"), 3, "not an IDX file");
  write_raw(path("text"), Bytes{'h', 'e', 'l', 'l', 'o', '\n'});
  expect_bad(path("text"), 1, "not an IDX file");
}

TEST_F(DataTest, WrongTypeByte) {
  Bytes file = idx_bytes({4, 3, 5}, pattern(60, 1, 0));
  file[2] = 0x0D;  // float
  write_raw(path("float"), file);
  expect_bad(path("float"), 3, "element type 0x0d");
}

TEST_F(DataTest, WrongRank) {
  write_raw(path("labels"), idx_bytes({5}, labels_pattern(5, 0)));
  expect_bad(path("labels"), 3, "rank 1, expected 3");
  write_raw(path("images"), idx_bytes({1, 2, 2}, pattern(4, 1, 0)));
  expect_bad(path("images"), 1, "rank 3, expected 1");
}

TEST_F(DataTest, ZeroAndAbsurdDimensions) {
  write_raw(path("zero"), idx_bytes({4, 0, 5}, {}));
  expect_bad(path("zero"), 3, "dimension 1 is 0");
  // 2^32-1 cubed would overflow 64 bits; must be rejected from the header alone.
  write_raw(path("huge"), idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu}, pattern(16, 1, 0)));
  expect_bad(path("huge"), 3, "4294967295x4294967295x4294967295");
  write_gz(path("huge.gz"), idx_bytes({70000, 1000, 1000}, pattern(16, 1, 0)));
  expect_bad(path("huge.gz"), 3, "70000x1000x1000");
}

TEST_F(DataTest, CorruptGzip) {
  const Bytes file = idx_bytes({20, 10, 10}, pattern(2000, 37, 11));
  write_gz(path("ok.gz"), file);
  const Bytes good = read_all(path("ok.gz"));
  ASSERT_GT(good.size(), 40u);

  Bytes flipped = good;
  for (size_t i = 12; i < good.size() - 8; i += 3) flipped[i] ^= 0x5a;  // deflate body
  write_raw(path("flipped.gz"), flipped);
  expect_bad(path("flipped.gz"), 3, "gzip");

  Bytes bad_crc = good;
  bad_crc[good.size() - 8] ^= 0xff;  // CRC-32 of the trailer
  write_raw(path("crc.gz"), bad_crc);
  expect_bad(path("crc.gz"), 3, "corrupt gzip stream");

  write_raw(path("cut.gz"), Bytes(good.begin(), good.end() - 4));  // trailer cut
  expect_bad(path("cut.gz"), 3, "truncated gzip stream");

  write_raw(path("half.gz"), Bytes(good.begin(), good.begin() + good.size() / 2));
  expect_bad(path("half.gz"), 3, "gzip");

  write_raw(path("magic_only.gz"), Bytes{0x1f, 0x8b});
  expect_bad(path("magic_only.gz"), 3, "gzip");
}

TEST_F(DataTest, MissingFileIsNotFound) {
  auto r = read_idx_file(path("nope"), 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(path("nope")));
}

// --- load_dataset -----------------------------------------------------------------------

TEST_F(DataTest, LoadDatasetScalesPixels) {
  Bytes pixels = pattern(3 * 2 * 2, 1, 0);
  pixels[0] = 0;
  pixels[1] = 255;
  pixels[2] = 51;
  write_gz(path("i.gz"), idx_bytes({3, 2, 2}, pixels));
  write_raw(path("l"), idx_bytes({3}, Bytes{9, 0, 4}));
  auto r = load_dataset(path("i.gz"), path("l"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->count, 3);
  EXPECT_EQ(r->rows, 2);
  EXPECT_EQ(r->cols, 2);
  EXPECT_EQ(r->pixels(), 4);
  EXPECT_EQ(r->labels, (std::vector<int32_t>{9, 0, 4}));
  ASSERT_EQ(r->images.size(), 12u);
  EXPECT_EQ(r->images[0], 0.f);
  EXPECT_EQ(r->images[1], 1.f);
  EXPECT_FLOAT_EQ(r->images[2], 0.2f);
  for (size_t i = 0; i < pixels.size(); ++i) {
    EXPECT_FLOAT_EQ(r->images[i], pixels[i] / 255.f) << i;
  }
}

TEST_F(DataTest, LoadDatasetCountMismatch) {
  write_raw(path("i"), idx_bytes({3, 2, 2}, pattern(12, 1, 0)));
  write_raw(path("l"), idx_bytes({4}, labels_pattern(4, 0)));
  auto r = load_dataset(path("i"), path("l"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(path("i")));
  EXPECT_THAT(r.status().message(), HasSubstr(path("l")));
  EXPECT_THAT(r.status().message(), HasSubstr("3 images"));
  EXPECT_THAT(r.status().message(), HasSubstr("4 labels"));
}

TEST_F(DataTest, LoadDatasetLabelOutOfRange) {
  write_raw(path("i"), idx_bytes({3, 2, 2}, pattern(12, 1, 0)));
  write_raw(path("l"), idx_bytes({3}, Bytes{1, 10, 2}));
  auto r = load_dataset(path("i"), path("l"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(path("l")));
  EXPECT_THAT(r.status().message(), HasSubstr("label 10 at index 1"));
}

TEST_F(DataTest, LoadDatasetWrongFileOrder) {
  write_raw(path("i"), idx_bytes({3, 2, 2}, pattern(12, 1, 0)));
  write_raw(path("l"), idx_bytes({3}, labels_pattern(3, 0)));
  auto r = load_dataset(path("l"), path("i"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("rank"));
}

// --- data directories -------------------------------------------------------------------

TEST_F(DataTest, LoadDataDirRawAndGzip) {
  for (bool gz : {false, true}) {
    const fs::path d = dir_ / (gz ? "gz" : "raw");
    write_dir(d, 6, 4, 3, 2, gz);
    auto r = load_data_dir(d.string());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->train.count, 6);
    EXPECT_EQ(r->test.count, 4);
    EXPECT_EQ(r->train.rows, 3);
    EXPECT_EQ(r->train.cols, 2);
    EXPECT_EQ(r->test.labels, (std::vector<int32_t>{3, 4, 5, 6}));
    const Bytes px = pattern(6 * 3 * 2, 7, 1);
    ASSERT_EQ(r->train.images.size(), px.size());
    for (size_t i = 0; i < px.size(); ++i) EXPECT_FLOAT_EQ(r->train.images[i], px[i] / 255.f);

    auto c = check_data_dir(d.string());
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_THAT(*c, HasSubstr("train 6x3x2, test 4x3x2"));
    EXPECT_EQ(c->find('\n'), std::string::npos);
  }
}

TEST_F(DataTest, PrefersGzipWhenBothExist) {
  const fs::path d = dir_ / "both";
  write_dir(d, 5, 2, 2, 2, /*gz=*/true);
  // Raw files with a different train count next to the .gz ones.
  write_raw(d / "train-images-idx3-ubyte", idx_bytes({9, 2, 2}, pattern(36, 1, 0)));
  write_raw(d / "train-labels-idx1-ubyte", idx_bytes({9}, labels_pattern(9, 0)));
  auto r = load_data_dir(d.string());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->train.count, 5);
  auto c = check_data_dir(d.string());
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_THAT(*c, HasSubstr("train 5x2x2"));
}

TEST_F(DataTest, MissingDirSaysHowToGetData) {
  const std::string d = path("no_such_dir");
  for (const Status& s : {load_data_dir(d).status(), check_data_dir(d).status()}) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kNotFound);
    EXPECT_THAT(s.message(), HasSubstr(d));
    EXPECT_THAT(s.message(), HasSubstr("dataset-fashion-mnist"));
    EXPECT_THAT(s.message(), HasSubstr("/usr/share/datasets/fashion-mnist"));
    EXPECT_THAT(s.message(), HasSubstr("--data_dir"));
  }
}

TEST_F(DataTest, MissingFileNamesIt) {
  const fs::path d = dir_ / "partial";
  write_dir(d, 4, 2, 2, 2, false);
  fs::remove(d / "t10k-labels-idx1-ubyte");
  for (const Status& s :
       {load_data_dir(d.string()).status(), check_data_dir(d.string()).status()}) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kNotFound);
    EXPECT_THAT(s.message(), HasSubstr("t10k-labels-idx1-ubyte.gz or t10k-labels-idx1-ubyte"));
    EXPECT_THAT(s.message(), Not(HasSubstr("lacks train-images")));
    EXPECT_THAT(s.message(), HasSubstr("dataset-fashion-mnist"));
  }
}

TEST_F(DataTest, CheckDataDirDetectsBadFiles) {
  const fs::path d = dir_ / "bad";
  write_dir(d, 8, 4, 3, 3, true);
  // Corrupt the deflate data of the test images (the header stays readable).
  const fs::path ti = d / "t10k-images-idx3-ubyte.gz";
  Bytes b = read_all(ti);
  b[b.size() - 8] ^= 0xff;  // CRC-32
  write_raw(ti, b);
  auto c = check_data_dir(d.string());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(ti.string()));

  // A truncated raw images file is found from its length.
  const fs::path r = dir_ / "bad_raw";
  write_dir(r, 8, 4, 3, 3, false);
  const fs::path tr = r / "train-images-idx3-ubyte";
  Bytes t = read_all(tr);
  ASSERT_GT(t.size(), 5u);
  t.erase(t.end() - 5, t.end());
  write_raw(tr, t);
  c = check_data_dir(r.string());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(tr.string()));
  EXPECT_THAT(c.status().message(), HasSubstr("truncated"));

  // Count mismatch between images and labels.
  const fs::path m = dir_ / "mismatch";
  write_dir(m, 8, 4, 3, 3, false);
  write_raw(m / "train-labels-idx1-ubyte", idx_bytes({7}, labels_pattern(7, 0)));
  c = check_data_dir(m.string());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("8 images"));
  EXPECT_THAT(c.status().message(), HasSubstr("7 labels"));
}

TEST_F(DataTest, TrainAndTestImageSizesMustAgree) {
  const fs::path d = dir_ / "sizes";
  write_dir(d, 4, 2, 3, 3, false);
  write_raw(d / "t10k-images-idx3-ubyte", idx_bytes({2, 4, 4}, pattern(32, 1, 0)));
  for (const Status& s :
       {load_data_dir(d.string()).status(), check_data_dir(d.string()).status()}) {
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr("3x3"));
    EXPECT_THAT(s.message(), HasSubstr("4x4"));
  }
}

// --- BatchSource ------------------------------------------------------------------------

// A data set whose example i has label i % 10 and every pixel equal to i (as a float), so
// batches can be traced back to example indices.
Dataset indexed_dataset(int64_t count, int rows, int cols) {
  Dataset d;
  d.count = count;
  d.rows = rows;
  d.cols = cols;
  d.images.resize(static_cast<size_t>(count * rows * cols));
  d.labels.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t p = 0; p < d.pixels(); ++p) d.images[i * d.pixels() + p] = static_cast<float>(i);
    d.labels[i] = static_cast<int32_t>(i % 10);
  }
  return d;
}

// Draws `n` examples one batch at a time and returns their indices.
std::vector<int64_t> draw(BatchSource& src, const Dataset& d, int batch, int n_batches) {
  std::vector<float> img(static_cast<size_t>(batch * d.pixels()));
  std::vector<int32_t> lab(static_cast<size_t>(batch));
  std::vector<int64_t> out;
  for (int k = 0; k < n_batches; ++k) {
    src.next(batch, img, lab);
    for (int b = 0; b < batch; ++b) {
      const int64_t idx = static_cast<int64_t>(img[static_cast<size_t>(b * d.pixels())]);
      for (int64_t p = 0; p < d.pixels(); ++p) {
        EXPECT_EQ(img[static_cast<size_t>(b * d.pixels() + p)], static_cast<float>(idx));
      }
      EXPECT_EQ(lab[static_cast<size_t>(b)], d.labels[static_cast<size_t>(idx)]);
      out.push_back(idx);
    }
  }
  return out;
}

TEST(BatchSource, ShardsAreDisjointCoveringAndBalanced) {
  const Dataset d = indexed_dataset(103, 2, 3);
  for (int tasks : {1, 2, 3, 7, 103}) {
    std::vector<int> seen(103, 0);
    int64_t min_size = 1 << 30, max_size = 0;
    for (int t = 0; t < tasks; ++t) {
      BatchSource src(d, t, tasks, 42);
      min_size = std::min(min_size, src.shard_size());
      max_size = std::max(max_size, src.shard_size());
      // One epoch, one example at a time: exactly the shard.
      const auto idx = draw(src, d, 1, static_cast<int>(src.shard_size()));
      EXPECT_EQ(src.epoch(), 1);
      std::set<int64_t> uniq(idx.begin(), idx.end());
      EXPECT_EQ(uniq.size(), idx.size()) << "shard repeats an example within an epoch";
      for (int64_t i : idx) ++seen[static_cast<size_t>(i)];
    }
    for (int i = 0; i < 103; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], 1) << "example " << i;
    EXPECT_LE(max_size - min_size, 1) << tasks << " tasks";
  }
}

TEST(BatchSource, ShardIsNotAContiguousBlock) {
  // The permutation spreads a shard over the data set rather than taking the first N.
  const Dataset d = indexed_dataset(100, 1, 1);
  BatchSource src(d, 0, 2, 1);
  auto idx = draw(src, d, 50, 1);
  std::sort(idx.begin(), idx.end());
  std::vector<int64_t> first_half(50), evens(50);
  for (int i = 0; i < 50; ++i) {
    first_half[static_cast<size_t>(i)] = i;
    evens[static_cast<size_t>(i)] = 2 * i;
  }
  EXPECT_NE(idx, first_half);
  EXPECT_NE(idx, evens);
}

TEST(BatchSource, DeterministicForEqualSeeds) {
  const Dataset d = indexed_dataset(50, 2, 2);
  BatchSource a(d, 1, 3, 7), b(d, 1, 3, 7);
  EXPECT_EQ(draw(a, d, 4, 20), draw(b, d, 4, 20));
}

TEST(BatchSource, DifferentSeedGivesDifferentOrder) {
  const Dataset d = indexed_dataset(50, 2, 2);
  BatchSource a(d, 0, 1, 7), b(d, 0, 1, 8);
  const auto ia = draw(a, d, 50, 1), ib = draw(b, d, 50, 1);
  EXPECT_NE(ia, ib);
  EXPECT_EQ(std::set<int64_t>(ia.begin(), ia.end()), std::set<int64_t>(ib.begin(), ib.end()));
}

TEST(BatchSource, DifferentSeedGivesDifferentShards) {
  const Dataset d = indexed_dataset(60, 1, 1);
  BatchSource a(d, 0, 3, 7), b(d, 0, 3, 8);
  const auto ia = draw(a, d, 20, 1), ib = draw(b, d, 20, 1);
  EXPECT_NE(std::set<int64_t>(ia.begin(), ia.end()), std::set<int64_t>(ib.begin(), ib.end()));
}

TEST(BatchSource, WrapsAcrossEpochsAndReshuffles) {
  const Dataset d = indexed_dataset(40, 1, 2);
  BatchSource src(d, 1, 4, 99);
  ASSERT_EQ(src.shard_size(), 10);
  EXPECT_EQ(src.epoch(), 0);
  // Batches of 3 over a shard of 10: 10 batches = exactly 3 epochs, crossing epoch ends
  // mid-batch.
  const auto idx = draw(src, d, 3, 10);
  EXPECT_EQ(src.epoch(), 3);
  ASSERT_EQ(idx.size(), 30u);
  std::vector<std::vector<int64_t>> epochs;
  for (int e = 0; e < 3; ++e) {
    epochs.emplace_back(idx.begin() + 10 * e, idx.begin() + 10 * (e + 1));
    std::set<int64_t> s(epochs.back().begin(), epochs.back().end());
    EXPECT_EQ(s.size(), 10u) << "epoch " << e << " is not a permutation of the shard";
    EXPECT_EQ(s, std::set<int64_t>(epochs[0].begin(), epochs[0].end())) << "epoch " << e;
  }
  EXPECT_TRUE(epochs[0] != epochs[1] || epochs[1] != epochs[2]) << "order never reshuffled";
  EXPECT_NE(epochs[0], epochs[1]);
}

TEST(BatchSource, BatchLargerThanShardWraps) {
  const Dataset d = indexed_dataset(5, 1, 1);
  BatchSource src(d, 0, 1, 3);
  const auto idx = draw(src, d, 12, 1);
  EXPECT_EQ(src.epoch(), 2);
  std::vector<int> count(5, 0);
  for (int64_t i : idx) ++count[static_cast<size_t>(i)];
  for (int c : count) EXPECT_GE(c, 2);
}

// The guards are PSTRAIN_CHECKs, so they hold in the Release builds CI runs (assert would not).
TEST(BatchSourceDeathTest, ProgrammerErrorsFailACheckInEveryBuild) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Dataset d = indexed_dataset(10, 2, 2);
  EXPECT_DEATH(BatchSource(d, 0, 0, 1), "check failed at .*num_tasks must be positive");
  EXPECT_DEATH(BatchSource(d, 3, 2, 1), "check failed at .*task_index out of range");
  BatchSource src(d, 0, 1, 1);
  std::vector<float> images(static_cast<size_t>(d.pixels()));
  std::vector<int32_t> labels(2);  // one label too many for a batch of 1
  EXPECT_DEATH(src.next(1, images, labels), "check failed at .*labels span size");
}

// --- IdxImageStream, load_test_set ------------------------------------------------------

TEST_F(DataTest, ImageStreamReadsInBatchesAsTheWholeFile) {
  const Bytes data = pattern(7 * 3 * 5, 11, 4);
  const Bytes file = idx_bytes({7, 3, 5}, data);
  write_raw(path("img"), file);
  write_gz(path("img.gz"), file);
  for (const char* name : {"img", "img.gz"}) {
    auto s = IdxImageStream::open(path(name));
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ((*s)->count(), 7);
    EXPECT_EQ((*s)->rows(), 3);
    EXPECT_EQ((*s)->cols(), 5);
    std::vector<float> all, batch;
    std::vector<int64_t> sizes;
    while (true) {
      auto n = (*s)->next(3, batch);
      ASSERT_TRUE(n.ok()) << n.status().to_string();
      if (*n == 0) break;
      sizes.push_back(*n);
      EXPECT_EQ(batch.size(), static_cast<size_t>(*n) * 15);
      all.insert(all.end(), batch.begin(), batch.end());
    }
    EXPECT_EQ(sizes, (std::vector<int64_t>{3, 3, 1})) << name;
    ASSERT_EQ(all.size(), data.size());
    for (size_t i = 0; i < data.size(); ++i) {
      ASSERT_EQ(all[i], static_cast<float>(data[i]) / 255.0f) << name << " element " << i;
    }
  }
}

TEST_F(DataTest, ImageStreamRefusesABadFileBeforeTheFirstImage) {
  const Bytes file = idx_bytes({4, 3, 5}, pattern(60, 1, 0));
  const Bytes cut(file.begin(), file.end() - 7);
  write_raw(path("cut"), cut);
  write_gz(path("cut.gz"), cut);
  for (const char* name : {"cut", "cut.gz"}) {
    auto s = IdxImageStream::open(path(name));
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_THAT(s.status().message(), HasSubstr(path(name)));
    EXPECT_THAT(s.status().message(), HasSubstr("truncated"));
  }
  write_raw(path("labels"), idx_bytes({4}, labels_pattern(4, 0)));
  auto labels = IdxImageStream::open(path("labels"));
  ASSERT_FALSE(labels.ok());
  EXPECT_THAT(labels.status().message(), HasSubstr("rank"));
}

TEST_F(DataTest, LoadTestSetNeedsOnlyTheTestFiles) {
  write_dir(dir_ / "d", 6, 4, 3, 5, /*gz=*/true);
  fs::remove(dir_ / "d" / "train-images-idx3-ubyte.gz");
  auto test = load_test_set((dir_ / "d").string());
  ASSERT_TRUE(test.ok()) << test.status().to_string();
  EXPECT_EQ(test->count, 4);
  EXPECT_EQ(test->rows, 3);
  fs::remove(dir_ / "d" / "t10k-labels-idx1-ubyte.gz");
  auto missing = load_test_set((dir_ / "d").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("t10k-labels-idx1-ubyte"));
}

}  // namespace
}  // namespace pstrain
