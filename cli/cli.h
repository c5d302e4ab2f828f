// The pstrain command line: parses flags, dispatches to a command, returns the exit code.
//
// Exit codes: 0 success; 1 the work failed (training error, a peer lost, a task failed);
// 2 bad usage or configuration (flags, environment, cluster spec, data directory).
// Thread-safety: call once, from main.
#pragma once

namespace pstrain {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

int run_cli(int argc, char** argv);

}  // namespace pstrain
