// Cluster spec and task of a role process (`pstrain --job_name=...`), resolved from its sources.
//
// Contract: each source is a reader (ClusterReader) that returns what it knows (ClusterValues:
// each value optional, with its origin). resolve_task asks the readers in order and each value
// (ps list, worker list, job name, task index, num_gpus) comes from the first reader that gives
// it; a reader is read only while a value it can give is still missing. The readers, in order:
//   1. flags (ClusterFlags, filled by the command-line parser; nullopt = flag not given);
//   2. Batch AI: AZ_BATCHAI_PS_HOSTS, AZ_BATCHAI_WORKER_HOSTS, AZ_BATCHAI_TASK_INDEX,
//      AZ_BATCHAI_NUM_GPUS (Batch AI gives the job name only on the command line);
//   3. TF_CONFIG JSON ({"cluster": {...}, "task": {"type", "index"}}): a chief/master is worker 0
//      and the "worker" entries follow, shifted by one; "evaluator" entries are not part of the
//      training cluster, and an evaluator task is an error; "environment" is ignored; other
//      unknown keys are ignored with a note. TF_CONFIG gives no num_gpus, so it is not read
//      (and a malformed one is no error) when flags and Batch AI give the cluster and the task;
//   4. mnist_replica's defaults: ps_hosts localhost:2222, worker_hosts
//      localhost:2223,localhost:2224, num_gpus 1. There is no default job name or task index.
// A malformed value is an error only if it is used (a later source's bad value is ignored when
// an earlier source gives that value); a malformed TF_CONFIG is an error whenever it is read.
// An environment variable set to the empty string counts as not set. A scheduler's cluster
// (Batch AI or TF_CONFIG) is never mixed with a default list: if one list comes from a
// scheduler and no source gives the other, that is an error rather than a silent localhost.
// TF_CONFIG's task names this process. When TF_CONFIG is read and its task has a "type", that
// task in pstrain's numbering (chief/master = worker 0; TF worker i = worker i+1 when a
// chief/master exists, else worker i; ps i = ps i) is checked against the job name and task
// index that an earlier source gave (flags, AZ_BATCHAI_TASK_INDEX): each one given must agree
// with it (the index only when the task has an "index"), and the task must be a pstrain task
// (not an evaluator). Agreeing values are fine; otherwise resolve_task fails naming both values
// and their sources, e.g. "--task_index=0 (flags) disagrees with TF_CONFIG task {"type":
// "worker", "index": 0}, which is worker 1 in pstrain's numbering (the chief is worker 0); drop
// --task_index or make it 1". So a Kubeflow worker 0 given --task_index=0 does not become a
// second worker 0 beside the chief (a sync job would wait until its start-up timeout).
// Every error input can cause is an InvalidArgument naming the source and the value; nothing
// here throws or aborts on input. Nothing here reads the real environment except
// process_environment(); nothing logs (the caller logs cluster_source/task_source/notes).
// Adding a source = writing one ClusterReader and putting it in the list resolve_task gets.
// Thread-safety: pure functions over values; readers are immutable, so one reader may serve
// several threads; process_environment()'s lookup calls getenv, so do not run it concurrently
// with setenv.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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
  // Where the ps and worker lists came from: the reader's name() ("flags", "Batch AI
  // (AZ_BATCHAI_*)", "TF_CONFIG", "defaults") when both came from the same one, else a mix as
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

// --- Readers -------------------------------------------------------------------------------

// Where one value came from.
struct ValueOrigin {
  std::string source;  // the source in short: "flags", "Batch AI", "TF_CONFIG", "defaults"
  std::string name;    // the flag, variable or key: "--ps_hosts", "AZ_BATCHAI_PS_HOSTS",
                       // "cluster.ps", "task.index"
  std::string from;    // how error text names it: "flags --ps_hosts", "AZ_BATCHAI_PS_HOSTS",
                       // "TF_CONFIG cluster.ps", "the default of --ps_hosts"
  // "flags (--ps_hosts)": how a source summary names it when values come from a mix.
  std::string short_text() const { return source + " (" + name + ")"; }
};

// One value a reader gives. `value` is an error when the source has the value but it is
// malformed; resolve_task returns that error only if it uses the value. `notes` are logged only
// if the value is used.
template <typename T>
struct SourcedValue {
  Result<T> value;
  ValueOrigin origin;
  std::vector<std::string> notes;
};

// The task a source says this process is, in pstrain's numbering (TF_CONFIG's "task").
struct TaskClaim {
  // How errors quote it: TF_CONFIG task {"type": "worker", "index": 0}.
  std::string text;
  JobName job = JobName::kWorker;
  std::optional<int> task_index;  // nullopt when the source names no index
  std::string numbering;          // how its numbering maps, e.g. "the chief is worker 0", or ""
};

// What one source knows; nullopt = the source does not give that value.
struct ClusterValues {
  std::optional<SourcedValue<std::vector<HostPort>>> ps_hosts;
  std::optional<SourcedValue<std::vector<HostPort>>> worker_hosts;
  std::optional<SourcedValue<JobName>> job;
  std::optional<SourcedValue<int>> task_index;
  std::optional<SourcedValue<int>> num_gpus;
  // Set by a source that names this process's task as a whole: a job name or task index that
  // an earlier source gave must agree with it. An error when that task is no pstrain task.
  std::optional<Result<TaskClaim>> task_claim;
  std::vector<std::string> notes;  // logged whenever the source is read
};

// Which values a reader can give (so that resolve_task reads it only when one is missing).
struct ClusterValueSet {
  bool ps_hosts = false;
  bool worker_hosts = false;
  bool job = false;
  bool task_index = false;
  bool num_gpus = false;
  bool intersects(const ClusterValueSet& o) const {
    return (ps_hosts && o.ps_hosts) || (worker_hosts && o.worker_hosts) || (job && o.job) ||
           (task_index && o.task_index) || (num_gpus && o.num_gpus);
  }
};

// kScheduler: a scheduler's lists are never completed with a kDefaults list.
enum class SourceKind { kCommandLine, kScheduler, kDefaults };

// One source of cluster values. Implementations are immutable; read() may run concurrently.
class ClusterReader {
 public:
  virtual ~ClusterReader() = default;
  // How source summaries name it when both values of a pair come from it: "flags",
  // "Batch AI (AZ_BATCHAI_*)", "TF_CONFIG", "defaults".
  virtual std::string name() const = 0;
  virtual SourceKind kind() const = 0;
  virtual ClusterValueSet gives() const = 0;
  // What the source knows. An error only when the source as a whole is unreadable (TF_CONFIG
  // that is not JSON or not shaped like TF_CONFIG); a bad single value is an error inside it.
  virtual Result<ClusterValues> read(const ClusterFlags& flags, const EnvLookup& env) const = 0;
  // A note for the log when the source is set but not read because earlier ones gave all it
  // could; nullopt when there is nothing to say.
  virtual std::optional<std::string> unused_note(const EnvLookup& /*env*/) const {
    return std::nullopt;
  }
};

using ClusterReaders = std::vector<std::unique_ptr<const ClusterReader>>;

std::unique_ptr<const ClusterReader> flags_reader();
std::unique_ptr<const ClusterReader> batch_ai_reader();
std::unique_ptr<const ClusterReader> tf_config_reader();
std::unique_ptr<const ClusterReader> defaults_reader();
// flags, Batch AI, TF_CONFIG, defaults: the order of the contract above.
ClusterReaders default_cluster_readers();

// Resolves the cluster and this process's task from `readers`, in order (see the contract).
// Never throws on input. A list without a defaults reader may leave a value missing: an error.
Result<ResolvedTask> resolve_task(const ClusterReaders& readers, const ClusterFlags& flags,
                                  const EnvLookup& env);
// The same with default_cluster_readers().
Result<ResolvedTask> resolve_task(const ClusterFlags& flags, const EnvLookup& env);

// One line for the log: "worker 1 in a cluster of 1 ps and 2 workers, num_gpus 1; cluster from
// ...; task from ...; num_gpus from ...".
std::string describe_task(const ResolvedTask& task);

// --- Rank-based schedulers: Slurm, Open MPI, PMI (MPICH, Intel MPI), DMLC -------------------
//
// These give a task only its rank and the job's size (DMLC: its role and the counts); the
// cluster comes from a rendezvous (runtime/job/rendezvous.h). They are the last source before
// the defaults: resolve_rank_task returns nullopt (not a rank-based launch) when flags
// (--ps_hosts, --worker_hosts), Batch AI (AZ_BATCHAI_PS_HOSTS, AZ_BATCHAI_WORKER_HOSTS) or
// TF_CONFIG give a host list, or when no rank scheduler's variables are set. Among the
// schedulers the most specific launcher wins: DMLC_ROLE, then Open MPI
// (OMPI_COMM_WORLD_RANK), then PMI (PMI_RANK), then Slurm (SLURM_PROCID), since mpirun run
// inside a Slurm allocation inherits the allocation's SLURM_* variables.
// Roles: with --num_ps N, ranks 0..N-1 are PS tasks 0..N-1 and rank r >= N is worker r-N (the
// lowest worker rank, N, is the chief, worker 0). DMLC: DMLC_ROLE names the role and
// DMLC_NUM_SERVER/DMLC_NUM_WORKER the counts; the rendezvous hands out indices in arrival
// order (DMLC_WORKER_ID, as BytePS sets it, fixes a worker's index).
// Rendezvous address: --rendezvous host:port; else DMLC_PS_ROOT_URI:DMLC_PS_ROOT_PORT; else
// under Slurm the first host of SLURM_STEP_NODELIST (or SLURM_JOB_NODELIST) with port
// 10000 + SLURM_JOB_ID % 20000; else 127.0.0.1 (one host) with a port derived from the
// launcher's job id (PMIX_NAMESPACE, OMPI_MCA_ess_base_jobid, PMI_KVSNAME) or 29400.
// Every bad value is an InvalidArgument naming the variable (or flag) and its value.

struct RankFlags {
  std::optional<int> num_ps;              // --num_ps (PSTRAIN_NUM_PS through the CLI)
  std::optional<std::string> rendezvous;  // --rendezvous host:port
};

struct RankTask {
  std::string scheduler;  // "Slurm", "Open MPI", "PMI", "DMLC"
  // DMLC_ROLE=scheduler: this process serves the rendezvous and trains nothing.
  bool rendezvous_only = false;
  // This process serves the rendezvous (rank 0, or the DMLC scheduler).
  bool serves_rendezvous = false;
  HostPort rendezvous;
  std::string rendezvous_source;  // e.g. "the first host of SLURM_STEP_NODELIST=..."
  int num_ps = 0;
  int num_workers = 0;
  std::string counts_source;  // e.g. "--num_ps=1 (flags), SLURM_NTASKS=3 (Slurm)"
  JobName job = JobName::kWorker;
  int task_index = -1;            // -1: the rendezvous assigns it (DMLC)
  std::optional<int> rank;        // nullopt for DMLC
  std::string task_source;        // e.g. "Slurm (SLURM_PROCID=2, --num_ps=1)"
  std::optional<int> local_rank;  // SLURM_LOCALID, OMPI_COMM_WORLD_LOCAL_RANK: the GPU choice
  std::string local_rank_source;
  std::string host;         // the address this task reports to the rendezvous
  std::string host_source;  // e.g. "SLURMD_NODENAME", "loopback rendezvous"
};

// See the contract above. Flags' --job_name/--task_index, when given, must agree with the task
// the ranks give (an error naming both otherwise).
Result<std::optional<RankTask>> resolve_rank_task(const ClusterFlags& flags,
                                                  const RankFlags& rank_flags,
                                                  const EnvLookup& env);

// One log line: "Slurm: worker 1 (rank 2 of 3; --num_ps=1 (flags)), rendezvous at h:p (...)".
std::string describe_rank_task(const RankTask& t);

// A reader for the values the rendezvous gave: the ps and worker lists (source "rendezvous")
// and this task's job and index (source: the scheduler, e.g. "Slurm (SLURM_PROCID=2,
// --num_ps=1)"). A scheduler source (never mixed with defaults).
std::unique_ptr<const ClusterReader> rendezvous_reader(const RankTask& task,
                                                       const ClusterSpec& cluster, JobName job,
                                                       int task_index);
// flags, Batch AI, TF_CONFIG, `rendezvous`, defaults.
ClusterReaders rank_cluster_readers(std::unique_ptr<const ClusterReader> rendezvous);

// Stable 64-bit id of a job derived from its cluster spec: FNV-1a over the host lists in order
// (host names lower-cased), so every task of a job computes the same id and two jobs with
// different clusters almost surely differ. Never 0 (0 can mean "no id" on the wire). The same
// cluster run twice gets the same id.
uint64_t derive_job_id(const ClusterSpec& spec);

}  // namespace pstrain
