// RecentMean: the mean of the last `window` values added (the training loss shown in
// progress lines and summaries). Thread-safety: a value; one thread at a time.
#pragma once

#include <cstddef>
#include <deque>

namespace pstrain {

class RecentMean {
 public:
  explicit RecentMean(size_t window = 100) : window_(window) {}
  void add(double v) {
    values_.push_back(v);
    sum_ += v;
    if (values_.size() > window_) {
      sum_ -= values_.front();
      values_.pop_front();
    }
  }
  // 0 before the first value.
  double mean() const { return values_.empty() ? 0.0 : sum_ / static_cast<double>(values_.size()); }

 private:
  size_t window_;
  std::deque<double> values_;
  double sum_ = 0;
};

}  // namespace pstrain
