// OverlapPush: what --overlap hands Model::forward_backward() so that each layer's gradients go
// to the parameter servers while backward computes the layers before them.
//
// Contract
// - ready(from) calls client->push_part(grads, *steps, from, owner): every PS reached over TCP
//   or its Unix socket gets its chunks lying wholly in grads[from, end) that were not sent yet
//   (ps/client.h). The step's push_pull() with the same grads, steps and owner completes it.
// - grads must be the buffer backward writes (host memory: the CPU backend), steps the steps
//   the step's parameters were served at (read at each report: the caller may swap its
//   contents between steps), owner what keeps grads alive. Nothing is allocated per report.
// Thread-safety: the model's thread, as the client.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "kernels/model.h"
#include "ps/client.h"

namespace pstrain {

struct OverlapPush final : Model::GradientsReady {
  PsClient* client = nullptr;
  std::span<const float> grads;
  const PsSteps* steps = nullptr;
  std::shared_ptr<const void> owner;
  void ready(int64_t from) override { client->push_part(grads, *steps, from, owner); }
};

}  // namespace pstrain
