// Where flags come from besides argv, and what to say about arguments pstrain does not know.
//
//   --flagfile FILE      absl's format: one flag per line (`--name=value`; `--name value` also
//                        works), blank lines and lines starting with `#` ignored, a nested
//                        --flagfile allowed. The file's flags stand where --flagfile stood, so
//                        a flag later on the command line wins over the file, an earlier one
//                        loses to it.
//   PSTRAIN_<NAME>       every flag also from the environment (PSTRAIN_TRAIN_STEPS=300,
//                        PSTRAIN_SYNC_REPLICAS=true); a flag given on the command line or in a
//                        flagfile wins. Variables that name no flag (PSTRAIN_STATUS_FILE, which
//                        the launcher sets for its tasks) are ignored.
//   leftovers            an unknown flag or command is an error with the nearest known name
//                        (`unknown flag --trian_steps; did you mean --train_steps?`).
// Thread-safety: call from the main thread (reads the environment).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "runtime/base/status.h"

namespace pstrain {

// Levenshtein distance.
size_t edit_distance(const std::string& a, const std::string& b);

// `args` with every `--flagfile=FILE` / `--flagfile FILE` replaced by FILE's flags (nested
// files too, at most 16 deep). An unreadable file is kInvalidArgument naming it.
Result<std::vector<std::string>> expand_flagfiles(const std::vector<std::string>& args);

// For each flag of `app` not given (count() == 0) whose PSTRAIN_<NAME> is set and non-empty,
// takes the value from the environment; `skip` names flags ("--job_name") never read from it.
// A bad value is kInvalidArgument naming the variable.
Status apply_environment(CLI::App& app, const std::vector<std::string>& skip = {});

// The error for arguments CLI11 left over (`leftovers`, in command-line order), or "" when
// there are none: the first unknown flag (or, when `commands` is not empty, an unknown
// command) with the nearest name of `app`'s flags or of `commands` when one is close enough,
// then the leftovers in their order.
std::string leftover_message(const CLI::App& app, const std::vector<std::string>& leftovers,
                             const std::vector<std::string>& commands = {});

// Parses a command's words (those after the command word) with `app`. CLI11 takes a vector in
// reverse order; this keeps that detail in one place. nullopt when parsing succeeded, else the
// exit code to return: 0 after printing --help, kExitUsage (2) after printing a parse error.
std::optional<int> parse_command_words(CLI::App& app, const std::vector<std::string>& words);

// The closest of `candidates` to `word` when within max(2, size/3) edits, else "".
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace pstrain
