#include "runtime/job/cluster.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "runtime/base/hash.h"
#include "runtime/job/hostlist.h"
#include "runtime/job/task_env.h"

namespace pstrain {
namespace {

constexpr const char* kDefaultPsHosts = "localhost:2222";
constexpr const char* kDefaultWorkerHosts = "localhost:2223,localhost:2224";
constexpr int kDefaultNumGpus = 1;

constexpr const char* kEnvPsHosts = task_env::kPsHosts;
constexpr const char* kEnvWorkerHosts = task_env::kWorkerHosts;
constexpr const char* kEnvTaskIndex = task_env::kTaskIndex;
constexpr const char* kEnvNumGpus = task_env::kNumGpus;
constexpr const char* kEnvTfConfig = task_env::kTfConfig;

std::string quote(const std::string& s) { return "\"" + s + "\""; }

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool host_char_ok(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

bool ipv6_char_ok(char c) {
  // Hex digits, ':' and '.', plus a zone id after '%' (e.g. [fe80::1%eth0]).
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.' || c == '%';
}

// Parses a whole decimal integer (optional leading '-'); nullopt if anything else is there.
std::optional<long long> parse_integer(const std::string& text) {
  long long v = 0;
  const char* b = text.data();
  const char* e = b + text.size();
  auto [ptr, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || ptr != e || text.empty()) return std::nullopt;
  return v;
}

using HostList = std::vector<HostPort>;

// --- TF_CONFIG ----------------------------------------------------------------------------

struct TfConfig {
  std::optional<std::vector<HostPort>> ps;       // cluster.ps, when present
  std::optional<std::vector<HostPort>> workers;  // chief/master + worker, when any is present
  std::string workers_name;                      // e.g. "cluster.chief+worker"
  std::string chief_key;                         // "chief", "master" or empty
  bool has_task = false;
  std::optional<std::string> task_type;
  std::optional<int> task_index;
  std::vector<std::string> notes;
};

using nlohmann::json;

const char* json_type(const json& j) { return j.type_name(); }

Result<std::vector<HostPort>> tf_host_array(const json& j, const std::string& key) {
  const std::string where = "TF_CONFIG cluster." + key;
  if (!j.is_array()) {
    return invalid_argument(where + " is a JSON " + json_type(j) + " (" + j.dump() +
                            "); it must be an array of \"host:port\" strings");
  }
  std::vector<HostPort> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& e = j[i];
    if (!e.is_string()) {
      return invalid_argument(where + "[" + std::to_string(i) + "] is a JSON " + json_type(e) +
                              " (" + e.dump() + "); it must be a \"host:port\" string");
    }
    Result<HostPort> hp = parse_host_port(e.get<std::string>());
    if (!hp.ok()) {
      return invalid_argument(where + "[" + std::to_string(i) + "]: " + hp.status().message());
    }
    out.push_back(*hp);
  }
  if (out.empty()) {
    return invalid_argument(where + " is an empty list; give at least one \"host:port\"");
  }
  return out;
}

Result<TfConfig> parse_tf_config_json(const std::string& text) {
  TfConfig cfg;
  json root = json::parse(text);  // throws json::parse_error; caught by the caller
  if (!root.is_object()) {
    return invalid_argument("TF_CONFIG is a JSON " + std::string(json_type(root)) +
                            "; it must be an object like {\"cluster\": {...}, \"task\": {...}}");
  }
  for (const auto& [key, value] : root.items()) {
    if (key == "cluster" || key == "task" || key == "environment") continue;
    cfg.notes.push_back("TF_CONFIG: key " + quote(key) + " ignored");
  }
  if (auto it = root.find("cluster"); it != root.end()) {
    const json& cluster = *it;
    if (!cluster.is_object()) {
      return invalid_argument("TF_CONFIG cluster is a JSON " + std::string(json_type(cluster)) +
                              " (" + cluster.dump() + "); it must be an object of job lists");
    }
    std::optional<std::vector<HostPort>> chief;
    std::optional<std::vector<HostPort>> worker;
    for (const auto& [key, value] : cluster.items()) {
      if (key == "ps") {
        PSTRAIN_ASSIGN_OR_RETURN(cfg.ps, tf_host_array(value, key));
      } else if (key == "chief" || key == "master") {
        if (!cfg.chief_key.empty()) {
          return invalid_argument(
              "TF_CONFIG cluster has both \"chief\" and \"master\"; give only one of them");
        }
        PSTRAIN_ASSIGN_OR_RETURN(chief, tf_host_array(value, key));
        if (chief->size() != 1) {
          return invalid_argument("TF_CONFIG cluster." + key + " has " +
                                  std::to_string(chief->size()) + " entries (" + value.dump() +
                                  "); a cluster has at most one " + key);
        }
        cfg.chief_key = key;
      } else if (key == "worker") {
        PSTRAIN_ASSIGN_OR_RETURN(worker, tf_host_array(value, key));
      } else if (key == "evaluator") {
        cfg.notes.push_back(
            "TF_CONFIG: cluster.evaluator is not part of the training cluster; ignored");
      } else {
        cfg.notes.push_back("TF_CONFIG: cluster key " + quote(key) + " ignored");
      }
    }
    if (chief || worker) {
      std::vector<HostPort> all;
      if (chief) {
        all = *chief;
        cfg.workers_name = "cluster." + cfg.chief_key;
      }
      if (worker) {
        all.insert(all.end(), worker->begin(), worker->end());
        cfg.workers_name += cfg.workers_name.empty() ? "cluster.worker" : "+worker";
      }
      cfg.workers = std::move(all);
    }
  }
  if (auto it = root.find("task"); it != root.end()) {
    const json& task = *it;
    if (!task.is_object()) {
      return invalid_argument("TF_CONFIG task is a JSON " + std::string(json_type(task)) + " (" +
                              task.dump() +
                              "); it must be an object {\"type\": ..., \"index\": N}");
    }
    cfg.has_task = true;
    for (const auto& [key, value] : task.items()) {
      if (key == "type") {
        if (!value.is_string()) {
          return invalid_argument("TF_CONFIG task.type is a JSON " + std::string(json_type(value)) +
                                  " (" + value.dump() +
                                  "); it must be a string such as \"worker\"");
        }
        cfg.task_type = value.get<std::string>();
      } else if (key == "index") {
        std::optional<long long> v;
        if (value.is_number_integer()) {
          v = value.get<long long>();
        } else if (value.is_string()) {
          v = parse_integer(value.get<std::string>());  // TensorFlow accepts "1" as well
        }
        if (!v || *v < 0 || *v > 1'000'000) {
          return invalid_argument("TF_CONFIG task.index " + value.dump() +
                                  " is not a task index; it must be an integer >= 0");
        }
        cfg.task_index = static_cast<int>(*v);
      } else {
        cfg.notes.push_back("TF_CONFIG: task key " + quote(key) + " ignored");
      }
    }
  }
  return cfg;
}

Result<TfConfig> parse_tf_config(const std::string& text) {
  try {
    return parse_tf_config_json(text);
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument("TF_CONFIG is not valid JSON (" + std::string(e.what()) +
                            "); its value was " + quote(text));
  }
}

// The job TF_CONFIG's task.type names.
Result<JobName> tf_job(const TfConfig& cfg) {
  if (!cfg.task_type) {
    return invalid_argument(
        cfg.has_task ? "TF_CONFIG task has no \"type\"; give --job_name=ps|worker"
                     : "TF_CONFIG has no \"task\"; give --job_name=ps|worker and --task_index");
  }
  const std::string& t = *cfg.task_type;
  if (t == "ps") return JobName::kPs;
  if (t == "worker") return JobName::kWorker;
  if (t == "chief" || t == "master") {
    if (cfg.chief_key.empty()) {
      return invalid_argument("TF_CONFIG task.type is " + quote(t) +
                              " but its cluster has no \"chief\" or \"master\" entry");
    }
    return JobName::kWorker;
  }
  if (t == "evaluator") {
    return invalid_argument(
        "TF_CONFIG task.type is \"evaluator\": pstrain runs no evaluator task (the chief, "
        "worker 0, evaluates on the test set when training ends); do not start this task");
  }
  return invalid_argument("TF_CONFIG task.type " + quote(t) +
                          " is not one of \"chief\", \"master\", \"worker\", \"ps\"");
}

// The pstrain task index TF_CONFIG's task names (chief/master = worker 0, worker i = worker
// i+1 when there is a chief).
Result<int> tf_task_index(const TfConfig& cfg, std::vector<std::string>* notes) {
  PSTRAIN_ASSIGN_OR_RETURN(JobName job, tf_job(cfg));
  if (!cfg.task_index) {
    return invalid_argument("TF_CONFIG task has no \"index\"; give --task_index");
  }
  const std::string& t = *cfg.task_type;
  int index = *cfg.task_index;
  if (t == "chief" || t == "master") {
    if (index != 0) {
      return invalid_argument("TF_CONFIG task.index " + std::to_string(index) + " for task.type " +
                              quote(t) + " is out of range: a cluster has one " + t + ", index 0");
    }
    return 0;
  }
  if (job == JobName::kWorker && !cfg.chief_key.empty()) {
    notes->push_back("TF_CONFIG: task worker " + std::to_string(index) + " is pstrain worker " +
                     std::to_string(index + 1) + " (the " + cfg.chief_key + " is worker 0)");
    return index + 1;
  }
  return index;
}

// --- Environment values -------------------------------------------------------------------

std::optional<std::string> env_value(const EnvLookup& env, const std::string& name) {
  if (!env) return std::nullopt;
  std::optional<std::string> v = env(name);
  if (v && trim(*v).empty()) return std::nullopt;  // set but empty counts as not set
  return v;
}

Result<int> env_int(const std::string& name, const std::string& text) {
  std::optional<long long> v = parse_integer(trim(text));
  if (!v || *v < -1'000'000 || *v > 1'000'000) {
    return invalid_argument(name + "=" + quote(text) + " is not an integer");
  }
  return static_cast<int>(*v);
}

Result<HostList> list_from(const std::string& what, const std::string& text,
                           const ValueOrigin& origin) {
  Result<HostList> r = parse_host_list(text);
  if (!r.ok()) {
    return invalid_argument("bad " + what + " list " + quote(text) + " (from " + origin.from +
                            "): " + r.status().message());
  }
  return r;
}

// --- Readers ------------------------------------------------------------------------------

template <typename T>
SourcedValue<T> sourced(Result<T> value, ValueOrigin origin, std::vector<std::string> notes = {}) {
  return SourcedValue<T>{std::move(value), std::move(origin), std::move(notes)};
}

ValueOrigin flag_origin(const std::string& flag) { return {"flags", flag, "flags " + flag}; }
ValueOrigin batch_ai_origin(const std::string& var) { return {"Batch AI", var, var}; }
ValueOrigin tf_origin(const std::string& key) { return {"TF_CONFIG", key, "TF_CONFIG " + key}; }
ValueOrigin default_origin(const std::string& flag) {
  return {"defaults", flag, "the default of " + flag};
}

// --ps_hosts / --worker_hosts; an empty value hints at an unset variable in `--flag=$VAR`.
SourcedValue<HostList> flag_list(const std::string& what, const std::string& text,
                                 const std::string& flag, const std::string& env_var) {
  ValueOrigin origin = flag_origin(flag);
  Result<HostList> list = list_from(what, text, origin);
  if (!list.ok() && trim(text).empty()) {
    list = invalid_argument(list.status().message() + "; if the flag was written as " + flag +
                            "=$" + env_var + ", that variable is not set");
  }
  return sourced(std::move(list), std::move(origin));
}

Result<JobName> flag_job(const std::string& text) {
  Result<JobName> j = parse_job_name(text);
  if (!j.ok()) return invalid_argument("--job_name (from flags): " + j.status().message());
  return j;
}

class FlagsReader final : public ClusterReader {
 public:
  std::string name() const override { return "flags"; }
  SourceKind kind() const override { return SourceKind::kCommandLine; }
  ClusterValueSet gives() const override {
    return {
        .ps_hosts = true, .worker_hosts = true, .job = true, .task_index = true, .num_gpus = true};
  }
  Result<ClusterValues> read(const ClusterFlags& flags, const EnvLookup& /*env*/) const override {
    ClusterValues v;
    if (flags.ps_hosts) v.ps_hosts = flag_list("ps", *flags.ps_hosts, "--ps_hosts", kEnvPsHosts);
    if (flags.worker_hosts) {
      v.worker_hosts = flag_list("worker", *flags.worker_hosts, "--worker_hosts", kEnvWorkerHosts);
    }
    if (flags.job_name) v.job = sourced(flag_job(*flags.job_name), flag_origin("--job_name"));
    if (flags.task_index) {
      v.task_index = sourced(Result<int>(*flags.task_index), flag_origin("--task_index"));
    }
    if (flags.num_gpus) {
      v.num_gpus = sourced(Result<int>(*flags.num_gpus), flag_origin("--num_gpus"));
    }
    return v;
  }
};

SourcedValue<HostList> batch_ai_list(const std::string& what, const std::string& var,
                                     const std::string& text) {
  ValueOrigin origin = batch_ai_origin(var);
  Result<HostList> list = list_from(what, text, origin);
  return sourced(std::move(list), std::move(origin));
}

SourcedValue<int> batch_ai_int(const std::string& var, const std::string& text) {
  return sourced(env_int(var, text), batch_ai_origin(var));
}

class BatchAiReader final : public ClusterReader {
 public:
  std::string name() const override { return "Batch AI (AZ_BATCHAI_*)"; }
  SourceKind kind() const override { return SourceKind::kScheduler; }
  ClusterValueSet gives() const override {
    return {.ps_hosts = true, .worker_hosts = true, .task_index = true, .num_gpus = true};
  }
  Result<ClusterValues> read(const ClusterFlags& /*flags*/, const EnvLookup& env) const override {
    ClusterValues v;
    if (auto t = env_value(env, kEnvPsHosts)) v.ps_hosts = batch_ai_list("ps", kEnvPsHosts, *t);
    if (auto t = env_value(env, kEnvWorkerHosts)) {
      v.worker_hosts = batch_ai_list("worker", kEnvWorkerHosts, *t);
    }
    if (auto t = env_value(env, kEnvTaskIndex)) v.task_index = batch_ai_int(kEnvTaskIndex, *t);
    if (auto t = env_value(env, kEnvNumGpus)) v.num_gpus = batch_ai_int(kEnvNumGpus, *t);
    return v;
  }
};

// The task TF_CONFIG names, in pstrain's numbering; an error when it names no pstrain task.
Result<TaskClaim> tf_task_claim(const TfConfig& cfg) {
  PSTRAIN_ASSIGN_OR_RETURN(JobName job, tf_job(cfg));
  TaskClaim claim;
  claim.job = job;
  claim.text = "TF_CONFIG task {\"type\": " + quote(*cfg.task_type);
  if (cfg.task_index) {
    claim.text += ", \"index\": " + std::to_string(*cfg.task_index);
    std::vector<std::string> unused_notes;
    PSTRAIN_ASSIGN_OR_RETURN(claim.task_index, tf_task_index(cfg, &unused_notes));
  }
  claim.text += "}";
  if (job == JobName::kWorker && !cfg.chief_key.empty()) {
    claim.numbering = "the " + cfg.chief_key + " is worker 0";
  }
  return claim;
}

ClusterValues tf_values(const TfConfig& cfg) {
  ClusterValues v;
  v.notes = cfg.notes;
  if (cfg.ps) v.ps_hosts = sourced(Result<HostList>(*cfg.ps), tf_origin("cluster.ps"));
  if (cfg.workers) {
    std::vector<std::string> notes;
    if (!cfg.chief_key.empty()) {
      notes.push_back("TF_CONFIG: " + cfg.chief_key +
                      " counted as worker 0, workers shifted by one");
    }
    v.worker_hosts =
        sourced(Result<HostList>(*cfg.workers), tf_origin(cfg.workers_name), std::move(notes));
  }
  if (cfg.has_task) {
    v.job = sourced(tf_job(cfg), tf_origin("task.type"));
    std::vector<std::string> notes;
    Result<int> index = tf_task_index(cfg, &notes);
    v.task_index = sourced(std::move(index), tf_origin("task.index"), std::move(notes));
  }
  if (cfg.task_type) v.task_claim = tf_task_claim(cfg);
  return v;
}

class TfConfigReader final : public ClusterReader {
 public:
  std::string name() const override { return "TF_CONFIG"; }
  SourceKind kind() const override { return SourceKind::kScheduler; }
  ClusterValueSet gives() const override {
    return {.ps_hosts = true, .worker_hosts = true, .job = true, .task_index = true};
  }
  Result<ClusterValues> read(const ClusterFlags& /*flags*/, const EnvLookup& env) const override {
    std::optional<std::string> text = env_value(env, kEnvTfConfig);
    if (!text) return ClusterValues{};
    PSTRAIN_ASSIGN_OR_RETURN(TfConfig cfg, parse_tf_config(*text));
    return tf_values(cfg);
  }
  std::optional<std::string> unused_note(const EnvLookup& env) const override {
    if (!env_value(env, kEnvTfConfig)) return std::nullopt;
    return "TF_CONFIG is set but not used: flags and Batch AI gave the cluster and the task";
  }
};

SourcedValue<HostList> default_list(const std::string& what, const std::string& flag,
                                    const std::string& text) {
  ValueOrigin origin = default_origin(flag);
  Result<HostList> list = list_from(what, text, origin);
  return sourced(std::move(list), std::move(origin),
                 {what + "_hosts not given: using mnist_replica's default " + text});
}

class DefaultsReader final : public ClusterReader {
 public:
  std::string name() const override { return "defaults"; }
  SourceKind kind() const override { return SourceKind::kDefaults; }
  ClusterValueSet gives() const override {
    return {.ps_hosts = true, .worker_hosts = true, .num_gpus = true};
  }
  Result<ClusterValues> read(const ClusterFlags& /*flags*/,
                             const EnvLookup& /*env*/) const override {
    ClusterValues v;
    v.ps_hosts = default_list("ps", "--ps_hosts", kDefaultPsHosts);
    v.worker_hosts = default_list("worker", "--worker_hosts", kDefaultWorkerHosts);
    v.num_gpus = sourced(Result<int>(kDefaultNumGpus), default_origin("--num_gpus"));
    return v;
  }
};

// --- Resolution ---------------------------------------------------------------------------

// A reader that was read, at its place in the list.
struct ReadSource {
  const ClusterReader* reader = nullptr;
  size_t position = 0;
  ClusterValues values;
};

// The value resolve_task uses and where it came from; value == nullptr while no reader gave it.
template <typename T>
struct Pick {
  const SourcedValue<T>* value = nullptr;
  const ReadSource* source = nullptr;

  void take(const std::optional<SourcedValue<T>>& v, const ReadSource& s) {
    if (value == nullptr && v) {
      value = &*v;
      source = &s;
    }
  }
  // Whether the value came from a reader earlier in the list than `s`.
  bool before(const ReadSource& s) const {
    return source != nullptr && source->position < s.position;
  }
  SourceKind kind() const { return source->reader->kind(); }
  const ValueOrigin& origin() const { return value->origin; }
};

struct Picks {
  Pick<HostList> ps;
  Pick<HostList> workers;
  Pick<JobName> job;
  Pick<int> index;
  Pick<int> gpus;

  ClusterValueSet missing() const {
    return {.ps_hosts = ps.value == nullptr,
            .worker_hosts = workers.value == nullptr,
            .job = job.value == nullptr,
            .task_index = index.value == nullptr,
            .num_gpus = gpus.value == nullptr};
  }
  void take(const ReadSource& s) {
    ps.take(s.values.ps_hosts, s);
    workers.take(s.values.worker_hosts, s);
    job.take(s.values.job, s);
    index.take(s.values.task_index, s);
    gpus.take(s.values.num_gpus, s);
  }
};

// What the readers gave. Not copyable: `picks` points into `sources`.
struct Gathered {
  std::vector<ReadSource> sources;
  Picks picks;
  Gathered() = default;
  Gathered(const Gathered&) = delete;
  Gathered& operator=(const Gathered&) = delete;
};

// Reads, in order, each reader that can give a value still missing; the first to give a value
// is the one used. A reader that is skipped may leave a note.
Status gather(const ClusterReaders& readers, const ClusterFlags& flags, const EnvLookup& env,
              Gathered* g, std::vector<std::string>* notes) {
  g->sources.reserve(readers.size());  // no reallocation: picks point into it
  for (size_t i = 0; i < readers.size(); ++i) {
    if (!readers[i]) continue;
    const ClusterReader& reader = *readers[i];
    if (!g->picks.missing().intersects(reader.gives())) {
      if (std::optional<std::string> note = reader.unused_note(env)) notes->push_back(*note);
      continue;
    }
    PSTRAIN_ASSIGN_OR_RETURN(ClusterValues values, reader.read(flags, env));
    notes->insert(notes->end(), values.notes.begin(), values.notes.end());
    g->sources.push_back(ReadSource{&reader, i, std::move(values)});
    g->picks.take(g->sources.back());
  }
  return {};
}

// The picked value, or its error; its notes go to `notes` once it is used.
template <typename T>
Result<T> use(const Pick<T>& p, std::vector<std::string>* notes) {
  if (!p.value->value.ok()) return p.value->value.status();
  notes->insert(notes->end(), p.value->notes.begin(), p.value->notes.end());
  return p.value->value.value();
}

// "flags" when both came from one reader, else "flags (--ps_hosts), Batch AI (...)".
template <typename A, typename B>
std::string combined_source(const Pick<A>& a, const Pick<B>& b) {
  if (a.source == b.source) return a.source->reader->name();
  return a.origin().short_text() + ", " + b.origin().short_text();
}

// A scheduler's cluster is never completed with localhost defaults.
Status check_not_mixed_with_defaults(const Picks& p, const ClusterSpec& c) {
  if (p.ps.kind() == SourceKind::kScheduler && p.workers.kind() == SourceKind::kDefaults) {
    return invalid_argument("the ps list comes from " + p.ps.origin().from + " (" +
                            host_list_string(c.ps) +
                            ") but no source gives the worker list; give --worker_hosts, " +
                            kEnvWorkerHosts + " or TF_CONFIG cluster.worker (the local default " +
                            kDefaultWorkerHosts + " is not mixed with a scheduler's cluster)");
  }
  if (p.workers.kind() == SourceKind::kScheduler && p.ps.kind() == SourceKind::kDefaults) {
    return invalid_argument("the worker list comes from " + p.workers.origin().from + " (" +
                            host_list_string(c.workers) +
                            ") but no source gives the ps list; give --ps_hosts, " + kEnvPsHosts +
                            " or TF_CONFIG cluster.ps (the local default " + kDefaultPsHosts +
                            " is not mixed with a scheduler's cluster)");
  }
  return {};
}

// Every task needs its own address.
Status check_unique_addresses(const Picks& p, const ClusterSpec& c) {
  struct Entry {
    std::string key;
    std::string desc;
  };
  std::vector<Entry> seen;
  auto check = [&](const HostList& list, const char* job, const ValueOrigin& origin) -> Status {
    for (size_t i = 0; i < list.size(); ++i) {
      std::string key = lower(list[i].host) + ":" + std::to_string(list[i].port);
      std::string desc = std::string(job) + " " + std::to_string(i) + " (from " + origin.from + ")";
      for (const Entry& e : seen) {
        if (e.key == key) {
          return invalid_argument("address " + list[i].to_string() + " appears twice: " + e.desc +
                                  " and " + desc + "; every task needs its own host:port");
        }
      }
      seen.push_back({key, desc});
    }
    return {};
  };
  PSTRAIN_RETURN_IF_ERROR(check(c.ps, "ps", p.ps.origin()));
  return check(c.workers, "worker", p.workers.origin());
}

Status resolve_cluster(const Picks& p, ResolvedTask* out) {
  if (p.ps.value == nullptr) return invalid_argument("no ps list: give --ps_hosts");
  if (p.workers.value == nullptr) return invalid_argument("no worker list: give --worker_hosts");
  PSTRAIN_ASSIGN_OR_RETURN(out->cluster.ps, use(p.ps, &out->notes));
  PSTRAIN_ASSIGN_OR_RETURN(out->cluster.workers, use(p.workers, &out->notes));
  PSTRAIN_RETURN_IF_ERROR(check_not_mixed_with_defaults(p, out->cluster));
  PSTRAIN_RETURN_IF_ERROR(check_unique_addresses(p, out->cluster));
  out->cluster_source = combined_source(p.ps, p.workers);
  return {};
}

// "--task_index=0 (flags)", "AZ_BATCHAI_TASK_INDEX=0 (Batch AI)".
std::string given_text(const ValueOrigin& o, const std::string& value) {
  return o.name + "=" + value + " (" + o.source + ")";
}

// "drop --task_index or make it 1", "unset AZ_BATCHAI_TASK_INDEX or set it to 1".
std::string fix_text(const ValueOrigin& o, const std::string& value) {
  if (o.name.starts_with("--")) return "drop " + o.name + " or make it " + value;
  return "unset " + o.name + " or set it to " + value;
}

// "worker 1" (or "a worker" when the claim has no index).
std::string claimed_task_text(const TaskClaim& c) {
  if (!c.task_index) return std::string("a ") + job_name_string(c.job);
  return std::string(job_name_string(c.job)) + " " + std::to_string(*c.task_index);
}

// A reader that names this process's task (TF_CONFIG's "task") must agree with the job name
// and task index that earlier readers gave.
Status check_claim(const ReadSource& s, const Picks& p, const ResolvedTask& t) {
  if (!s.values.task_claim) return {};
  const bool job_earlier = p.job.before(s);
  const bool index_earlier = p.index.before(s);
  if (!job_earlier && !index_earlier) return {};
  const Result<TaskClaim>& claim = *s.values.task_claim;
  if (!claim.ok()) return claim.status();
  std::vector<std::string> given;
  std::vector<std::string> fixes;
  if (job_earlier && claim->job != t.job) {
    given.push_back(given_text(p.job.origin(), job_name_string(t.job)));
    fixes.push_back(fix_text(p.job.origin(), job_name_string(claim->job)));
  }
  if (index_earlier && claim->task_index && *claim->task_index != t.task_index) {
    given.push_back(given_text(p.index.origin(), std::to_string(t.task_index)));
    fixes.push_back(fix_text(p.index.origin(), std::to_string(*claim->task_index)));
  }
  if (given.empty()) return {};
  std::string msg = given[0];
  for (size_t i = 1; i < given.size(); ++i) msg += " and " + given[i];
  msg += (given.size() == 1 ? " disagrees with " : " disagree with ") + claim->text +
         ", which is " + claimed_task_text(*claim) + " in pstrain's numbering";
  if (!claim->numbering.empty()) msg += " (" + claim->numbering + ")";
  for (size_t i = 0; i < fixes.size(); ++i) msg += (i == 0 ? "; " : "; and ") + fixes[i];
  return invalid_argument(msg);
}

Status check_index_in_range(const Picks& p, const ResolvedTask& t) {
  const bool ps = t.job == JobName::kPs;
  const HostList& list = ps ? t.cluster.ps : t.cluster.workers;
  const ValueOrigin& list_origin = ps ? p.ps.origin() : p.workers.origin();
  if (t.task_index >= 0 && static_cast<size_t>(t.task_index) < list.size()) return {};
  return invalid_argument("task_index " + std::to_string(t.task_index) + " (from " +
                          p.index.origin().from + ") is out of range: the cluster has " +
                          std::to_string(list.size()) + " " + (ps ? "ps" : "workers") + " (from " +
                          list_origin.from + "), so " + job_name_string(t.job) +
                          " task indices are 0.." + std::to_string(list.size() - 1));
}

Status resolve_job_and_index(const Gathered& g, ResolvedTask* out) {
  const Picks& p = g.picks;
  if (p.job.value == nullptr) {
    return invalid_argument(
        "no job name: give --job_name=ps|worker (Batch AI passes it on the command line), or "
        "set TF_CONFIG with a \"task\": {\"type\": ..., \"index\": ...}");
  }
  PSTRAIN_ASSIGN_OR_RETURN(out->job, use(p.job, &out->notes));
  if (p.index.value == nullptr) {
    return invalid_argument(std::string("no task index for this ") + job_name_string(out->job) +
                            " task: give --task_index, or set " + kEnvTaskIndex +
                            " or TF_CONFIG with a \"task\": {\"type\": ..., \"index\": ...}");
  }
  PSTRAIN_ASSIGN_OR_RETURN(out->task_index, use(p.index, &out->notes));
  for (const ReadSource& s : g.sources) PSTRAIN_RETURN_IF_ERROR(check_claim(s, p, *out));
  PSTRAIN_RETURN_IF_ERROR(check_index_in_range(p, *out));
  out->task_source = combined_source(p.job, p.index);
  return {};
}

Status resolve_num_gpus(const Picks& p, ResolvedTask* out) {
  if (p.gpus.value == nullptr) return invalid_argument("no num_gpus: give --num_gpus");
  PSTRAIN_ASSIGN_OR_RETURN(out->num_gpus, use(p.gpus, &out->notes));
  if (out->num_gpus < 0) {
    return invalid_argument("num_gpus " + std::to_string(out->num_gpus) + " (from " +
                            p.gpus.origin().from +
                            ") is negative; give 0 for the CPU or the number of GPUs to use");
  }
  out->num_gpus_source = p.gpus.origin().short_text();
  return {};
}

}  // namespace

// --- Public API ---------------------------------------------------------------------------

const char* job_name_string(JobName job) {
  switch (job) {
    case JobName::kPs:
      return "ps";
    case JobName::kWorker:
      return "worker";
  }
  return "?";
}

Result<JobName> parse_job_name(const std::string& text) {
  if (text == "ps") return JobName::kPs;
  if (text == "worker") return JobName::kWorker;
  std::string msg = "job name " + quote(text) + " is not \"ps\" or \"worker\"";
  if (text == "chief" || text == "master") {
    msg += "; the chief is worker 0: give --job_name=worker --task_index=0";
  }
  return invalid_argument(msg);
}

std::string HostPort::to_string() const { return host + ":" + std::to_string(port); }

Result<HostPort> parse_host_port(const std::string& text) {
  const std::string q = quote(text);
  HostPort hp;
  std::string port_text;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) {
      return invalid_argument(q + " is not host:port: '[' without a closing ']'");
    }
    std::string inner = text.substr(1, close - 1);
    if (inner.empty() || inner.find(':') == std::string::npos ||
        !std::all_of(inner.begin(), inner.end(), ipv6_char_ok)) {
      return invalid_argument(q + " is not host:port: " + quote(inner) +
                              " in brackets is not an IPv6 address");
    }
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      return invalid_argument(q + " is not host:port: no \":port\" after the ']'");
    }
    hp.host = text.substr(0, close + 1);
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      return invalid_argument(q + " is not host:port: it has no \":port\"");
    }
    hp.host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (hp.host.empty()) return invalid_argument(q + " is not host:port: the host is empty");
    if (hp.host.find(':') != std::string::npos) {
      return invalid_argument(q + " is not host:port: an IPv6 address needs brackets, like [" +
                              hp.host + "]:" + port_text);
    }
    auto bad = std::find_if_not(hp.host.begin(), hp.host.end(), host_char_ok);
    if (bad != hp.host.end()) {
      return invalid_argument(q + " is not host:port: the host " + quote(hp.host) +
                              " has a character that is not allowed (" +
                              quote(std::string(1, *bad)) +
                              "; a host is a name or IPv4 address of letters, digits, '-', '.', "
                              "'_', or an IPv6 address in brackets)");
    }
  }
  if (port_text.empty()) return invalid_argument(q + " is not host:port: the port is empty");
  if (!std::all_of(port_text.begin(), port_text.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return invalid_argument(q + " is not host:port: the port " + quote(port_text) +
                            " is not a number");
  }
  std::optional<long long> port = port_text.size() <= 6 ? parse_integer(port_text) : std::nullopt;
  if (!port || *port < 1 || *port > 65535) {
    return invalid_argument(q + ": port " + port_text + " is out of range 1..65535");
  }
  hp.port = static_cast<int>(*port);
  return hp;
}

Result<std::vector<HostPort>> parse_host_list(const std::string& text) {
  if (trim(text).empty()) {
    return invalid_argument("the host list " + quote(text) +
                            " is empty; give comma-separated host:port entries");
  }
  std::vector<HostPort> out;
  size_t start = 0;
  int item = 1;
  while (true) {
    size_t comma = text.find(',', start);
    std::string part =
        trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (part.empty()) {
      return invalid_argument("entry " + std::to_string(item) + " of the host list " + quote(text) +
                              " is empty (stray comma?)");
    }
    Result<HostPort> hp = parse_host_port(part);
    if (!hp.ok()) {
      return invalid_argument("entry " + std::to_string(item) + " of " + quote(text) + ": " +
                              hp.status().message());
    }
    out.push_back(*hp);
    if (comma == std::string::npos) break;
    start = comma + 1;
    ++item;
  }
  return out;
}

std::string host_list_string(const std::vector<HostPort>& hosts) {
  std::string s;
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (i > 0) s += ",";
    s += hosts[i].to_string();
  }
  return s;
}

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe)
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::unique_ptr<const ClusterReader> flags_reader() { return std::make_unique<FlagsReader>(); }
std::unique_ptr<const ClusterReader> batch_ai_reader() { return std::make_unique<BatchAiReader>(); }
std::unique_ptr<const ClusterReader> tf_config_reader() {
  return std::make_unique<TfConfigReader>();
}
std::unique_ptr<const ClusterReader> defaults_reader() {
  return std::make_unique<DefaultsReader>();
}

ClusterReaders default_cluster_readers() {
  ClusterReaders readers;
  readers.push_back(flags_reader());
  readers.push_back(batch_ai_reader());
  readers.push_back(tf_config_reader());
  readers.push_back(defaults_reader());
  return readers;
}

Result<ResolvedTask> resolve_task(const ClusterReaders& readers, const ClusterFlags& flags,
                                  const EnvLookup& env) {
  ResolvedTask out;
  Gathered g;
  PSTRAIN_RETURN_IF_ERROR(gather(readers, flags, env, &g, &out.notes));
  PSTRAIN_RETURN_IF_ERROR(resolve_cluster(g.picks, &out));
  PSTRAIN_RETURN_IF_ERROR(resolve_job_and_index(g, &out));
  PSTRAIN_RETURN_IF_ERROR(resolve_num_gpus(g.picks, &out));
  return out;
}

Result<ResolvedTask> resolve_task(const ClusterFlags& flags, const EnvLookup& env) {
  return resolve_task(default_cluster_readers(), flags, env);
}

std::string describe_task(const ResolvedTask& t) {
  std::ostringstream os;
  os << job_name_string(t.job) << " " << t.task_index << " in a cluster of " << t.cluster.ps.size()
     << " ps and " << t.cluster.workers.size() << " worker"
     << (t.cluster.workers.size() == 1 ? "" : "s") << ", num_gpus " << t.num_gpus
     << "; cluster from " << t.cluster_source << "; task from " << t.task_source
     << "; num_gpus from " << t.num_gpus_source;
  return os.str();
}

// --- Rank-based schedulers ------------------------------------------------------------------

namespace {

constexpr int kDefaultRendezvousPort = 29400;

// 10000..29999: below the kernel's ephemeral range, so no outgoing connection holds it.
int derived_port(const std::string& seed) {
  Fnv1a h;
  h.add(seed);
  return 10000 + static_cast<int>(h.value() % 20000);
}

Result<int> env_int_in(const EnvLookup& env, const std::string& name, int lo, int hi,
                       const std::string& what) {
  std::optional<std::string> text = env_value(env, name);
  if (!text) return invalid_argument(name + " is not set; " + what);
  std::optional<long long> v = parse_integer(trim(*text));
  if (!v || *v < lo || *v > hi) {
    return invalid_argument(name + "=" + quote(*text) + " is not an integer from " +
                            std::to_string(lo) + " to " + std::to_string(hi) + "; " + what);
  }
  return static_cast<int>(*v);
}

std::string this_host_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

bool is_loopback_name(const std::string& h) {
  return h == "localhost" || h.starts_with("127.") || h == "[::1]" || h == "::1";
}

// Where this task says it serves: loopback when the rendezvous is on loopback (one host).
Status choose_host(const EnvLookup& env, RankTask* t) {
  if (is_loopback_name(t->rendezvous.host)) {
    t->host = "127.0.0.1";
    t->host_source = "the rendezvous is on loopback (one host)";
  } else if (auto h = env_value(env, "DMLC_NODE_HOST"); h && t->scheduler == "DMLC") {
    t->host = trim(*h);
    t->host_source = "DMLC_NODE_HOST";
  } else if (auto n = env_value(env, "SLURMD_NODENAME"); n && t->scheduler == "Slurm") {
    t->host = trim(*n);
    t->host_source = "SLURMD_NODENAME";
  } else {
    t->host = this_host_name();
    t->host_source = "the host name";
  }
  Result<HostPort> hp = parse_host_port(t->host + ":1");
  if (!hp.ok()) {
    return invalid_argument("this task's address " + quote(t->host) + " (from " + t->host_source +
                            ") is not a host name: " + hp.status().message());
  }
  t->host = hp->host;
  return {};
}

Status rendezvous_from_flag(const RankFlags& rf, RankTask* t) {
  Result<HostPort> hp = parse_host_port(trim(*rf.rendezvous));
  if (!hp.ok()) return invalid_argument("--rendezvous: " + hp.status().message());
  t->rendezvous = *hp;
  t->rendezvous_source = "--rendezvous";
  return {};
}

// Slurm: the first host of the step's node list, a port from the job id.
Status slurm_rendezvous(const EnvLookup& env, RankTask* t) {
  std::string var = "SLURM_STEP_NODELIST";
  std::optional<std::string> list = env_value(env, var);
  if (!list) {
    var = "SLURM_JOB_NODELIST";
    list = env_value(env, var);
  }
  if (!list) {
    return invalid_argument(
        "Slurm sets SLURM_PROCID but neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST: give "
        "--rendezvous host:port (the host of rank 0)");
  }
  Result<std::vector<std::string>> hosts = expand_hostlist(trim(*list));
  if (!hosts.ok()) return invalid_argument(var + ": " + hosts.status().message());
  t->rendezvous.host = hosts->front();
  if (auto id = env_value(env, "SLURM_JOB_ID")) {
    std::optional<long long> v = parse_integer(trim(*id));
    if (!v || *v < 0) {
      return invalid_argument("SLURM_JOB_ID=" + quote(*id) +
                              " is not a job number; give --rendezvous host:port");
    }
    t->rendezvous.port = 10000 + static_cast<int>(*v % 20000);
    t->rendezvous_source = "the first host of " + var + "=" + trim(*list) +
                           ", port 10000 + SLURM_JOB_ID=" + trim(*id) + " % 20000";
  } else {
    t->rendezvous.port = kDefaultRendezvousPort;
    t->rendezvous_source = "the first host of " + var + "=" + trim(*list) + ", port " +
                           std::to_string(kDefaultRendezvousPort) + " (no SLURM_JOB_ID)";
  }
  return {};
}

// mpirun: one host unless --rendezvous says otherwise; a port from the launcher's job id.
void local_rendezvous(const EnvLookup& env, RankTask* t) {
  t->rendezvous.host = "127.0.0.1";
  for (const char* var : {"PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "PMI_KVSNAME"}) {
    if (auto v = env_value(env, var)) {
      t->rendezvous.port = derived_port(*v);
      t->rendezvous_source = std::string(
                                 "127.0.0.1 (no node list; --rendezvous for several "
                                 "hosts), port derived from ") +
                             var + "=" + *v;
      return;
    }
  }
  t->rendezvous.port = kDefaultRendezvousPort;
  t->rendezvous_source = "127.0.0.1 (no node list; --rendezvous for several hosts), port " +
                         std::to_string(kDefaultRendezvousPort);
}

// Flags' --job_name/--task_index must agree with the task the ranks give.
Status check_flags_agree(const ClusterFlags& f, const RankTask& t) {
  if (f.job_name) {
    Result<JobName> j = parse_job_name(*f.job_name);
    if (!j.ok()) return invalid_argument("--job_name (from flags): " + j.status().message());
    if (*j != t.job) {
      return invalid_argument("--job_name=" + *f.job_name + " (flags) disagrees with " +
                              t.task_source + ", which makes this task a " +
                              job_name_string(t.job) + "; drop --job_name");
    }
  }
  if (f.task_index && t.task_index >= 0 && *f.task_index != t.task_index) {
    return invalid_argument("--task_index=" + std::to_string(*f.task_index) +
                            " (flags) disagrees with " + t.task_source +
                            ", which makes this task " + job_name_string(t.job) + " " +
                            std::to_string(t.task_index) + "; drop --task_index");
  }
  return {};
}

Result<RankTask> dmlc_task(const ClusterFlags& f, const RankFlags& rf, const EnvLookup& env,
                           const std::string& role) {
  RankTask t;
  t.scheduler = "DMLC";
  const std::string r = trim(role);
  if (r == "scheduler") {
    t.rendezvous_only = true;
    t.serves_rendezvous = true;
  } else if (r == "server") {
    t.job = JobName::kPs;
  } else if (r == "worker") {
    t.job = JobName::kWorker;
  } else {
    return invalid_argument("DMLC_ROLE=" + quote(role) + " is not scheduler, server or worker");
  }
  const std::string launch = "a ps-lite launch sets it";
  PSTRAIN_ASSIGN_OR_RETURN(t.num_ps, env_int_in(env, "DMLC_NUM_SERVER", 1, 100000, launch));
  PSTRAIN_ASSIGN_OR_RETURN(t.num_workers, env_int_in(env, "DMLC_NUM_WORKER", 1, 100000, launch));
  if (rf.num_ps && *rf.num_ps != t.num_ps) {
    return invalid_argument("--num_ps=" + std::to_string(*rf.num_ps) +
                            " disagrees with DMLC_NUM_SERVER=" + std::to_string(t.num_ps) +
                            "; drop --num_ps");
  }
  t.counts_source = "DMLC_NUM_SERVER=" + std::to_string(t.num_ps) +
                    ", DMLC_NUM_WORKER=" + std::to_string(t.num_workers);
  t.task_source = "DMLC (DMLC_ROLE=" + r + ")";
  if (t.job == JobName::kWorker && !t.rendezvous_only) {
    if (env_value(env, "DMLC_WORKER_ID")) {
      PSTRAIN_ASSIGN_OR_RETURN(t.task_index, env_int_in(env, "DMLC_WORKER_ID", 0, t.num_workers - 1,
                                                        "it is the worker's index"));
      t.task_source =
          "DMLC (DMLC_ROLE=worker, DMLC_WORKER_ID=" + std::to_string(t.task_index) + ")";
    }
  }
  if (t.task_index < 0 && f.task_index && !t.rendezvous_only) {
    const int n = t.job == JobName::kPs ? t.num_ps : t.num_workers;
    if (*f.task_index < 0 || *f.task_index >= n) {
      return invalid_argument("--task_index=" + std::to_string(*f.task_index) + " is outside the " +
                              std::to_string(n) + " " + job_name_string(t.job) +
                              " tasks DMLC's counts give (" + t.counts_source + ")");
    }
    t.task_index = *f.task_index;
  }
  if (rf.rendezvous) {
    PSTRAIN_RETURN_IF_ERROR(rendezvous_from_flag(rf, &t));
  } else {
    std::optional<std::string> uri = env_value(env, "DMLC_PS_ROOT_URI");
    if (!uri) {
      return invalid_argument(
          "DMLC_PS_ROOT_URI is not set: it is the scheduler's address (or "
          "give --rendezvous host:port)");
    }
    PSTRAIN_ASSIGN_OR_RETURN(t.rendezvous.port, env_int_in(env, "DMLC_PS_ROOT_PORT", 1, 65535,
                                                           "it is the scheduler's port"));
    Result<HostPort> hp = parse_host_port(trim(*uri) + ":" + std::to_string(t.rendezvous.port));
    if (!hp.ok()) {
      return invalid_argument("DMLC_PS_ROOT_URI=" + quote(*uri) + ": " + hp.status().message());
    }
    t.rendezvous = *hp;
    t.rendezvous_source = "DMLC_PS_ROOT_URI, DMLC_PS_ROOT_PORT";
  }
  if (!t.rendezvous_only) PSTRAIN_RETURN_IF_ERROR(check_flags_agree(f, t));
  PSTRAIN_RETURN_IF_ERROR(choose_host(env, &t));
  return t;
}

struct RankVars {
  const char* scheduler;
  const char* rank;
  const char* size;
  const char* local_rank;
};

Result<RankTask> ranked_task(const ClusterFlags& f, const RankFlags& rf, const EnvLookup& env,
                             const RankVars& v) {
  RankTask t;
  t.scheduler = v.scheduler;
  const std::string sched = v.scheduler;
  PSTRAIN_ASSIGN_OR_RETURN(const int size,
                           env_int_in(env, v.size, 1, 1000000, sched + " sets it with " + v.rank));
  PSTRAIN_ASSIGN_OR_RETURN(
      const int rank,
      env_int_in(env, v.rank, 0, size - 1, std::string("ranks run 0..") + v.size + "-1"));
  t.rank = rank;
  if (!rf.num_ps) {
    return invalid_argument(sched + " gives this task rank " + std::to_string(rank) + " of " +
                            std::to_string(size) + " (" + v.rank + ", " + v.size +
                            ") but not its role: give --num_ps N (or PSTRAIN_NUM_PS=N) so that "
                            "ranks 0..N-1 are parameter servers and the rest workers");
  }
  if (size < 2) {
    return invalid_argument(std::string(v.size) +
                            "=1: a job needs at least 2 tasks (1 ps and 1 "
                            "worker); e.g. srun -n 3 or mpirun -np 3 with --num_ps 1");
  }
  if (*rf.num_ps < 1 || *rf.num_ps > size - 1) {
    return invalid_argument("--num_ps=" + std::to_string(*rf.num_ps) + " with " + v.size + "=" +
                            std::to_string(size) + " leaves " +
                            (*rf.num_ps < 1 ? "no parameter server" : "no worker") +
                            ": give --num_ps from 1 to " + std::to_string(size - 1));
  }
  t.num_ps = *rf.num_ps;
  t.num_workers = size - t.num_ps;
  t.counts_source =
      "--num_ps=" + std::to_string(t.num_ps) + ", " + v.size + "=" + std::to_string(size);
  t.job = rank < t.num_ps ? JobName::kPs : JobName::kWorker;
  t.task_index = rank < t.num_ps ? rank : rank - t.num_ps;
  t.task_source = sched + " (" + v.rank + "=" + std::to_string(rank) +
                  ", --num_ps=" + std::to_string(t.num_ps) + ")";
  t.serves_rendezvous = rank == 0;
  if (env_value(env, v.local_rank)) {
    PSTRAIN_ASSIGN_OR_RETURN(
        t.local_rank, env_int_in(env, v.local_rank, 0, 1000000, "it is the rank on this node"));
    t.local_rank_source = std::string(v.local_rank) + "=" + std::to_string(*t.local_rank);
  }
  if (rf.rendezvous) {
    PSTRAIN_RETURN_IF_ERROR(rendezvous_from_flag(rf, &t));
  } else if (sched == "Slurm") {
    PSTRAIN_RETURN_IF_ERROR(slurm_rendezvous(env, &t));
  } else {
    local_rendezvous(env, &t);
  }
  PSTRAIN_RETURN_IF_ERROR(check_flags_agree(f, t));
  PSTRAIN_RETURN_IF_ERROR(choose_host(env, &t));
  return t;
}

class RendezvousReader final : public ClusterReader {
 public:
  RendezvousReader(RankTask t, ClusterSpec c, JobName job, int index)
      : t_(std::move(t)), c_(std::move(c)), job_(job), index_(index) {}
  std::string name() const override {
    return t_.scheduler + " rendezvous at " + t_.rendezvous.to_string();
  }
  SourceKind kind() const override { return SourceKind::kScheduler; }
  ClusterValueSet gives() const override {
    return {.ps_hosts = true, .worker_hosts = true, .job = true, .task_index = true};
  }
  Result<ClusterValues> read(const ClusterFlags& /*flags*/,
                             const EnvLookup& /*env*/) const override {
    ClusterValues v;
    const std::string where = "rendezvous at " + t_.rendezvous.to_string();
    const ValueOrigin lists{"rendezvous", where, "the " + where};
    v.ps_hosts = sourced(Result<HostList>(c_.ps), lists);
    v.worker_hosts = sourced(Result<HostList>(c_.workers), lists);
    const ValueOrigin task{t_.scheduler, t_.task_source, t_.task_source};
    v.job = sourced(Result<JobName>(job_), task);
    const ValueOrigin index = t_.task_index >= 0
                                  ? task
                                  : ValueOrigin{"rendezvous", "order of arrival at the " + where,
                                                "the order of arrival at the " + where};
    v.task_index = sourced(Result<int>(index_), index);
    return v;
  }

 private:
  RankTask t_;
  ClusterSpec c_;
  JobName job_;
  int index_;
};

}  // namespace

Result<std::optional<RankTask>> resolve_rank_task(const ClusterFlags& f, const RankFlags& rf,
                                                  const EnvLookup& env) {
  if (f.ps_hosts || f.worker_hosts || env_value(env, kEnvPsHosts) ||
      env_value(env, kEnvWorkerHosts) || env_value(env, kEnvTfConfig)) {
    return std::optional<RankTask>();
  }
  std::optional<RankTask> out;
  if (auto role = env_value(env, "DMLC_ROLE")) {
    PSTRAIN_ASSIGN_OR_RETURN(out, dmlc_task(f, rf, env, *role));
  } else if (env_value(env, "OMPI_COMM_WORLD_RANK")) {
    PSTRAIN_ASSIGN_OR_RETURN(
        out, ranked_task(f, rf, env,
                         {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                          "OMPI_COMM_WORLD_LOCAL_RANK"}));
  } else if (env_value(env, "PMI_RANK")) {
    PSTRAIN_ASSIGN_OR_RETURN(
        out, ranked_task(f, rf, env, {"PMI", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"}));
  } else if (env_value(env, "SLURM_PROCID")) {
    PSTRAIN_ASSIGN_OR_RETURN(
        out, ranked_task(f, rf, env, {"Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"}));
  } else if (rf.num_ps) {
    return invalid_argument(
        "--num_ps=" + std::to_string(*rf.num_ps) +
        " makes ranks 0..N-1 parameter servers, but no rank-based scheduler's variables are set "
        "(SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK, DMLC_ROLE): start pstrain with srun or "
        "mpirun, or give --job_name, --task_index, --ps_hosts and --worker_hosts");
  }
  return out;
}

std::string describe_rank_task(const RankTask& t) {
  std::ostringstream os;
  os << t.scheduler << ": ";
  if (t.rendezvous_only) {
    os << "the scheduler role: serves the rendezvous only";
  } else {
    os << job_name_string(t.job) << " ";
    if (t.task_index >= 0) {
      os << t.task_index;
    } else {
      os << "(index from the rendezvous)";
    }
    os << " from " << t.task_source;
  }
  os << "; " << t.num_ps << " ps and " << t.num_workers << " workers from " << t.counts_source
     << "; rendezvous at " << t.rendezvous.to_string() << " from " << t.rendezvous_source;
  if (!t.rendezvous_only) os << "; this task's host " << t.host << " from " << t.host_source;
  if (t.local_rank) os << "; local rank " << *t.local_rank << " from " << t.local_rank_source;
  return os.str();
}

std::unique_ptr<const ClusterReader> rendezvous_reader(const RankTask& task,
                                                       const ClusterSpec& cluster, JobName job,
                                                       int task_index) {
  return std::make_unique<RendezvousReader>(task, cluster, job, task_index);
}

ClusterReaders rank_cluster_readers(std::unique_ptr<const ClusterReader> rendezvous) {
  ClusterReaders readers;
  readers.push_back(flags_reader());
  readers.push_back(batch_ai_reader());
  readers.push_back(tf_config_reader());
  readers.push_back(std::move(rendezvous));
  readers.push_back(defaults_reader());
  return readers;
}

uint64_t derive_job_id(const ClusterSpec& spec) {
  Fnv1a h;
  auto mix = [&h](const std::string& s) { h.add(s); };
  auto mix_list = [&](const char* tag, const std::vector<HostPort>& list) {
    mix(tag);
    for (const HostPort& hp : list) {
      mix(lower(hp.host) + ":" + std::to_string(hp.port) + ",");
    }
    mix(";");
  };
  mix("pstrain-job/1;");
  mix_list("ps=", spec.ps);
  mix_list("worker=", spec.workers);
  return h.value() == 0 ? 1 : h.value();
}

}  // namespace pstrain
