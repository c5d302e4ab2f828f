// OverlapPull: what --overlap hands PsClient::push_pull() so that the next step's forward
// starts on the first layers' parameters while the rest still arrive (the other half of the
// overlap; worker/overlap_push.h is the push's).
//
// Contract
// - arrived(until) copies the pulled parameters [copied, until) of `pulled` into the model's
//   parameters and runs forward on the batch already uploaded (Model::forward_ahead(batch,
//   until)) through the layers whose variables they complete. restarted() forgets what was
//   run (Model::discard_forward_ahead()) and what was copied.
// - After push_pull() returns, the caller copies the parameters from `copied` on (all of them
//   after restarted(), or when the pull did not complete: call restarted() then) and runs
//   forward_backward(), which goes on from the layers already run.
// - The model's parameters change during push_pull(): the caller must not use this while it
//   still needs the parameters the last step computed on (an evaluation after the step, a
//   sink that reads the tensors). Nothing is allocated per call.
// Thread-safety: the model's thread, as the client.
#pragma once

#include <cstdint>

#include "kernels/model.h"
#include "kernels/ops.h"
#include "kernels/tensor.h"
#include "ps/client.h"

namespace pstrain {

struct OverlapPull final : PsClient::ParametersArrived {
  Model* model = nullptr;
  const Tensor* pulled = nullptr;  // host float32, the model's flat layout
  int batch = 0;
  int64_t copied = 0;  // model's parameters [0, copied) hold pulled's

  void arrived(int64_t until) override {
    if (until > copied) {
      const int64_t bytes = (until - copied) * static_cast<int64_t>(sizeof(float));
      model->ops().copy_to_device(model->parameters().f32() + copied, pulled->f32() + copied,
                                  static_cast<size_t>(bytes));
      copied = until;
    }
    model->forward_ahead(batch, until);
  }
  void restarted() override {
    model->discard_forward_ahead();
    copied = 0;
  }
};

}  // namespace pstrain
