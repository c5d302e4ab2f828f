#include "runtime/job/cluster.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "runtime/base/hash.h"
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

// --- Where a value came from --------------------------------------------------------------

enum class Source { kFlags, kBatchAi, kTfConfig, kDefault };

struct Origin {
  Source source = Source::kDefault;
  std::string name;  // "--ps_hosts", "AZ_BATCHAI_PS_HOSTS", "cluster.ps", "--ps_hosts"
};

const char* source_label(Source s) {
  switch (s) {
    case Source::kFlags:
      return "flags";
    case Source::kBatchAi:
      return "Batch AI (AZ_BATCHAI_*)";
    case Source::kTfConfig:
      return "TF_CONFIG";
    case Source::kDefault:
      return "defaults";
  }
  return "?";
}

// For error messages: "flags --ps_hosts", "AZ_BATCHAI_PS_HOSTS", "TF_CONFIG cluster.ps",
// "the default of --ps_hosts".
std::string from_text(const Origin& o) {
  switch (o.source) {
    case Source::kFlags:
      return "flags " + o.name;
    case Source::kBatchAi:
      return o.name;
    case Source::kTfConfig:
      return std::string("TF_CONFIG ") + o.name;
    case Source::kDefault:
      return "the default of " + o.name;
  }
  return o.name;
}

// For the source summary in a mix: "flags (--ps_hosts)", "Batch AI (AZ_BATCHAI_PS_HOSTS)".
std::string short_text(const Origin& o) {
  switch (o.source) {
    case Source::kFlags:
      return "flags (" + o.name + ")";
    case Source::kBatchAi:
      return "Batch AI (" + o.name + ")";
    case Source::kTfConfig:
      return "TF_CONFIG (" + o.name + ")";
    case Source::kDefault:
      return "defaults (" + o.name + ")";
  }
  return o.name;
}

std::string combined_source(const Origin& a, const Origin& b) {
  if (a.source == b.source) return source_label(a.source);
  return short_text(a) + ", " + short_text(b);
}

bool is_scheduler(Source s) { return s == Source::kBatchAi || s == Source::kTfConfig; }

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

Result<std::vector<HostPort>> list_from(const std::string& what, const std::string& text,
                                        const Origin& origin) {
  Result<std::vector<HostPort>> r = parse_host_list(text);
  if (!r.ok()) {
    std::string msg = "bad " + what + " list " + quote(text) + " (from " + from_text(origin) +
                      "): " + r.status().message();
    if (origin.source == Source::kFlags && trim(text).empty()) {
      msg += "; if the flag was written as " + origin.name + "=$" +
             (what == "ps" ? kEnvPsHosts : kEnvWorkerHosts) + ", that variable is not set";
    }
    return invalid_argument(msg);
  }
  return r;
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

Result<ResolvedTask> resolve_task(const ClusterFlags& flags, const EnvLookup& env) {
  ResolvedTask out;

  const std::optional<std::string> env_ps = env_value(env, kEnvPsHosts);
  const std::optional<std::string> env_workers = env_value(env, kEnvWorkerHosts);
  const std::optional<std::string> env_index = env_value(env, kEnvTaskIndex);
  const std::optional<std::string> env_gpus = env_value(env, kEnvNumGpus);
  const std::optional<std::string> env_tf = env_value(env, kEnvTfConfig);

  // TF_CONFIG is read only if some value it can give is not given by flags or Batch AI.
  const bool need_tf = !(flags.ps_hosts || env_ps) || !(flags.worker_hosts || env_workers) ||
                       !flags.job_name || !(flags.task_index || env_index);
  std::optional<TfConfig> tf;
  if (env_tf && need_tf) {
    PSTRAIN_ASSIGN_OR_RETURN(tf, parse_tf_config(*env_tf));
    out.notes.insert(out.notes.end(), tf->notes.begin(), tf->notes.end());
  } else if (env_tf) {
    out.notes.push_back(
        "TF_CONFIG is set but not used: flags and Batch AI gave the cluster and the task");
  }

  // ps list.
  Origin ps_origin;
  if (flags.ps_hosts) {
    ps_origin = {Source::kFlags, "--ps_hosts"};
    PSTRAIN_ASSIGN_OR_RETURN(out.cluster.ps, list_from("ps", *flags.ps_hosts, ps_origin));
  } else if (env_ps) {
    ps_origin = {Source::kBatchAi, kEnvPsHosts};
    PSTRAIN_ASSIGN_OR_RETURN(out.cluster.ps, list_from("ps", *env_ps, ps_origin));
  } else if (tf && tf->ps) {
    ps_origin = {Source::kTfConfig, "cluster.ps"};
    out.cluster.ps = *tf->ps;
  } else {
    ps_origin = {Source::kDefault, "--ps_hosts"};
    PSTRAIN_ASSIGN_OR_RETURN(out.cluster.ps, list_from("ps", kDefaultPsHosts, ps_origin));
  }

  // worker list.
  Origin worker_origin;
  if (flags.worker_hosts) {
    worker_origin = {Source::kFlags, "--worker_hosts"};
    PSTRAIN_ASSIGN_OR_RETURN(out.cluster.workers,
                             list_from("worker", *flags.worker_hosts, worker_origin));
  } else if (env_workers) {
    worker_origin = {Source::kBatchAi, kEnvWorkerHosts};
    PSTRAIN_ASSIGN_OR_RETURN(out.cluster.workers, list_from("worker", *env_workers, worker_origin));
  } else if (tf && tf->workers) {
    worker_origin = {Source::kTfConfig, tf->workers_name};
    out.cluster.workers = *tf->workers;
    if (!tf->chief_key.empty()) {
      out.notes.push_back("TF_CONFIG: " + tf->chief_key +
                          " counted as worker 0, workers shifted by one");
    }
  } else {
    worker_origin = {Source::kDefault, "--worker_hosts"};
    PSTRAIN_ASSIGN_OR_RETURN(out.cluster.workers,
                             list_from("worker", kDefaultWorkerHosts, worker_origin));
  }

  // A scheduler's cluster is never completed with localhost defaults.
  if (is_scheduler(ps_origin.source) && worker_origin.source == Source::kDefault) {
    return invalid_argument("the ps list comes from " + from_text(ps_origin) + " (" +
                            host_list_string(out.cluster.ps) +
                            ") but no source gives the worker list; give --worker_hosts, " +
                            kEnvWorkerHosts + " or TF_CONFIG cluster.worker (the local default " +
                            kDefaultWorkerHosts + " is not mixed with a scheduler's cluster)");
  }
  if (is_scheduler(worker_origin.source) && ps_origin.source == Source::kDefault) {
    return invalid_argument("the worker list comes from " + from_text(worker_origin) + " (" +
                            host_list_string(out.cluster.workers) +
                            ") but no source gives the ps list; give --ps_hosts, " + kEnvPsHosts +
                            " or TF_CONFIG cluster.ps (the local default " + kDefaultPsHosts +
                            " is not mixed with a scheduler's cluster)");
  }
  if (ps_origin.source == Source::kDefault) {
    out.notes.push_back(std::string("ps_hosts not given: using mnist_replica's default ") +
                        kDefaultPsHosts);
  }
  if (worker_origin.source == Source::kDefault) {
    out.notes.push_back(std::string("worker_hosts not given: using mnist_replica's default ") +
                        kDefaultWorkerHosts);
  }

  // Every task needs its own address.
  {
    struct Entry {
      std::string key;
      std::string desc;
    };
    std::vector<Entry> seen;
    auto check = [&](const std::vector<HostPort>& list, const char* job,
                     const Origin& origin) -> Status {
      for (size_t i = 0; i < list.size(); ++i) {
        std::string key = lower(list[i].host) + ":" + std::to_string(list[i].port);
        std::string desc =
            std::string(job) + " " + std::to_string(i) + " (from " + from_text(origin) + ")";
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
    PSTRAIN_RETURN_IF_ERROR(check(out.cluster.ps, "ps", ps_origin));
    PSTRAIN_RETURN_IF_ERROR(check(out.cluster.workers, "worker", worker_origin));
  }
  out.cluster_source = combined_source(ps_origin, worker_origin);

  // Job name.
  Origin job_origin;
  if (flags.job_name) {
    job_origin = {Source::kFlags, "--job_name"};
    Result<JobName> j = parse_job_name(*flags.job_name);
    if (!j.ok()) {
      return invalid_argument("--job_name (from flags): " + j.status().message());
    }
    out.job = *j;
  } else if (tf && (tf->has_task || tf->task_type)) {
    job_origin = {Source::kTfConfig, "task.type"};
    PSTRAIN_ASSIGN_OR_RETURN(out.job, tf_job(*tf));
  } else {
    return invalid_argument(
        "no job name: give --job_name=ps|worker (Batch AI passes it on the command line), or "
        "set TF_CONFIG with a \"task\": {\"type\": ..., \"index\": ...}");
  }

  // Task index.
  Origin index_origin;
  if (flags.task_index) {
    index_origin = {Source::kFlags, "--task_index"};
    out.task_index = *flags.task_index;
  } else if (env_index) {
    index_origin = {Source::kBatchAi, kEnvTaskIndex};
    PSTRAIN_ASSIGN_OR_RETURN(out.task_index, env_int(kEnvTaskIndex, *env_index));
  } else if (tf && tf->has_task) {
    index_origin = {Source::kTfConfig, "task.index"};
    PSTRAIN_ASSIGN_OR_RETURN(out.task_index, tf_task_index(*tf, &out.notes));
    if (job_origin.source != Source::kTfConfig) {
      // The index is TF_CONFIG's; it means something only for TF_CONFIG's job.
      PSTRAIN_ASSIGN_OR_RETURN(JobName tf_j, tf_job(*tf));
      if (tf_j != out.job) {
        return invalid_argument(
            std::string("--job_name=") + job_name_string(out.job) +
            " (from flags) disagrees with TF_CONFIG task.type " + quote(*tf->task_type) +
            ", whose task.index would be the task index; give --task_index too, or fix "
            "--job_name");
      }
    }
  } else {
    return invalid_argument(std::string("no task index for this ") + job_name_string(out.job) +
                            " task: give --task_index, or set " + kEnvTaskIndex +
                            " or TF_CONFIG with a \"task\": {\"type\": ..., \"index\": ...}");
  }
  {
    const std::vector<HostPort>& list =
        out.job == JobName::kPs ? out.cluster.ps : out.cluster.workers;
    const Origin& list_origin = out.job == JobName::kPs ? ps_origin : worker_origin;
    if (out.task_index < 0 || static_cast<size_t>(out.task_index) >= list.size()) {
      const std::string jobs = out.job == JobName::kPs ? "ps" : "workers";
      return invalid_argument("task_index " + std::to_string(out.task_index) + " (from " +
                              from_text(index_origin) + ") is out of range: the cluster has " +
                              std::to_string(list.size()) + " " + jobs + " (from " +
                              from_text(list_origin) + "), so " + job_name_string(out.job) +
                              " task indices are 0.." + std::to_string(list.size() - 1));
    }
  }
  out.task_source = combined_source(job_origin, index_origin);

  // num_gpus (TF_CONFIG does not give it).
  Origin gpus_origin;
  if (flags.num_gpus) {
    gpus_origin = {Source::kFlags, "--num_gpus"};
    out.num_gpus = *flags.num_gpus;
  } else if (env_gpus) {
    gpus_origin = {Source::kBatchAi, kEnvNumGpus};
    PSTRAIN_ASSIGN_OR_RETURN(out.num_gpus, env_int(kEnvNumGpus, *env_gpus));
  } else {
    gpus_origin = {Source::kDefault, "--num_gpus"};
    out.num_gpus = kDefaultNumGpus;
  }
  if (out.num_gpus < 0) {
    return invalid_argument("num_gpus " + std::to_string(out.num_gpus) + " (from " +
                            from_text(gpus_origin) +
                            ") is negative; give 0 for the CPU or the number of GPUs to use");
  }
  out.num_gpus_source = short_text(gpus_origin);
  return out;
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
