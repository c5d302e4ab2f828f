#include "worker/evaluate.h"

#include <algorithm>

namespace pstrain {

EvalReport evaluate_test_set(Model& model, const Dataset& test, int eval_batch, int64_t step) {
  EvalReport eval;
  eval.split = "test";
  eval.global_step = step;
  eval.count = test.count;
  eval.correct = model.count_correct(test.images, test.labels,
                                     std::min<int>(eval_batch, static_cast<int>(test.count)));
  return eval;
}

}  // namespace pstrain
