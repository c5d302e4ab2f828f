// Writes the fuzz targets' seed corpus: `fuzz_make_corpus <dir>` fills <dir>/fuzz_decode/ and
// <dir>/fuzz_ps_handler/ with a few valid inputs (tests/fuzz/fuzz_input.h) of every kind.
// The files in tests/fuzz/corpus/ were made by it; run it again after a wire format change.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/fuzz/fuzz_input.h"

namespace {

using namespace pstrain;
using fuzz::valid_message;

bool write(const std::filesystem::path& dir, const std::string& name, const fuzz::Input& in) {
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / ("seed-" + name), std::ios::binary);
  const std::string bytes = fuzz::serialize_input(in);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_corpus <dir>\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];
  bool ok = true;
  // The decoder: one message of each kind, with every flag combination over the set.
  const std::vector<std::pair<std::string, wire::Kind>> kinds = {
      {"hello", wire::HELLO},
      {"init", wire::INIT},
      {"pull", wire::PULL},
      {"push", wire::PUSH},
      {"heartbeat", wire::HEARTBEAT},
      {"done", wire::DONE},
      {"status", wire::STATUS},
      {"save", wire::SAVE},
      {"reply-ok", wire::REPLY_OK},
      {"reply-params", wire::REPLY_PARAMS},
      {"reply-error", wire::REPLY_ERROR}};
  uint8_t flags = 0;
  for (const auto& [name, kind] : kinds) {
    fuzz::Input in;
    in.flags = flags++ % 4;
    fuzz::Message m = valid_message(kind, 1, 7, 3);
    if ((in.flags & fuzz::kFlagRoutingId) != 0) m.insert(m.begin(), std::string("\0\x80\x01", 3));
    in.messages.push_back(std::move(m));
    ok = write(root / "fuzz_decode", name, in) && ok;
  }
  // The handler: short conversations of worker 1 (and the chief) after the chief's INIT.
  const std::vector<std::pair<std::string, std::vector<fuzz::Message>>> talks = {
      {"hello", {valid_message(wire::HELLO, 1, 1, 0)}},
      {"pull", {valid_message(wire::PULL, 1, 1, 0)}},
      {"push", {valid_message(wire::PUSH, 1, 1, 0)}},
      {"pull-push-pull",
       {valid_message(wire::PULL, 1, 1, 0), valid_message(wire::PUSH, 1, 2, 0),
        valid_message(wire::PULL, 1, 3, 1)}},
      {"pull-future-step", {valid_message(wire::PULL, 1, 1, 5)}},
      {"heartbeat", {valid_message(wire::HEARTBEAT, 1, 1, 0)}},
      {"init-again", {valid_message(wire::INIT, 0, 1, 0)}},
      {"save", {valid_message(wire::SAVE, 0, 1, 0)}},
      {"status", {valid_message(wire::STATUS, -1, 1, 0)}},
      {"done", {valid_message(wire::DONE, 1, 1, 0)}},
      {"hello-push-done",
       {valid_message(wire::HELLO, 1, 1, 0), valid_message(wire::PUSH, 1, 2, 0),
        valid_message(wire::DONE, 1, 3, 0)}},
      {"reply-as-request", {valid_message(wire::REPLY_PARAMS, 1, 1, 0)}},
  };
  for (const auto& [name, messages] : talks) {
    fuzz::Input in;
    in.messages = messages;
    ok = write(root / "fuzz_ps_handler", name, in) && ok;
  }
  if (!ok) {
    std::fprintf(stderr, "fuzz_make_corpus: could not write under %s\n", argv[1]);
    return 1;
  }
  return 0;
}
