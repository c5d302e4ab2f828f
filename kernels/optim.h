// Optimizer updates as plain functions over float spans, shared by `pstrain train` and the
// parameter servers (which apply them to the chunks they hold).
//
// Semantics follow TensorFlow 1.x's optimizers:
//   SGD       p -= lr * g
//   Momentum  a = momentum * a + g;  p -= lr * a                  (slot: a)
//   Adam      m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//             p -= lr * sqrt(1-b2^t) / (1-b1^t) * m / (sqrt(v) + eps)   (slots: m, v; t >= 1)
//   Adagrad   a += g^2;  p -= lr * g / sqrt(a)                    (slot: a, starts at 0.1)
// The learning rate may follow a schedule (TensorFlow 1.x's tf.train.exponential_decay and
// piecewise_constant) of the global step before the update (t - 1): apply_update and every
// backend's optimizer_update use learning_rate_at(config, t - 1).
// Slots start at 0 except Adagrad's accumulator (initial_accumulator). Spans of one call have
// equal sizes (PSTRAIN_CHECK: a programmer error). The element-wise math lives in
// kernels/optim_math.h as PSTRAIN_HD functions that device code can share.
// The host updates run with subnormal floats flushed to zero, as TensorFlow's CPU kernels do
// (kernels/cpu/flush_denormals.h: a moment decaying through the subnormal range cost 7x the
// update), whatever mode the calling thread is in; so a PS and `pstrain train` compute the
// same bits. The CUDA updates keep subnormals (the GPU computes them at full speed).
// Thread-safety: pure functions; callers must not update the same span concurrently.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "runtime/base/status.h"

namespace pstrain {

enum class OptimizerKind { kSgd, kMomentum, kAdam, kAdagrad };

// How the learning rate changes with the global step (--lr_schedule).
//   constant     learning_rate
//   exponential  learning_rate * decay_rate ^ (step / decay_steps), the exponent an integer
//                division when staircase (tf.train.exponential_decay)
//   piecewise    values[0] while step <= boundaries[0], values[i] while
//                boundaries[i-1] < step <= boundaries[i], values[n] after boundaries[n-1]
//                (tf.train.piecewise_constant; learning_rate is not used)
// Fixed-size arrays: an OptimizerConfig stays a plain value, copied without allocating.
enum class LrScheduleKind { kConstant, kExponential, kPiecewise };
inline constexpr int kMaxLrBoundaries = 16;
struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;     // --lr_schedule
  int64_t decay_steps = 0;                             // --lr_decay_steps (exponential)
  float decay_rate = 1.0f;                             // --lr_decay_rate (exponential)
  bool staircase = false;                              // --lr_staircase (exponential)
  int num_boundaries = 0;                              // piecewise: 1..kMaxLrBoundaries
  std::array<int64_t, kMaxLrBoundaries> boundaries{};  // --lr_boundaries, strictly increasing
  std::array<float, kMaxLrBoundaries + 1> values{};    // --lr_values, num_boundaries + 1
  bool operator==(const LrSchedule&) const = default;
};

// Defaults are TensorFlow 1.x's (tf.train.AdamOptimizer, AdagradOptimizer), except that
// MomentumOptimizer has no default momentum: 0.9 is pstrain's. Comments give each field's
// flag (cli/flags.h) and wire name (TrainingConfig in runtime/wire/proto/pstrain.proto).
struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kAdam;  // --optimizer
  float learning_rate = 0.01f;                // --learning_rate
  float momentum = 0.9f;                      // --momentum
  float beta1 = 0.9f;                         // --adam_beta1
  float beta2 = 0.999f;                       // --adam_beta2
  float epsilon = 1e-8f;                      // --adam_epsilon
  float initial_accumulator = 0.1f;           // --adagrad_initial_accumulator
  LrSchedule schedule{};                      // --lr_schedule and its flags
};

// The learning rate of the update made at global step `step` (0-based: the step before it).
float learning_rate_at(const OptimizerConfig& config, int64_t step);
// "constant", "exponential", "piecewise"; parse_lr_schedule accepts those (any case) and
// errors naming them.
const char* lr_schedule_name(LrScheduleKind kind);
Result<LrScheduleKind> parse_lr_schedule(const std::string& name);
// " , exponential decay 0.96 every 1000 steps (staircase)" style suffix for logs ("" for
// constant).
std::string describe_lr_schedule(const LrSchedule& schedule);

// Checks every hyper-parameter, whatever the kind (all of them travel to the parameter
// servers): learning rate finite and > 0; momentum finite and >= 0; Adam's beta1 and beta2 in
// [0, 1); epsilon finite and >= 0; Adagrad's initial accumulator finite and > 0 (as TensorFlow
// requires: 0 would make an untouched weight's update 0/0); an exponential schedule's
// decay_steps > 0 and decay_rate finite and > 0; a piecewise one's 1..16 boundaries >= 0,
// strictly increasing, with one value more, each finite and > 0. An error names the value by its
// flag name (learning_rate, momentum, adam_beta1, adam_beta2, adam_epsilon,
// adagrad_initial_accumulator, lr_decay_steps, lr_decay_rate, lr_boundaries, lr_values) after
// `prefix` ("--" for flags, "" for the wire), says what it must be and what it got.
Status check_optimizer_config(const OptimizerConfig& config, std::string_view prefix);
// The shortest decimal that reads back as `value` ("0.01", "1e-08"), for messages and logs.
std::string float_string(float value);

// "sgd", "momentum", "adam", "adagrad" (any case); an error names the accepted values.
Result<OptimizerKind> parse_optimizer(const std::string& name);
const char* optimizer_name(OptimizerKind kind);
// Number of state arrays (slots) per parameter: SGD 0, Momentum 1, Adam 2, Adagrad 1.
int optimizer_slot_count(OptimizerKind kind);
// Initial value of every slot element (Adagrad: initial_accumulator; else 0).
float optimizer_slot_initial_value(const OptimizerConfig& config);

void sgd_update(std::span<float> param, std::span<const float> grad, float lr);
void momentum_update(std::span<float> param, std::span<const float> grad, std::span<float> accum,
                     float lr, float momentum);
// t: 1-based count of updates applied so far including this one.
void adam_update(std::span<float> param, std::span<const float> grad, std::span<float> m,
                 std::span<float> v, float lr, float beta1, float beta2, float epsilon, int64_t t);
void adagrad_update(std::span<float> param, std::span<const float> grad, std::span<float> accum,
                    float lr);

// True when no value of `x` is NaN or infinite: the check a parameter server makes of a
// gradient before applying any of it. Reads every value in blocks without branching inside a
// block (vectorised: a plain early-exit loop stays scalar and cost as much as the update).
bool all_finite(std::span<const float> x);

// Applies `config`'s update. slots[0..optimizer_slot_count) are the slot spans; t as for Adam.
void apply_update(const OptimizerConfig& config, std::span<float> param,
                  std::span<const float> grad, std::span<float> slot0, std::span<float> slot1,
                  int64_t t);

// apply_update() for a parameter server's chunks, which may be large: from
// kParallelUpdateMinValues values on, split in pieces across this process's update threads
// (min(hardware threads, 4), started by the first such call: kernels/cpu/thread_pool.h, whose
// caller works too and never waits for a thread that is not running; a memory-bound update
// runs about twice as fast on two cores as on one), in order below it. The updates are
// elementwise, so the result is exactly apply_update()'s however the span is split.
// `out` (may be null): every updated value is also written there (param.size() float32 values,
// any alignment, not overlapping the spans), block by block while the block is in cache, so
// writing the result costs no second read of the parameters from memory (what a parameter
// server does to answer a pull with the values it just updated); `out` holds every value, in
// order, when it returns. `streaming`: written with non-temporal stores, which neither read
// `out`'s lines first nor push the parameters out of the cache (for large results: a reader on
// this machine would find small ones in cache otherwise); callers choose it from
// kStreamingCopyMinBytes.
inline constexpr size_t kParallelUpdateMinValues = size_t{1} << 19;  // 2 MB of float32
inline constexpr size_t kStreamingCopyMinBytes = size_t{8} << 20;
void apply_update_parallel(const OptimizerConfig& config, std::span<float> param,
                           std::span<const float> grad, std::span<float> slot0,
                           std::span<float> slot1, int64_t t, std::byte* out = nullptr,
                           bool streaming = false);
// A sync step's mean gradient applied: `sum` (the step's gradients added up) is scaled by
// `scale` (1 / their number), applied as by apply_update_parallel (`out` and `streaming` as
// there) and left all zeros for the next step, block by block in one pass. Exactly scaling
// all of `sum`, apply_update() with it, then clearing it.
void apply_mean_update_parallel(const OptimizerConfig& config, std::span<float> param,
                                std::span<float> sum, float scale, std::span<float> slot0,
                                std::span<float> slot1, int64_t t, std::byte* out = nullptr,
                                bool streaming = false);
// sum += x, split across the update threads the same way from kParallelUpdateMinValues on.
void accumulate_parallel(std::span<float> sum, std::span<const float> x);
// all_finite(), split across the update threads the same way from kParallelUpdateMinValues on.
bool all_finite_parallel(std::span<const float> x);
// Runs task(i) for every i in [0, n) on the update threads (the caller works too; returns
// when all are done): independent updates each too small to be split, such as the ranges of
// a chunk that came over several connections. A task must not give the *_parallel functions
// above kParallelUpdateMinValues values or more (the threads are busy with the tasks).
void run_update_tasks(size_t n, const std::function<void(size_t)>& task);
// memcpy(dst, src, bytes) for a worker's large copies (pulled parameters out of a reply,
// gradients into a shared-memory segment): from kParallelUpdateMinValues float32 values'
// worth of bytes (2 MB) on, in 1 MB pieces on the update threads (a memory-bound copy runs
// about twice as fast on two cores as on one), a plain memcpy below. The spans must not
// overlap. Its signature is runtime/wire/message.h's BulkCopy.
void copy_parallel(std::byte* dst, const std::byte* src, size_t bytes);

}  // namespace pstrain
