#include "kernels/optim.h"
#include "runtime/base/check.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <thread>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernels/cpu/flush_denormals.h"
#include "kernels/cpu/thread_pool.h"
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
  const LrSchedule& l = c.schedule;
  switch (l.kind) {
    case LrScheduleKind::kConstant:
      break;
    case LrScheduleKind::kExponential:
      if (l.decay_steps <= 0) {
        return invalid_argument(std::string(prefix) +
                                "lr_decay_steps must be > 0 with an exponential schedule, got " +
                                std::to_string(l.decay_steps));
      }
      if (!(std::isfinite(l.decay_rate) && l.decay_rate > 0.f))
        return bad("lr_decay_rate", "a finite number > 0", l.decay_rate);
      break;
    case LrScheduleKind::kPiecewise: {
      if (l.num_boundaries < 1 || l.num_boundaries > kMaxLrBoundaries) {
        return invalid_argument(std::string(prefix) + "lr_boundaries must hold 1 to " +
                                std::to_string(kMaxLrBoundaries) +
                                " steps with a piecewise schedule, got " +
                                std::to_string(l.num_boundaries));
      }
      for (int i = 0; i < l.num_boundaries; ++i) {
        const int64_t b = l.boundaries[static_cast<size_t>(i)];
        if (b < 0 || (i > 0 && b <= l.boundaries[static_cast<size_t>(i - 1)])) {
          return invalid_argument(std::string(prefix) +
                                  "lr_boundaries must be steps >= 0 in increasing order, got " +
                                  std::to_string(b) + " at position " + std::to_string(i + 1));
        }
      }
      for (int i = 0; i <= l.num_boundaries; ++i) {
        const float v = l.values[static_cast<size_t>(i)];
        if (!(std::isfinite(v) && v > 0.f)) return bad("lr_values", "finite numbers > 0", v);
      }
      break;
    }
  }
  return {};
}

float learning_rate_at(const OptimizerConfig& config, int64_t step) {
  const LrSchedule& l = config.schedule;
  switch (l.kind) {
    case LrScheduleKind::kConstant:
      break;
    case LrScheduleKind::kExponential: {
      if (l.decay_steps <= 0) break;
      double exponent = static_cast<double>(step) / static_cast<double>(l.decay_steps);
      if (l.staircase) exponent = std::floor(exponent);
      return static_cast<float>(static_cast<double>(config.learning_rate) *
                                std::pow(static_cast<double>(l.decay_rate), exponent));
    }
    case LrScheduleKind::kPiecewise: {
      int i = 0;
      while (i < l.num_boundaries && step > l.boundaries[static_cast<size_t>(i)]) ++i;
      return l.values[static_cast<size_t>(i)];
    }
  }
  return config.learning_rate;
}

const char* lr_schedule_name(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::kExponential:
      return "exponential";
    case LrScheduleKind::kPiecewise:
      return "piecewise";
    case LrScheduleKind::kConstant:
      break;
  }
  return "constant";
}

Result<LrScheduleKind> parse_lr_schedule(const std::string& name) {
  std::string lower = name;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (LrScheduleKind k :
       {LrScheduleKind::kConstant, LrScheduleKind::kExponential, LrScheduleKind::kPiecewise}) {
    if (lower == lr_schedule_name(k)) return k;
  }
  return invalid_argument("unknown learning-rate schedule '" + name +
                          "': use constant, exponential or piecewise");
}

std::string describe_lr_schedule(const LrSchedule& l) {
  std::string s;
  switch (l.kind) {
    case LrScheduleKind::kConstant:
      break;
    case LrScheduleKind::kExponential:
      s.append(", exponential decay ").append(float_string(l.decay_rate));
      s.append(" every ").append(std::to_string(l.decay_steps)).append(" steps");
      if (l.staircase) s.append(" (staircase)");
      break;
    case LrScheduleKind::kPiecewise:
      s.append(", piecewise lr");
      for (int i = 0; i < l.num_boundaries; ++i) {
        s.append(" ").append(float_string(l.values[static_cast<size_t>(i)]));
        s.append(" to step ").append(std::to_string(l.boundaries[static_cast<size_t>(i)]));
        s.append(",");
      }
      s.append(" then ").append(float_string(l.values[static_cast<size_t>(l.num_boundaries)]));
      break;
  }
  return s;
}

float optimizer_slot_initial_value(const OptimizerConfig& config) {
  return config.kind == OptimizerKind::kAdagrad ? config.initial_accumulator : 0.0f;
}

bool all_finite(std::span<const float> x) {
  // A float is NaN or infinite exactly when its exponent bits are all ones, so the largest
  // exponent field of a block says whether the block holds one.
  constexpr uint32_t kExponent = 0x7f800000u;
  constexpr size_t kBlock = 4096;  // 16 KB: stops soon after a bad value, cheap per block
  const float* v = x.data();
  for (size_t begin = 0; begin < x.size(); begin += kBlock) {
    const size_t end = std::min(x.size(), begin + kBlock);
    uint32_t largest = 0;
    for (size_t i = begin; i < end; ++i) {
      largest = std::max(largest, std::bit_cast<uint32_t>(v[i]) & kExponent);
    }
    if (largest == kExponent) return false;
  }
  return true;
}

void sgd_update(std::span<float> param, std::span<const float> grad, float lr) {
  PSTRAIN_CHECK(param.size() == grad.size());
  float* p = param.data();
  const float* g = grad.data();
  const cpu::FlushDenormals flush;  // as TensorFlow computes (kernels/cpu/flush_denormals.h)
  const size_t count = param.size();
  for (size_t i = 0; i < count; ++i) sgd_step(p[i], g[i], lr);
}

void momentum_update(std::span<float> param, std::span<const float> grad, std::span<float> accum,
                     float lr, float momentum) {
  PSTRAIN_CHECK(param.size() == grad.size() && param.size() == accum.size());
  float* p = param.data();
  const float* g = grad.data();
  float* a = accum.data();
  const cpu::FlushDenormals flush;  // as TensorFlow computes (kernels/cpu/flush_denormals.h)
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
  const cpu::FlushDenormals flush;  // as TensorFlow computes (kernels/cpu/flush_denormals.h)
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
  const cpu::FlushDenormals flush;  // as TensorFlow computes (kernels/cpu/flush_denormals.h)
  const size_t count = param.size();
  for (size_t i = 0; i < count; ++i) adagrad_step(p[i], g[i], a[i], lr);
}

void apply_update(const OptimizerConfig& config, std::span<float> param,
                  std::span<const float> grad, std::span<float> slot0, std::span<float> slot1,
                  int64_t t) {
  const float lr = learning_rate_at(config, t - 1);
  switch (config.kind) {
    case OptimizerKind::kSgd:
      sgd_update(param, grad, lr);
      return;
    case OptimizerKind::kMomentum:
      momentum_update(param, grad, slot0, lr, config.momentum);
      return;
    case OptimizerKind::kAdam:
      adam_update(param, grad, slot0, slot1, lr, config.beta1, config.beta2, config.epsilon, t);
      return;
    case OptimizerKind::kAdagrad:
      adagrad_update(param, grad, slot0, lr);
      return;
  }
}

namespace {

// memcpy with non-temporal stores where the CPU has them (x86-64's SSE2 always does).
void copy_streaming(std::byte* out, const std::byte* in, size_t bytes) {
#if defined(__SSE2__)
  const size_t head = std::min(bytes, (16 - (reinterpret_cast<uintptr_t>(out) & 15)) & size_t{15});
  std::memcpy(out, in, head);
  size_t i = head;
  for (; i + 16 <= bytes; i += 16) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
  }
  std::memcpy(out + i, in + i, bytes - i);
#else
  std::memcpy(out, in, bytes);
#endif
}

// The update threads (apply_update_parallel, all_finite_parallel).
cpu::ThreadPool& update_pool() {
  static cpu::ThreadPool pool;
  static std::once_flag started;
  std::call_once(started, [] {
    pool.resize(static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u)));
  });
  return pool;
}

// Pieces of a span of n values for the update threads: 1 when n is small.
constexpr size_t kUpdatePieceValues = size_t{1} << 18;  // 1 MB of float32
int64_t update_pieces(size_t n) {
  return n < kParallelUpdateMinValues
             ? 1
             : static_cast<int64_t>((n + kUpdatePieceValues - 1) / kUpdatePieceValues);
}

// One update for the update threads: apply_update() with `grad`, or with `sum` (mutable)
// scaled by `scale` first and cleared after; the result also written to `out` when set.
struct PieceUpdate {
  const OptimizerConfig& config;
  std::span<float> param;
  std::span<const float> grad;
  std::span<float> sum;  // non-empty: the gradient is sum * scale (apply_mean_update_parallel)
  float scale = 1.f;
  std::span<float> slot0, slot1;
  int64_t t = 0;
  std::byte* out = nullptr;
  bool streaming = false;
};

// `u` over [at, at + len), block by block while the block is in cache.
void update_piece(const PieceUpdate& u, size_t at, size_t len) {
  const cpu::FlushDenormals flush;  // the scaling too, on whichever thread runs the piece
  constexpr size_t kBlock = 8192;   // 32 KB of parameters: with the gradient, within L1 + L2
  const auto part = [](std::span<float> s, size_t b, size_t l) {
    return s.empty() ? s : s.subspan(b, l);
  };
  const size_t end = at + len;
  for (size_t b = at; b < end; b += kBlock) {
    const size_t l = std::min(kBlock, end - b);
    std::span<const float> grad;
    if (u.sum.empty()) {
      grad = u.grad.subspan(b, l);
    } else {
      const std::span<float> sum = u.sum.subspan(b, l);
      for (float& v : sum) v *= u.scale;
      grad = sum;
    }
    apply_update(u.config, u.param.subspan(b, l), grad, part(u.slot0, b, l), part(u.slot1, b, l),
                 u.t);
    if (!u.sum.empty()) std::fill_n(u.sum.data() + b, l, 0.f);
    if (u.out == nullptr) continue;
    const auto* values = reinterpret_cast<const std::byte*>(u.param.data() + b);
    if (u.streaming) {
      copy_streaming(u.out + b * sizeof(float), values, l * sizeof(float));
    } else {
      std::memcpy(u.out + b * sizeof(float), values, l * sizeof(float));
    }
  }
#if defined(__SSE2__)
  if (u.out != nullptr && u.streaming) _mm_sfence();  // visible before this thread reports done
#endif
}

// Runs body(at, len) over [0, n): in one call below kParallelUpdateMinValues, else in pieces
// on the update threads.
template <typename Body>
void for_each_piece(size_t n, const Body& body) {
  const int64_t pieces = update_pieces(n);
  if (pieces == 1) {
    body(size_t{0}, n);
    return;
  }
  cpu::ThreadPool& pool = update_pool();
  pool.run(pieces, pool.size(), [&](int64_t i, int /*worker*/) {
    const size_t at = static_cast<size_t>(i) * kUpdatePieceValues;
    body(at, std::min(kUpdatePieceValues, n - at));
  });
}

// `u` over all of its span, in pieces on the update threads when large.
void run_update(const PieceUpdate& u) {
  for_each_piece(u.param.size(), [&](size_t at, size_t len) { update_piece(u, at, len); });
}

}  // namespace

void apply_update_parallel(const OptimizerConfig& config, std::span<float> param,
                           std::span<const float> grad, std::span<float> slot0,
                           std::span<float> slot1, int64_t t, std::byte* out, bool streaming) {
  PSTRAIN_CHECK(param.size() == grad.size());
  run_update({config, param, grad, {}, 1.f, slot0, slot1, t, out, streaming});
}

void apply_mean_update_parallel(const OptimizerConfig& config, std::span<float> param,
                                std::span<float> sum, float scale, std::span<float> slot0,
                                std::span<float> slot1, int64_t t, std::byte* out, bool streaming) {
  PSTRAIN_CHECK(param.size() == sum.size());
  run_update({config, param, {}, sum, scale, slot0, slot1, t, out, streaming});
}

void accumulate_parallel(std::span<float> sum, std::span<const float> x) {
  PSTRAIN_CHECK(sum.size() == x.size());
  for_each_piece(sum.size(), [&](size_t at, size_t len) {
    float* s = sum.data() + at;
    const float* v = x.data() + at;
    for (size_t i = 0; i < len; ++i) s[i] += v[i];
  });
}

void copy_parallel(std::byte* dst, const std::byte* src, size_t bytes) {
  constexpr size_t kPieceBytes = kUpdatePieceValues * sizeof(float);
  if (bytes < kParallelUpdateMinValues * sizeof(float)) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return;
  }
  cpu::ThreadPool& pool = update_pool();
  const auto pieces = static_cast<int64_t>((bytes + kPieceBytes - 1) / kPieceBytes);
  pool.run(pieces, pool.size(), [&](int64_t i, int /*worker*/) {
    const size_t at = static_cast<size_t>(i) * kPieceBytes;
    std::memcpy(dst + at, src + at, std::min(kPieceBytes, bytes - at));
  });
}

void run_update_tasks(size_t n, const std::function<void(size_t)>& task) {
  if (n <= 1) {
    if (n == 1) task(0);
    return;
  }
  cpu::ThreadPool& pool = update_pool();
  pool.run(static_cast<int64_t>(n), pool.size(),
           [&](int64_t i, int /*worker*/) { task(static_cast<size_t>(i)); });
}

bool all_finite_parallel(std::span<const float> x) {
  std::atomic<bool> finite{true};
  for_each_piece(x.size(), [&](size_t at, size_t len) {
    if (!finite.load(std::memory_order_relaxed)) return;  // one is enough
    if (!all_finite(x.subspan(at, len))) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load(std::memory_order_relaxed);
}

}  // namespace pstrain
