#include "ps/wire_optimizer.h"

#include <string>
#include <utility>

namespace pstrain {
namespace {

constexpr std::pair<OptimizerKind, wire::Optimizer> kOptimizers[] = {
    {OptimizerKind::kSgd, wire::SGD},
    {OptimizerKind::kMomentum, wire::MOMENTUM},
    {OptimizerKind::kAdam, wire::ADAM},
    {OptimizerKind::kAdagrad, wire::ADAGRAD},
};

}  // namespace

wire::Optimizer optimizer_to_wire(OptimizerKind kind) {
  for (const auto& [k, w] : kOptimizers) {
    if (k == kind) return w;
  }
  return wire::OPTIMIZER_INVALID;
}

Result<OptimizerKind> optimizer_from_wire(wire::Optimizer o) {
  for (const auto& [k, w] : kOptimizers) {
    if (w == o) return k;
  }
  return invalid_argument("optimizer must be one of SGD, MOMENTUM, ADAM, ADAGRAD, got " +
                          std::to_string(o));
}

}  // namespace pstrain
