#include "kernels/init.h"

#include <cmath>
#include <random>

namespace pstrain {

uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  // splitmix64 over the pair: well-spread seeds for nearby inputs.
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void initialize(const InitSpec& spec, uint64_t seed, std::span<float> out) {
  std::mt19937_64 gen(seed);
  switch (spec.kind) {
    case InitKind::kZeros:
      for (float& v : out) v = 0.f;
      return;
    case InitKind::kTruncatedNormal: {
      std::normal_distribution<double> normal(0.0, 1.0);
      for (float& v : out) {
        double z;
        do {
          z = normal(gen);
        } while (std::abs(z) > 2.0);
        v = static_cast<float>(z * spec.stddev);
      }
      return;
    }
    case InitKind::kGlorotUniform: {
      const double limit = std::sqrt(6.0 / static_cast<double>(spec.fan_in + spec.fan_out));
      std::uniform_real_distribution<double> uniform(-limit, limit);
      for (float& v : out) v = static_cast<float>(uniform(gen));
      return;
    }
  }
}

}  // namespace pstrain
