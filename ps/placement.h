// Placement: how a model's variables are split into chunks and spread over the PS tasks.
//
// Contract
// - Every variable is cut into chunks of at most max_chunk_elements (the last chunk of a
//   variable may be shorter); chunk i covers flat parameters [flat_offset, flat_offset+count).
// - Chunks are assigned largest first to the PS holding the fewest bytes so far (ties: lowest
//   PS index), so no PS holds more than its share (total / num_ps) plus one chunk.
// - The result depends only on the variables, num_ps and max_chunk_elements, so every task
//   computes the same placement; `hash` fingerprints it and travels in INIT/HELLO headers.
// Thread-safety: an immutable value once built.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/variable.h"

namespace pstrain {

struct Chunk {
  std::string key;          // "<variable>/<first element>", e.g. "hid_w/0"
  int variable = 0;         // index into the variables
  int64_t flat_offset = 0;  // into the flat parameter vector
  int64_t count = 0;        // elements
  int ps = 0;               // the PS task holding it
};

struct Placement {
  int num_ps = 0;
  std::vector<Chunk> chunks;                   // in variable order
  std::vector<std::vector<int>> chunks_of_ps;  // chunk indices held by each PS, ascending
  std::vector<int64_t> elements_of_ps;         // parameter count each PS holds
  int64_t total_elements = 0;
  uint64_t hash = 0;
};

// The default chunk size. One PS: no split (each variable is one chunk): a single server gains
// nothing from balance, and every chunk costs a frame, a wakeup and an update call on both
// sides (the MLP's 318 KB push+pull ran at half the speed in 16 chunks than in 4;
// bench/ps_bench). Several: small enough to balance (about 1/16 of a PS's share, so no PS
// holds more than ~6% over its share), and at least 1024 elements so tiny models are not
// crumbs. Checkpoints of one-PS jobs written with the older 16-chunk split are merged on
// reading (ps/checkpoint_io.h).
int64_t default_max_chunk_elements(int64_t total_elements, int num_ps);

// `max_chunk_elements` <= 0 picks default_max_chunk_elements(). num_ps >= 1 (PSTRAIN_CHECK).
Placement place_variables(const std::vector<VariableSpec>& variables, int num_ps,
                          int64_t max_chunk_elements = 0);

// The fingerprint of a chunk list (Placement::hash): num_ps and each chunk's key, offset,
// count and PS, in order.
uint64_t placement_hash(int num_ps, const std::vector<Chunk>& chunks);
// The fingerprint every task checks (HELLO, INIT, checkpoints): the placement's hash mixed
// with the model name, so an MLP and a CNN with equal chunking never match.
uint64_t model_layout_hash(const Placement& placement, const std::string& model);

}  // namespace pstrain
