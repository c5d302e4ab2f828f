// The JobTrainingConfig of a plain SGD job, as tests of the parameter server hand it to
// PsClient::init(): one place for the fields those tests set, with the ones they vary as
// arguments. The optimizer's other settings keep their defaults.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "ps/training_config.h"

namespace pstrain::testing_util {

inline JobTrainingConfig sgd_config(bool sync, int replicas, int workers, int64_t steps,
                                    uint64_t layout, float learning_rate = 1.0f,
                                    std::string model = "test") {
  JobTrainingConfig c;
  c.model = std::move(model);
  c.optimizer.kind = OptimizerKind::kSgd;
  c.optimizer.learning_rate = learning_rate;
  c.sync_replicas = sync;
  c.replicas_to_aggregate = replicas;
  c.num_workers = workers;
  c.train_steps = steps;
  c.layout_hash = layout;
  return c;
}

}  // namespace pstrain::testing_util
