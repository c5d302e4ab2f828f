#include "kernels/optim.h"
#include "runtime/base/check.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>

#include "kernels/optim_math.h"

namespace pstrain {

Result<OptimizerKind> parse_optimizer(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (lower == "sgd") return OptimizerKind::kSgd;
  if (lower == "momentum") return OptimizerKind::kMomentum;
  if (lower == "adam") return OptimizerKind::kAdam;
  if (lower == "adagrad") return OptimizerKind::kAdagrad;
  return invalid_argument("unknown optimizer '" + name +
                          "': use one of sgd, momentum, adam, adagrad (any case)");
}

const char* optimizer_name(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return "sgd";
    case OptimizerKind::kMomentum:
      return "momentum";
    case OptimizerKind::kAdam:
      return "adam";
    case OptimizerKind::kAdagrad:
      return "adagrad";
  }
  return "unknown";
}

int optimizer_slot_count(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return 0;
    case OptimizerKind::kMomentum:
      return 1;
    case OptimizerKind::kAdam:
      return 2;
    case OptimizerKind::kAdagrad:
      return 1;
  }
  return 0;
}

std::string float_string(float value) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(value);
}

Status check_optimizer_config(const OptimizerConfig& c, std::string_view prefix) {
  const auto bad = [&](const char* name, const char* must, float got) {
    return invalid_argument(std::string(prefix) + name + " must be " + must + ", got " +
                            float_string(got));
  };
  // Written so that NaN fails every test.
  if (!(std::isfinite(c.learning_rate) && c.learning_rate > 0.f))
    return bad("learning_rate", "a finite number > 0", c.learning_rate);
  if (!(std::isfinite(c.momentum) && c.momentum >= 0.f))
    return bad("momentum", "a finite number >= 0", c.momentum);
  if (!(c.beta1 >= 0.f && c.beta1 < 1.f)) return bad("adam_beta1", "in [0, 1)", c.beta1);
  if (!(c.beta2 >= 0.f && c.beta2 < 1.f)) return bad("adam_beta2", "in [0, 1)", c.beta2);
  if (!(std::isfinite(c.epsilon) && c.epsilon >= 0.f))
    return bad("adam_epsilon", "a finite number >= 0", c.epsilon);
  if (!(std::isfinite(c.initial_accumulator) && c.initial_accumulator > 0.f))
    return bad("adagrad_initial_accumulator", "a finite number > 0", c.initial_accumulator);
  return {};
}

float optimizer_slot_initial_value(const OptimizerConfig& config) {
  return config.kind == OptimizerKind::kAdagrad ? config.initial_accumulator : 0.0f;
}

void sgd_update(std::span<float> param, std::span<const float> grad, float lr) {
  PSTRAIN_CHECK(param.size() == grad.size());
  float* p = param.data();
  const float* g = grad.data();
  const size_t count = param.size();
  for (size_t i = 0; i < count; ++i) sgd_step(p[i], g[i], lr);
}

void momentum_update(std::span<float> param, std::span<const float> grad, std::span<float> accum,
                     float lr, float momentum) {
  PSTRAIN_CHECK(param.size() == grad.size() && param.size() == accum.size());
  float* p = param.data();
  const float* g = grad.data();
  float* a = accum.data();
  const size_t count = param.size();
  for (size_t i = 0; i < count; ++i) momentum_step(p[i], g[i], a[i], lr, momentum);
}

void adam_update(std::span<float> param, std::span<const float> grad, std::span<float> m,
                 std::span<float> v, float lr, float beta1, float beta2, float epsilon, int64_t t) {
  PSTRAIN_CHECK(param.size() == grad.size() && param.size() == m.size() &&
                param.size() == v.size());
  PSTRAIN_CHECK(t >= 1, "Adam's step count starts at 1");
  const float lr_t = adam_step_size(lr, beta1, beta2, t);
  float* p = param.data();
  const float* g = grad.data();
  float* mp = m.data();
  float* vp = v.data();
  const size_t count = param.size();
  for (size_t i = 0; i < count; ++i)
    adam_step(p[i], g[i], mp[i], vp[i], lr_t, beta1, beta2, epsilon);
}

void adagrad_update(std::span<float> param, std::span<const float> grad, std::span<float> accum,
                    float lr) {
  PSTRAIN_CHECK(param.size() == grad.size() && param.size() == accum.size());
  float* p = param.data();
  const float* g = grad.data();
  float* a = accum.data();
  const size_t count = param.size();
  for (size_t i = 0; i < count; ++i) adagrad_step(p[i], g[i], a[i], lr);
}

void apply_update(const OptimizerConfig& config, std::span<float> param,
                  std::span<const float> grad, std::span<float> slot0, std::span<float> slot1,
                  int64_t t) {
  switch (config.kind) {
    case OptimizerKind::kSgd:
      sgd_update(param, grad, config.learning_rate);
      return;
    case OptimizerKind::kMomentum:
      momentum_update(param, grad, slot0, config.learning_rate, config.momentum);
      return;
    case OptimizerKind::kAdam:
      adam_update(param, grad, slot0, slot1, config.learning_rate, config.beta1, config.beta2,
                  config.epsilon, t);
      return;
    case OptimizerKind::kAdagrad:
      adagrad_update(param, grad, slot0, config.learning_rate);
      return;
  }
}

}  // namespace pstrain
