// Parameter initialisers, deterministic in a seed.
//
// mnist_replica's MLP: hidden weights truncated normal with stddev 1/28, softmax weights
// truncated normal with stddev 1/sqrt(hidden_units), zero biases. The CNN uses Glorot-uniform
// kernels (tf.layers' default) and zero biases. Truncated normal redraws values beyond two
// standard deviations, as tf.truncated_normal does.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>

namespace pstrain {

enum class InitKind { kZeros, kTruncatedNormal, kGlorotUniform };

struct InitSpec {
  InitKind kind = InitKind::kZeros;
  float stddev = 0.f;  // kTruncatedNormal
  int64_t fan_in = 0;  // kGlorotUniform: limit = sqrt(6 / (fan_in + fan_out))
  int64_t fan_out = 0;
};

// Fills `out` according to `spec` from a generator seeded with `seed`.
void initialize(const InitSpec& spec, uint64_t seed, std::span<float> out);

// Mixes a base seed with a stream number (e.g. a variable's index) into an independent seed.
uint64_t mix_seed(uint64_t seed, uint64_t stream);

}  // namespace pstrain
