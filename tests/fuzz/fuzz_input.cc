#include "tests/fuzz/fuzz_input.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/wire/message.h"

// libFuzzer's; weak so that fuzz_make_corpus links without libFuzzer (it never mutates).
extern "C" __attribute__((weak)) size_t LLVMFuzzerMutate(uint8_t* data, size_t size,
                                                         size_t max_size);

namespace pstrain::fuzz {
namespace {

using Rng = std::minstd_rand;

uint32_t below(Rng& rng, uint32_t n) { return n == 0 ? 0 : static_cast<uint32_t>(rng() % n); }

// libFuzzer's own byte mutation of `bytes`, allowed to grow to `max_size`.
void raw_mutate(std::string& bytes, size_t max_size) {
  std::string buf = bytes;
  buf.resize(std::max(max_size, bytes.size() + 1));
  const size_t n =
      LLVMFuzzerMutate(reinterpret_cast<uint8_t*>(buf.data()), bytes.size(), buf.size());
  buf.resize(n);
  bytes = std::move(buf);
}

int64_t interesting_i64(Rng& rng) {
  static const int64_t values[] = {0,
                                   1,
                                   -1,
                                   2,
                                   100,
                                   std::numeric_limits<int64_t>::max(),
                                   std::numeric_limits<int64_t>::min(),
                                   std::numeric_limits<int32_t>::max(),
                                   std::numeric_limits<int32_t>::min()};
  if (below(rng, 2) == 0) return values[below(rng, sizeof(values) / sizeof(values[0]))];
  return static_cast<int64_t>((static_cast<uint64_t>(rng()) << 32) ^ rng());
}

uint64_t interesting_count(Rng& rng, uint64_t matching) {
  switch (below(rng, 7)) {
    case 0:
      return matching;
    case 1:
      return matching + 1;
    case 2:
      return matching == 0 ? 0 : matching - 1;
    case 3:
      return 0;
    case 4:
      return std::numeric_limits<uint64_t>::max() / 4 + 1;  // x4 bytes overflows
    case 5:
      return std::numeric_limits<uint64_t>::max();
    default:
      return below(rng, 64);
  }
}

float special_float(Rng& rng) {
  static const float values[] = {0.f,
                                 -0.f,
                                 1.f,
                                 std::numeric_limits<float>::quiet_NaN(),
                                 std::numeric_limits<float>::infinity(),
                                 -std::numeric_limits<float>::infinity(),
                                 std::numeric_limits<float>::max(),
                                 std::numeric_limits<float>::denorm_min(),
                                 1e30f};
  return values[below(rng, sizeof(values) / sizeof(values[0]))];
}

std::string float_bytes(uint64_t count, float value) {
  std::string out(count * sizeof(float), '\0');
  for (uint64_t i = 0; i < count; ++i) std::memcpy(out.data() + i * sizeof(float), &value, 4);
  return out;
}

wire::Kind any_kind(Rng& rng) {
  static const wire::Kind kinds[] = {wire::HELLO,
                                     wire::INIT,
                                     wire::PULL,
                                     wire::PUSH,
                                     wire::HEARTBEAT,
                                     wire::DONE,
                                     wire::STATUS,
                                     wire::SAVE,
                                     wire::REPLY_OK,
                                     wire::REPLY_PARAMS,
                                     wire::REPLY_NOT_READY,
                                     wire::REPLY_ERROR,
                                     wire::KIND_INVALID};
  return kinds[below(rng, sizeof(kinds) / sizeof(kinds[0]))];
}

// Makes the frames agree with the header's frame table (sizes from count x dtype, capped),
// or the table agree with the frames (counts from sizes).
void make_consistent(wire::Header& h, Message& m, Rng& rng) {
  const size_t want = static_cast<size_t>(h.frames_size()) + 1;
  if (m.size() > want) m.resize(want);
  while (m.size() < want) m.emplace_back();
  const bool table_wins = below(rng, 2) == 0;
  for (int i = 0; i < h.frames_size(); ++i) {
    wire::FrameInfo* f = h.mutable_frames(i);
    std::string& part = m[static_cast<size_t>(i) + 1];
    if (dtype_size(f->dtype()) == 0) f->set_dtype(wire::DTYPE_FLOAT32);
    const size_t es = dtype_size(f->dtype());
    if (table_wins && f->count() <= 1024) {
      part.resize(f->count() * es, '\0');
    } else {
      part.resize(part.size() - part.size() % es);
      f->set_count(part.size() / es);
    }
  }
}

void mutate_header(wire::Header& h, Message& m, Rng& rng) {
  switch (below(rng, 16)) {
    case 0:
      h.set_kind(any_kind(rng));
      break;
    case 1:  // an unknown kind
      h.set_kind(
          static_cast<wire::Kind>(below(rng, 2) == 0 ? 9 + below(rng, 11) : 24 + below(rng, 7)));
      break;
    case 2:
      h.set_sender(static_cast<int32_t>(below(rng, 2) == 0 ? static_cast<int32_t>(below(rng, 4)) - 1
                                                           : static_cast<int32_t>(rng())));
      break;
    case 3:
      h.set_step(interesting_i64(rng));
      break;
    case 4:
      h.set_min_step(interesting_i64(rng));
      break;
    case 5:
      h.set_request_id(static_cast<uint64_t>(interesting_i64(rng)));
      break;
    case 6:
      h.set_job_id(below(rng, 3) == 0 ? 0 : below(rng, 2) == 0 ? kJobId : rng());
      break;
    case 7:
      h.set_version(below(rng, 2) == 0 ? kProtocolVersion : below(rng, 5));
      break;
    case 8: {  // a frame table entry more (with or without a frame)
      wire::FrameInfo* f = h.add_frames();
      const auto& layout = chunk_layout();
      const auto& chunk = layout[below(rng, static_cast<uint32_t>(layout.size()))];
      f->set_key(below(rng, 4) == 0 ? std::string("x") : chunk.first);
      f->set_dtype(below(rng, 4) == 0 ? wire::DTYPE_INT32 : wire::DTYPE_FLOAT32);
      f->set_count(chunk.second);
      if (below(rng, 4) != 0) m.push_back(float_bytes(chunk.second, special_float(rng)));
      break;
    }
    case 9:  // one entry fewer (with or without its frame)
      if (h.frames_size() > 0) {
        const int i = static_cast<int>(below(rng, static_cast<uint32_t>(h.frames_size())));
        h.mutable_frames()->DeleteSubrange(i, 1);
        if (below(rng, 4) != 0 && m.size() > static_cast<size_t>(i) + 1) {
          m.erase(m.begin() + i + 1);
        }
      }
      break;
    case 10:
      if (h.frames_size() > 0) {
        wire::FrameInfo* f =
            h.mutable_frames(static_cast<int>(below(rng, static_cast<uint32_t>(h.frames_size()))));
        f->set_dtype(static_cast<wire::DType>(below(rng, 5)));
      }
      break;
    case 11:
      if (h.frames_size() > 0) {
        const int i = static_cast<int>(below(rng, static_cast<uint32_t>(h.frames_size())));
        wire::FrameInfo* f = h.mutable_frames(i);
        const size_t es = std::max<size_t>(dtype_size(f->dtype()), 1);
        const size_t part =
            m.size() > static_cast<size_t>(i) + 1 ? m[static_cast<size_t>(i) + 1].size() : 0;
        f->set_count(interesting_count(rng, part / es));
      }
      break;
    case 12:
      if (h.frames_size() > 0) {
        wire::FrameInfo* f =
            h.mutable_frames(static_cast<int>(below(rng, static_cast<uint32_t>(h.frames_size()))));
        static const char* keys[] = {"c0", "c1", "", "c0\0", "c2", "cccccccccccccccccccccccccccc"};
        f->set_key(keys[below(rng, 6)]);
      }
      break;
    case 13: {  // the config: the chief's, or one field off
      wire::TrainingConfig* c = h.mutable_config();
      *c = chief_config();
      switch (below(rng, 6)) {
        case 0:
          c->set_layout_hash(rng());
          break;
        case 1:
          c->set_learning_rate(special_float(rng));
          break;
        case 2:
          c->set_optimizer(static_cast<wire::Optimizer>(below(rng, 6)));
          break;
        case 3:
          c->set_num_workers(static_cast<int32_t>(below(rng, 4)));
          break;
        case 4:
          c->set_sync_replicas(true);
          c->set_replicas_to_aggregate(static_cast<int32_t>(below(rng, 4)));
          break;
        default:
          c->clear_momentum();
          break;
      }
      break;
    }
    case 14:
      make_consistent(h, m, rng);
      break;
    default:
      h.set_initialized(below(rng, 2) == 0);
      h.set_accepted(below(rng, 2) == 0);
      h.set_error(below(rng, 2) == 0 ? "" : "e");
      break;
  }
}

void mutate_message(Message& m, size_t max_size, Rng& rng) {
  if (m.empty()) m.emplace_back();
  wire::Header h;
  const bool parsed = h.ParseFromString(m[0]);
  const uint32_t op = below(rng, 10);
  if (parsed && op < 6) {
    const uint32_t rounds = 1 + below(rng, 3);
    for (uint32_t r = 0; r < rounds; ++r) mutate_header(h, m, rng);
    if (below(rng, 3) == 0) make_consistent(h, m, rng);
    m[0] = h.SerializeAsString();
    return;
  }
  switch (op) {
    case 6:  // the header's bytes
      raw_mutate(m[0], max_size);
      return;
    case 7:  // a frame's bytes
      if (m.size() > 1) {
        raw_mutate(m[1 + below(rng, static_cast<uint32_t>(m.size() - 1))], max_size);
      }
      return;
    case 8:  // a frame with special floats
      if (m.size() > 1) {
        std::string& part = m[1 + below(rng, static_cast<uint32_t>(m.size() - 1))];
        part = float_bytes(part.size() / 4, special_float(rng)) + part.substr(part.size() / 4 * 4);
      }
      return;
    default:  // a part more or fewer
      if (below(rng, 2) == 0 && m.size() > 1) {
        m.erase(m.begin() + 1 + below(rng, static_cast<uint32_t>(m.size() - 1)));
      } else if (m.size() < kMaxParts) {
        m.push_back(std::string(below(rng, 3) * 4 + below(rng, 2), '\x01'));
      }
      return;
  }
}

}  // namespace

Input parse_input(const uint8_t* data, size_t size) {
  Input in;
  if (size == 0) return in;
  in.flags = data[0];
  size_t pos = 1;
  while (pos < size && in.messages.size() < kMaxMessages) {
    const size_t parts = std::min<size_t>(data[pos++], kMaxParts);
    Message m;
    for (size_t p = 0; p < parts && pos < size; ++p) {
      uint32_t len = 0;
      for (int b = 0; b < 4; ++b) {
        len |= static_cast<uint32_t>(pos < size ? data[pos] : 0) << (8 * b);
        ++pos;
      }
      pos = std::min(pos, size);
      const size_t take = std::min<size_t>(len, size - pos);
      m.emplace_back(reinterpret_cast<const char*>(data + pos), take);
      pos += take;
    }
    in.messages.push_back(std::move(m));
  }
  return in;
}

std::string serialize_input(const Input& in) {
  std::string out(1, static_cast<char>(in.flags));
  for (size_t i = 0; i < in.messages.size() && i < kMaxMessages; ++i) {
    const Message& m = in.messages[i];
    const size_t parts = std::min(m.size(), kMaxParts);
    out.push_back(static_cast<char>(parts));
    for (size_t p = 0; p < parts; ++p) {
      const uint32_t len = static_cast<uint32_t>(m[p].size());
      for (int b = 0; b < 4; ++b) out.push_back(static_cast<char>((len >> (8 * b)) & 0xff));
      out += m[p];
    }
  }
  return out;
}

wire::TrainingConfig chief_config() {
  wire::TrainingConfig c;
  c.set_model("fuzz");
  c.set_optimizer(wire::SGD);
  c.set_learning_rate(0.5f);
  c.set_sync_replicas(false);
  c.set_replicas_to_aggregate(1);
  c.set_train_steps(1000000);
  c.set_num_workers(2);
  c.set_staleness(0);
  c.set_layout_hash(kLayoutHash);
  c.set_momentum(0.9f);
  c.set_adam_beta1(0.9f);
  c.set_adam_beta2(0.999f);
  c.set_adam_epsilon(1e-8f);
  c.set_adagrad_initial_accumulator(0.1f);
  return c;
}

Message valid_message(wire::Kind kind, int sender, uint64_t request_id, int64_t step) {
  wire::Header h;
  h.set_version(kProtocolVersion);
  h.set_job_id(kJobId);
  h.set_kind(kind);
  h.set_sender(sender);
  h.set_request_id(request_id);
  h.set_step(step);
  Message m(1);
  if (kind == wire::HELLO || kind == wire::INIT) *h.mutable_config() = chief_config();
  if (kind == wire::PULL) h.set_min_step(step);
  if (kind == wire::SAVE) h.set_min_step(step);
  if (kind == wire::REPLY_ERROR) h.set_error("no");
  if (kind == wire::INIT || kind == wire::PUSH || kind == wire::REPLY_PARAMS) {
    for (const auto& [key, count] : chunk_layout()) {
      wire::FrameInfo* f = h.add_frames();
      f->set_key(key);
      f->set_dtype(wire::DTYPE_FLOAT32);
      f->set_count(count);
      m.push_back(float_bytes(count, kind == wire::PUSH ? 0.25f : 1.f));
    }
  }
  m[0] = h.SerializeAsString();
  return m;
}

size_t mutate_input(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  Rng rng(seed);
  if (below(rng, 5) == 0) return LLVMFuzzerMutate(data, size, max_size);
  Input in = parse_input(data, size);
  const size_t part_max = std::max<size_t>(max_size / 4, 16);
  const uint32_t op = below(rng, 10);
  if (in.messages.empty() || (op == 0 && in.messages.size() < kMaxMessages)) {
    const size_t at = below(rng, static_cast<uint32_t>(in.messages.size() + 1));
    in.messages.insert(in.messages.begin() + static_cast<std::ptrdiff_t>(at),
                       valid_message(any_kind(rng), static_cast<int>(below(rng, 3)) - 1, rng(),
                                     static_cast<int64_t>(below(rng, 4))));
  } else if (op == 1 && in.messages.size() > 1) {
    in.messages.erase(in.messages.begin() + below(rng, static_cast<uint32_t>(in.messages.size())));
  } else if (op == 2 && in.messages.size() < kMaxMessages) {
    const size_t i = below(rng, static_cast<uint32_t>(in.messages.size()));
    in.messages.insert(in.messages.begin() + static_cast<std::ptrdiff_t>(i), in.messages[i]);
  } else if (op == 3 && in.messages.size() > 1) {
    std::swap(in.messages[below(rng, static_cast<uint32_t>(in.messages.size()))],
              in.messages[below(rng, static_cast<uint32_t>(in.messages.size()))]);
  } else if (op == 4) {
    in.flags ^= static_cast<uint8_t>(1u << below(rng, 5));
  } else {
    mutate_message(in.messages[below(rng, static_cast<uint32_t>(in.messages.size()))], part_max,
                   rng);
  }
  std::string out = serialize_input(in);
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

}  // namespace pstrain::fuzz
