#include "ps/placement.h"
#include "runtime/base/check.h"

#include <algorithm>
#include <numeric>

#include "runtime/base/hash.h"

namespace pstrain {

int64_t default_max_chunk_elements(int64_t total_elements, int num_ps) {
  if (num_ps == 1) return std::max<int64_t>(1, total_elements);
  const int64_t share = (total_elements + num_ps - 1) / num_ps;
  return std::max<int64_t>(1024, (share + 15) / 16);
}

Placement place_variables(const std::vector<VariableSpec>& variables, int num_ps,
                          int64_t max_chunk_elements) {
  PSTRAIN_CHECK(num_ps >= 1);
  Placement p;
  p.num_ps = num_ps;
  for (const auto& v : variables) p.total_elements += v.numel();
  if (max_chunk_elements <= 0) {
    max_chunk_elements = default_max_chunk_elements(p.total_elements, num_ps);
  }
  for (size_t vi = 0; vi < variables.size(); ++vi) {
    const VariableSpec& v = variables[vi];
    for (int64_t start = 0; start < v.numel(); start += max_chunk_elements) {
      Chunk c;
      c.key = v.name + "/" + std::to_string(start);
      c.variable = static_cast<int>(vi);
      c.flat_offset = v.offset + start;
      c.count = std::min(max_chunk_elements, v.numel() - start);
      p.chunks.push_back(std::move(c));
    }
  }
  // Largest first onto the least-loaded PS.
  std::vector<size_t> order(p.chunks.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return p.chunks[a].count > p.chunks[b].count; });
  p.elements_of_ps.assign(static_cast<size_t>(num_ps), 0);
  p.chunks_of_ps.assign(static_cast<size_t>(num_ps), {});
  for (size_t idx : order) {
    const auto least = std::min_element(p.elements_of_ps.begin(), p.elements_of_ps.end());
    const int ps = static_cast<int>(least - p.elements_of_ps.begin());
    p.chunks[idx].ps = ps;
    *least += p.chunks[idx].count;
  }
  for (size_t i = 0; i < p.chunks.size(); ++i) {
    p.chunks_of_ps[static_cast<size_t>(p.chunks[i].ps)].push_back(static_cast<int>(i));
  }
  p.hash = placement_hash(num_ps, p.chunks);
  return p;
}

uint64_t placement_hash(int num_ps, const std::vector<Chunk>& chunks) {
  Fnv1a h;
  h.add_int(num_ps);
  for (const Chunk& c : chunks) h.add(c.key).add_int(c.flat_offset).add_int(c.count).add_int(c.ps);
  return h.value();
}

uint64_t model_layout_hash(const Placement& placement, const std::string& model) {
  return Fnv1a().add_int(static_cast<int64_t>(placement.hash)).add(model).value();
}

}  // namespace pstrain
