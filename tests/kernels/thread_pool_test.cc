// ThreadPool (kernels/cpu/thread_pool.h): every chunk runs exactly once, a worker index is
// never used by two threads at once, concurrent callers and resizing are safe.
#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace pstrain::cpu {
namespace {

// Runs `jobs` jobs of `chunks` chunks and checks each chunk ran once, on a valid worker, with
// no worker index active on two threads at once.
void check_jobs(ThreadPool& pool, int jobs, int64_t chunks, int max_workers) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(chunks));
  std::vector<std::atomic<int>> active(static_cast<size_t>(max_workers));
  std::atomic<int> bad_worker{0}, overlap{0};
  for (int j = 0; j < jobs; ++j) {
    pool.run(chunks, max_workers, [&](int64_t c, int worker) {
      if (worker < 0 || worker >= max_workers) {
        bad_worker.fetch_add(1);
        return;
      }
      if (active[worker].fetch_add(1) != 0) overlap.fetch_add(1);
      volatile double sink = 0;  // a little work so that helpers get to claim chunks
      for (int i = 0; i < 200; ++i) sink = sink + i;
      hits[c].fetch_add(1);
      active[worker].fetch_sub(1);
    });
  }
  EXPECT_EQ(bad_worker.load(), 0);
  EXPECT_EQ(overlap.load(), 0);
  for (int64_t c = 0; c < chunks; ++c) ASSERT_EQ(hits[c].load(), jobs) << "chunk " << c;
}

TEST(ThreadPoolTest, EveryChunkRunsOnce) {
  ThreadPool pool;
  EXPECT_EQ(pool.size(), 1);
  check_jobs(pool, 20, 37, 1);  // no helpers: all inline
  pool.resize(3);
  EXPECT_EQ(pool.size(), 3);
  check_jobs(pool, 500, 1, 3);
  check_jobs(pool, 500, 7, 3);
  check_jobs(pool, 50, 1000, 3);
  check_jobs(pool, 200, 5, 2);  // fewer workers than the pool has
  pool.run(0, 3, [](int64_t, int) { ADD_FAILURE() << "no chunks: body must not run"; });
}

TEST(ThreadPoolTest, ResizeBetweenJobs) {
  ThreadPool pool;
  for (int size : {2, 1, 4, 2}) {
    pool.resize(size);
    EXPECT_EQ(pool.size(), size);
    check_jobs(pool, 50, 64, size);
  }
}

TEST(ThreadPoolTest, ConcurrentCallers) {
  ThreadPool pool;
  pool.resize(2);
  std::atomic<int64_t> sum_a{0}, sum_b{0};
  auto caller = [&pool](std::atomic<int64_t>* sum) {
    for (int j = 0; j < 300; ++j) {
      pool.run(16, 2, [sum](int64_t c, int) { sum->fetch_add(c + 1); });
    }
  };
  std::thread a(caller, &sum_a), b(caller, &sum_b);
  a.join();
  b.join();
  EXPECT_EQ(sum_a.load(), 300 * (16 * 17 / 2));
  EXPECT_EQ(sum_b.load(), 300 * (16 * 17 / 2));
}

}  // namespace
}  // namespace pstrain::cpu
