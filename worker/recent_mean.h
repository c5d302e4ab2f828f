// RecentMean: the mean of the last `window` values added (the training loss shown in
// progress lines and summaries). The values live in a ring allocated once, at construction:
// add() never allocates (a training step's steady state allocates nothing: client.h).
// Thread-safety: a value; one thread at a time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace pstrain {

class RecentMean {
 public:
  explicit RecentMean(size_t window = 100) : values_(std::max<size_t>(window, 1)) {}
  void add(double v) {
    if (count_ == values_.size()) {
      sum_ -= values_[next_];
    } else {
      ++count_;
    }
    values_[next_] = v;
    sum_ += v;
    next_ = (next_ + 1) % values_.size();
  }
  // 0 before the first value.
  double mean() const { return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_); }

 private:
  std::vector<double> values_;  // the ring: the last count_ values end before next_
  size_t next_ = 0;
  size_t count_ = 0;
  double sum_ = 0;
};

}  // namespace pstrain
