// Softmax cross-entropy loss (forward and gradient in one pass) and accuracy counting on the
// CPU.
//
// Contract (as Ops::softmax_xent / count_correct in kernels/ops.h): logits [n, k], labels [n]
// with values in [0, k). softmax_xent writes *loss = mean over rows of
// logsumexp(row) - row[label], computed stably (row maximum subtracted), and
// dlogits [n, k] = (softmax(row) - onehot(label)) / n; n == 0 gives loss 0.
// count_correct returns how many rows have their first maximum at the label.
// Thread-safety: pure functions.
#pragma once

#include <cmath>
#include <cstdint>

#include "runtime/base/check.h"

namespace pstrain::cpu {

template <typename T>
void softmax_xent(const T* logits, const int32_t* labels, T* dlogits, T* loss, int n, int k) {
  double total = 0;
  const T inv_n = n > 0 ? T(1) / T(n) : T(0);
  for (int64_t i = 0; i < n; ++i) {
    const T* row = logits + i * k;
    T* drow = dlogits + i * k;
    const int32_t label = labels[i];
    PSTRAIN_CHECK(label >= 0 && label < k, "label out of range");
    T m = row[0];
    for (int j = 1; j < k; ++j) m = row[j] > m ? row[j] : m;
    T sum = 0;
    for (int j = 0; j < k; ++j) {
      drow[j] = std::exp(row[j] - m);
      sum += drow[j];
    }
    const T scale = inv_n / sum;
    for (int j = 0; j < k; ++j) drow[j] *= scale;
    drow[label] -= inv_n;
    // -log softmax[label] = log(sum) - (row[label] - m)
    total += static_cast<double>(std::log(sum) - (row[label] - m));
  }
  *loss = n > 0 ? static_cast<T>(total / n) : T(0);
}

template <typename T>
int64_t count_correct(const T* logits, const int32_t* labels, int n, int k) {
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* row = logits + i * k;
    int best = 0;
    for (int j = 1; j < k; ++j) {
      if (row[j] > row[best]) best = j;  // strict: the first maximum wins
    }
    correct += best == labels[i] ? 1 : 0;
  }
  return correct;
}

}  // namespace pstrain::cpu
