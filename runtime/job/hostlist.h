// Slurm hostlist expressions: "node01", "node[01-04,07]", "rack[1-2]-node[01-02]", "a,b[1-3],c".
//
// Contract: expand_hostlist turns an expression into host names, in Slurm's order: items left
// to right; inside an item the first bracket group varies slowest ("rack[1-2]-n[1-2]" gives
// rack1-n1, rack1-n2, rack2-n1, rack2-n2). A bracket group is a comma list of numbers and
// ranges lo-hi (lo <= hi); zero padding is kept: a bound written with a leading zero ("01",
// "007") sets the width of every number of its range. Text before, between and after groups is
// kept ("n[1-2]a" gives n1a, n2a). Names use letters, digits, '-', '.', '_'. Commas split items
// only outside brackets. Anything else (empty items, unbalanced or nested brackets, an empty
// group or range bound, lo > hi, non-digits in a group, more than kMaxHostlistHosts names) is
// an InvalidArgument that names the whole expression and what is wrong; nothing aborts.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace pstrain {

inline constexpr size_t kMaxHostlistHosts = 1 << 20;

Result<std::vector<std::string>> expand_hostlist(const std::string& expression);

}  // namespace pstrain
