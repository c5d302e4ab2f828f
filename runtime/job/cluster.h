// Cluster spec and task of a role process (`pstrain --job_name=...`), resolved from its sources.
//
// Contract: each value (ps list, worker list, job name, task index, num_gpus) comes from the
// first source that gives it:
//   1. flags (ClusterFlags, filled by the command-line parser; nullopt = flag not given);
//   2. Batch AI: AZ_BATCHAI_PS_HOSTS, AZ_BATCHAI_WORKER_HOSTS, AZ_BATCHAI_TASK_INDEX,
//      AZ_BATCHAI_NUM_GPUS (Batch AI gives the job name only on the command line);
//   3. TF_CONFIG JSON ({"cluster": {...}, "task": {"type", "index"}}): a chief/master is worker 0
//      and the "worker" entries follow, shifted by one; "evaluator" entries are not part of the
//      training cluster, and an evaluator task is an error; "environment" is ignored; other
//      unknown keys are ignored with a note;
//   4. mnist_replica's defaults: ps_hosts localhost:2222, worker_hosts
//      localhost:2223,localhost:2224, num_gpus 1. There is no default job name or task index.
// An environment variable set to the empty string counts as not set. A scheduler's cluster
// (Batch AI or TF_CONFIG) is never mixed with a default list: if one list comes from a
// scheduler and no source gives the other, that is an error rather than a silent localhost.
// Every error input can cause is an InvalidArgument naming the source and the value; nothing
// here throws or aborts on input. Nothing here reads the real environment except
// process_environment(); nothing logs (the caller logs cluster_source/task_source/notes).
// Thread-safety: pure functions over values; process_environment()'s lookup calls getenv, so
// do not run it concurrently with setenv.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace pstrain {

enum class JobName { kPs, kWorker };
// "ps" or "worker".
const char* job_name_string(JobName job);
// Parses "ps" or "worker" (exactly, as mnist_replica compares); an error names the text.
Result<JobName> parse_job_name(const std::string& text);

struct HostPort {
  // A DNS name or IPv4 address, or an IPv6 address kept with its brackets ("[::1]"), so that
  // to_string() is always a valid "host:port" and a valid ZeroMQ tcp:// endpoint body.
  std::string host;
  int port = 0;
  std::string to_string() const;  // "host:port"
  bool operator==(const HostPort&) const = default;
};

// "host:port": host non-empty (name with letters, digits, '-', '.', '_'; IPv4; or [IPv6]);
// port a decimal number 1..65535. No surrounding spaces. The error names the text.
Result<HostPort> parse_host_port(const std::string& text);
// Comma-separated host:port list; spaces around items are trimmed; an empty list or an empty
// item is an error. The error names the list and the bad item.
Result<std::vector<HostPort>> parse_host_list(const std::string& text);

struct ClusterSpec {
  std::vector<HostPort> ps;
  std::vector<HostPort> workers;
  bool operator==(const ClusterSpec&) const = default;
};

// "a:1,b:2" (no spaces), the form --ps_hosts/--worker_hosts take.
std::string host_list_string(const std::vector<HostPort>& hosts);

// What the command line said; nullopt = flag not given (defaults apply only after every
// other source).
struct ClusterFlags {
  std::optional<std::string> job_name;
  std::optional<std::string> ps_hosts;
  std::optional<std::string> worker_hosts;
  std::optional<int> task_index;
  std::optional<int> num_gpus;
};

// Looks up an environment variable; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
// The process's environment (getenv).
EnvLookup process_environment();

struct ResolvedTask {
  ClusterSpec cluster;
  JobName job = JobName::kWorker;
  int task_index = 0;
  int num_gpus = 1;
  // Where the ps and worker lists came from: one of "flags", "Batch AI (AZ_BATCHAI_*)",
  // "TF_CONFIG", "defaults" when both came from the same source, else a mix such as
  // "flags (--ps_hosts), Batch AI (AZ_BATCHAI_WORKER_HOSTS)".
  std::string cluster_source;
  // Where the job name and task index came from, in the same form.
  std::string task_source;
  // Where num_gpus came from: "flags (--num_gpus)", "Batch AI (AZ_BATCHAI_NUM_GPUS)" or
  // "defaults (--num_gpus)".
  std::string num_gpus_source;
  // Things worth a log line, e.g. "TF_CONFIG: chief counted as worker 0, workers shifted by
  // one", keys ignored, defaults used.
  std::vector<std::string> notes;
};

// Resolves the cluster and this process's task. Never throws on input.
Result<ResolvedTask> resolve_task(const ClusterFlags& flags, const EnvLookup& env);

// One line for the log: "worker 1 in a cluster of 1 ps and 2 workers, num_gpus 1; cluster from
// ...; task from ...; num_gpus from ...".
std::string describe_task(const ResolvedTask& task);

// Stable 64-bit id of a job derived from its cluster spec: FNV-1a over the host lists in order
// (host names lower-cased), so every task of a job computes the same id and two jobs with
// different clusters almost surely differ. Never 0 (0 can mean "no id" on the wire). The same
// cluster run twice gets the same id.
uint64_t derive_job_id(const ClusterSpec& spec);

}  // namespace pstrain
