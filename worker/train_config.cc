#include "worker/train_config.h"

namespace pstrain {

Status validate(const TrainConfig& c) {
  if (c.train_steps <= 0) {
    return invalid_argument("--train_steps must be positive, got " + std::to_string(c.train_steps));
  }
  if (c.batch_size <= 0) {
    return invalid_argument("--batch_size must be positive, got " + std::to_string(c.batch_size));
  }
  // The learning rate and every optimizer hyper-parameter, with errors naming the flag.
  PSTRAIN_RETURN_IF_ERROR(check_optimizer_config(c.optimizer, "--"));
  if (c.num_gpus < 0) {
    return invalid_argument("--num_gpus must be 0 (CPU) or more, got " +
                            std::to_string(c.num_gpus));
  }
  PSTRAIN_RETURN_IF_ERROR(validate(c.checkpoint));
  if (c.eval_batch <= 0) {
    return invalid_argument("evaluation batch must be positive, got " +
                            std::to_string(c.eval_batch));
  }
  if (c.eval_every < 0) {
    return invalid_argument("--eval_every must be 0 (only at the end) or more, got " +
                            std::to_string(c.eval_every));
  }
  if (c.validation_size < 0) {
    return invalid_argument("--validation_size must be 0 or more, got " +
                            std::to_string(c.validation_size));
  }
  return {};
}

}  // namespace pstrain
