#include "worker/evaluate.h"

#include <algorithm>

namespace pstrain {

EvalReport evaluate_split(Model& model, const Dataset& data, const std::string& split,
                          int eval_batch, int64_t step) {
  EvalReport eval;
  eval.split = split;
  eval.global_step = step;
  eval.count = data.count;
  const int batch = std::max(1, std::min<int>(eval_batch, static_cast<int>(data.count)));
  const Model::Evaluation e = model.evaluate(data.images, data.labels, batch);
  eval.correct = e.correct;
  eval.cross_entropy = e.cross_entropy;
  return eval;
}

EvalReport evaluate_test_set(Model& model, const Dataset& test, int eval_batch, int64_t step) {
  return evaluate_split(model, test, "test", eval_batch, step);
}

}  // namespace pstrain
