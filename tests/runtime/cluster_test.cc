#include "runtime/job/cluster.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pstrain {
namespace {

using ::testing::HasSubstr;

using Env = std::map<std::string, std::string>;

EnvLookup env_of(Env m) {
  return [m = std::move(m)](const std::string& name) -> std::optional<std::string> {
    auto it = m.find(name);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

HostPort hp(const std::string& host, int port) { return HostPort{host, port}; }

// Checks that `st` is InvalidArgument and its message contains every part.
void expect_invalid(const Status& st, const std::vector<std::string>& parts) {
  ASSERT_FALSE(st.ok()) << "expected an error containing " << ::testing::PrintToString(parts);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
  for (const std::string& p : parts) {
    EXPECT_THAT(st.message(), HasSubstr(p));
  }
}

bool has_note(const ResolvedTask& t, const std::string& part) {
  for (const std::string& n : t.notes) {
    if (n.find(part) != std::string::npos) return true;
  }
  return false;
}

ClusterFlags worker_flags(int index) {
  ClusterFlags f;
  f.job_name = "worker";
  f.task_index = index;
  return f;
}

// --- host:port parsing --------------------------------------------------------------------

TEST(ParseHostPort, AcceptsNamesIpv4AndBracketedIpv6) {
  auto a = parse_host_port("localhost:2222");
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->host, "localhost");
  EXPECT_EQ(a->port, 2222);
  EXPECT_EQ(a->to_string(), "localhost:2222");

  auto b = parse_host_port("10.0.0.4:1");
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_EQ(b->host, "10.0.0.4");
  EXPECT_EQ(b->port, 1);

  auto c = parse_host_port("worker-0.my_job.svc.cluster.local:65535");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->host, "worker-0.my_job.svc.cluster.local");
  EXPECT_EQ(c->port, 65535);

  auto d = parse_host_port("[::1]:2222");
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(d->host, "[::1]");
  EXPECT_EQ(d->port, 2222);
  EXPECT_EQ(d->to_string(), "[::1]:2222");

  auto e = parse_host_port("[fe80::1%eth0]:80");
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  EXPECT_EQ(e->host, "[fe80::1%eth0]");
}

TEST(ParseHostPort, RejectsBadTextNamingIt) {
  for (const char* text :
       {"", "localhost", ":2222", "host:", "host:abc", "host:12a", "host:-1", "host:+1", "::1:2222",
        "[::1]2222", "[::1", "[]:1", "[zz zz]:1", " host:1", "ho st:1", "host/x:1"}) {
    SCOPED_TRACE(text);
    auto r = parse_host_port(text);
    expect_invalid(r.status(), {std::string("\"") + text + "\""});
  }
}

TEST(ParseHostPort, PortRange) {
  expect_invalid(parse_host_port("host:0").status(), {"\"host:0\"", "out of range 1..65535"});
  expect_invalid(parse_host_port("host:65536").status(),
                 {"\"host:65536\"", "65536", "out of range"});
  expect_invalid(parse_host_port("host:99999999999999999999").status(),
                 {"99999999999999999999", "out of range"});
  expect_invalid(parse_host_port("::1:2222").status(), {"[::1]:2222"});  // the hint
}

TEST(ParseHostList, TrimsSpacesAndKeepsOrder) {
  auto r = parse_host_list(" a:1, b.example:2 ,[::1]:3 ");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<HostPort> want = {hp("a", 1), hp("b.example", 2), hp("[::1]", 3)};
  EXPECT_EQ(*r, want);
  EXPECT_EQ(host_list_string(*r), "a:1,b.example:2,[::1]:3");
}

TEST(ParseHostList, RejectsEmptyListsAndItems) {
  expect_invalid(parse_host_list("").status(), {"empty"});
  expect_invalid(parse_host_list("  ").status(), {"empty"});
  expect_invalid(parse_host_list("a:1,,b:2").status(), {"entry 2", "\"a:1,,b:2\"", "empty"});
  expect_invalid(parse_host_list("a:1,").status(), {"entry 2", "empty"});
  expect_invalid(parse_host_list(",a:1").status(), {"entry 1", "empty"});
  expect_invalid(parse_host_list("a:1,b").status(), {"entry 2", "\"b\""});
}

TEST(JobNames, ParseAndPrint) {
  EXPECT_EQ(std::string(job_name_string(JobName::kPs)), "ps");
  EXPECT_EQ(std::string(job_name_string(JobName::kWorker)), "worker");
  auto ps = parse_job_name("ps");
  ASSERT_TRUE(ps.ok());
  EXPECT_EQ(*ps, JobName::kPs);
  auto w = parse_job_name("worker");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, JobName::kWorker);
  expect_invalid(parse_job_name("Worker").status(), {"\"Worker\""});
  expect_invalid(parse_job_name("chief").status(),
                 {"\"chief\"", "--job_name=worker --task_index=0"});
}

// --- Each source --------------------------------------------------------------------------

TEST(ResolveTask, AllFromFlags) {
  ClusterFlags f;
  f.job_name = "ps";
  f.task_index = 1;
  f.ps_hosts = "p0:2222,p1:2222";
  f.worker_hosts = "w0:2222,w1:2222,w2:2222";
  f.num_gpus = 0;
  auto r = resolve_task(f, env_of({}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->job, JobName::kPs);
  EXPECT_EQ(r->task_index, 1);
  EXPECT_EQ(r->num_gpus, 0);
  std::vector<HostPort> ps = {hp("p0", 2222), hp("p1", 2222)};
  std::vector<HostPort> workers = {hp("w0", 2222), hp("w1", 2222), hp("w2", 2222)};
  EXPECT_EQ(r->cluster.ps, ps);
  EXPECT_EQ(r->cluster.workers, workers);
  EXPECT_EQ(r->cluster_source, "flags");
  EXPECT_EQ(r->task_source, "flags");
  EXPECT_EQ(r->num_gpus_source, "flags (--num_gpus)");
  EXPECT_THAT(describe_task(*r), HasSubstr("ps 1"));
  EXPECT_THAT(describe_task(*r), HasSubstr("cluster from flags"));
}

TEST(ResolveTask, DefaultsOfMnistReplica) {
  auto r = resolve_task(worker_flags(1), env_of({}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<HostPort> ps = {hp("localhost", 2222)};
  std::vector<HostPort> workers = {hp("localhost", 2223), hp("localhost", 2224)};
  EXPECT_EQ(r->cluster.ps, ps);
  EXPECT_EQ(r->cluster.workers, workers);
  EXPECT_EQ(r->num_gpus, 1);
  EXPECT_EQ(r->job, JobName::kWorker);
  EXPECT_EQ(r->task_index, 1);
  EXPECT_EQ(r->cluster_source, "defaults");
  EXPECT_EQ(r->task_source, "flags");
  EXPECT_EQ(r->num_gpus_source, "defaults (--num_gpus)");
  EXPECT_TRUE(has_note(*r, "localhost:2222"));
  EXPECT_TRUE(has_note(*r, "localhost:2223,localhost:2224"));
}

TEST(ResolveTask, NullEnvLookupMeansNoEnvironment) {
  auto r = resolve_task(worker_flags(0), EnvLookup{});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->cluster_source, "defaults");
}

TEST(ResolveTask, BatchAiEnvironment) {
  // The Batch AI command line gives only --job_name (and flags that expand to the env).
  ClusterFlags f;
  f.job_name = "worker";
  Env env = {{"AZ_BATCHAI_PS_HOSTS", "10.0.0.4:2222"},
             {"AZ_BATCHAI_WORKER_HOSTS", "10.0.0.5:2223,10.0.0.6:2223"},
             {"AZ_BATCHAI_TASK_INDEX", "1"},
             {"AZ_BATCHAI_NUM_GPUS", "4"}};
  auto r = resolve_task(f, env_of(env));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<HostPort> ps = {hp("10.0.0.4", 2222)};
  std::vector<HostPort> workers = {hp("10.0.0.5", 2223), hp("10.0.0.6", 2223)};
  EXPECT_EQ(r->cluster.ps, ps);
  EXPECT_EQ(r->cluster.workers, workers);
  EXPECT_EQ(r->task_index, 1);
  EXPECT_EQ(r->num_gpus, 4);
  EXPECT_EQ(r->cluster_source, "Batch AI (AZ_BATCHAI_*)");
  EXPECT_EQ(r->task_source, "flags (--job_name), Batch AI (AZ_BATCHAI_TASK_INDEX)");
  EXPECT_EQ(r->num_gpus_source, "Batch AI (AZ_BATCHAI_NUM_GPUS)");
}

TEST(ResolveTask, BatchAiCommandLineExpandedIntoFlags) {
  // `--ps_hosts=$AZ_BATCHAI_PS_HOSTS ...`: the flags carry the same values as the env.
  ClusterFlags f;
  f.job_name = "ps";
  f.num_gpus = 1;
  f.ps_hosts = "10.0.0.4:2222";
  f.worker_hosts = "10.0.0.5:2223,10.0.0.6:2223";
  f.task_index = 0;
  Env env = {{"AZ_BATCHAI_PS_HOSTS", "10.0.0.4:2222"},
             {"AZ_BATCHAI_WORKER_HOSTS", "10.0.0.5:2223,10.0.0.6:2223"},
             {"AZ_BATCHAI_TASK_INDEX", "0"}};
  auto r = resolve_task(f, env_of(env));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->job, JobName::kPs);
  EXPECT_EQ(r->cluster_source, "flags");
}

TEST(ResolveTask, EmptyEnvironmentVariableCountsAsUnset) {
  Env env = {{"AZ_BATCHAI_PS_HOSTS", ""},
             {"AZ_BATCHAI_WORKER_HOSTS", " "},
             {"AZ_BATCHAI_NUM_GPUS", ""},
             {"TF_CONFIG", ""}};
  auto r = resolve_task(worker_flags(0), env_of(env));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->cluster_source, "defaults");
  EXPECT_EQ(r->num_gpus, 1);
}

constexpr const char* kTfConfigPlain = R"({
  "cluster": {"ps": ["ps-0:2222"], "worker": ["worker-0:2222", "worker-1:2222"]},
  "task": {"type": "worker", "index": 1},
  "environment": "cloud"
})";

TEST(ResolveTask, TfConfigAlone) {
  auto r = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", kTfConfigPlain}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<HostPort> ps = {hp("ps-0", 2222)};
  std::vector<HostPort> workers = {hp("worker-0", 2222), hp("worker-1", 2222)};
  EXPECT_EQ(r->cluster.ps, ps);
  EXPECT_EQ(r->cluster.workers, workers);
  EXPECT_EQ(r->job, JobName::kWorker);
  EXPECT_EQ(r->task_index, 1);  // no chief: no shift
  EXPECT_EQ(r->num_gpus, 1);
  EXPECT_EQ(r->cluster_source, "TF_CONFIG");
  EXPECT_EQ(r->task_source, "TF_CONFIG");
  EXPECT_FALSE(has_note(*r, "environment"));  // a known key, ignored quietly
  EXPECT_FALSE(has_note(*r, "shifted"));
}

TEST(ResolveTask, TfConfigPsTask) {
  const char* tf = R"({"cluster": {"ps": ["p0:1", "p1:1"], "worker": ["w0:1"]},
                       "task": {"type": "ps", "index": 1}})";
  auto r = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->job, JobName::kPs);
  EXPECT_EQ(r->task_index, 1);
}

TEST(ResolveTask, TfConfigIndexAsDigitStringAsTensorFlowAccepts) {
  const char* tf = R"({"cluster": {"ps": ["p0:1"], "worker": ["w0:1", "w1:1"]},
                       "task": {"type": "worker", "index": "1"}})";
  auto r = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->task_index, 1);
}

// --- Chief / master / evaluator -----------------------------------------------------------

constexpr const char* kTfConfigChiefCluster =
    R"("cluster": {"chief": ["c:2222"], "worker": ["w0:2222", "w1:2222"], "ps": ["p:2222"],
                   "evaluator": ["e:2222"]})";

std::string tf_with_task(const std::string& cluster, const std::string& task) {
  return "{" + cluster + ", \"task\": " + task + "}";
}

TEST(ResolveTask, ChiefIsWorkerZeroAndWorkersShift) {
  std::vector<HostPort> workers = {hp("c", 2222), hp("w0", 2222), hp("w1", 2222)};
  {
    auto r = resolve_task(
        ClusterFlags{}, env_of({{"TF_CONFIG", tf_with_task(kTfConfigChiefCluster,
                                                           R"({"type": "worker", "index": 1})")}}));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->cluster.workers, workers);  // evaluator is not in the training cluster
    EXPECT_EQ(r->job, JobName::kWorker);
    EXPECT_EQ(r->task_index, 2);
    EXPECT_EQ(r->cluster_source, "TF_CONFIG");
    EXPECT_TRUE(has_note(*r, "TF_CONFIG: chief counted as worker 0, workers shifted by one"));
    EXPECT_TRUE(has_note(*r, "evaluator"));
  }
  {
    auto r = resolve_task(
        ClusterFlags{}, env_of({{"TF_CONFIG", tf_with_task(kTfConfigChiefCluster,
                                                           R"({"type": "worker", "index": 0})")}}));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->task_index, 1);
  }
  {
    auto r = resolve_task(
        ClusterFlags{}, env_of({{"TF_CONFIG", tf_with_task(kTfConfigChiefCluster,
                                                           R"({"type": "chief", "index": 0})")}}));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->job, JobName::kWorker);
    EXPECT_EQ(r->task_index, 0);
  }
  {
    auto r = resolve_task(ClusterFlags{},
                          env_of({{"TF_CONFIG", tf_with_task(kTfConfigChiefCluster,
                                                             R"({"type": "ps", "index": 0})")}}));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->job, JobName::kPs);
    EXPECT_EQ(r->task_index, 0);  // ps indices do not shift
  }
}

TEST(ResolveTask, MasterCountsLikeChief) {
  const char* cluster = R"("cluster": {"master": ["m:1"], "worker": ["w0:1"], "ps": ["p:1"]})";
  auto r = resolve_task(
      ClusterFlags{},
      env_of({{"TF_CONFIG", tf_with_task(cluster, R"({"type": "master", "index": 0})")}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<HostPort> workers = {hp("m", 1), hp("w0", 1)};
  EXPECT_EQ(r->cluster.workers, workers);
  EXPECT_EQ(r->task_index, 0);
  EXPECT_TRUE(has_note(*r, "master counted as worker 0"));

  auto w = resolve_task(
      ClusterFlags{},
      env_of({{"TF_CONFIG", tf_with_task(cluster, R"({"type": "worker", "index": 0})")}}));
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  EXPECT_EQ(w->task_index, 1);
}

TEST(ResolveTask, ChiefOnlyClusterWithPs) {
  const char* tf = R"({"cluster": {"chief": ["c:1"], "ps": ["p:1"]},
                       "task": {"type": "chief", "index": 0}})";
  auto r = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<HostPort> workers = {hp("c", 1)};
  EXPECT_EQ(r->cluster.workers, workers);
}

TEST(ResolveTask, EvaluatorTaskIsAnError) {
  auto r = resolve_task(
      ClusterFlags{},
      env_of({{"TF_CONFIG",
               tf_with_task(kTfConfigChiefCluster, R"({"type": "evaluator", "index": 0})")}}));
  expect_invalid(r.status(), {"TF_CONFIG", "\"evaluator\"", "pstrain runs no evaluator task"});
}

TEST(ResolveTask, ChiefTaskErrors) {
  auto idx = resolve_task(
      ClusterFlags{}, env_of({{"TF_CONFIG", tf_with_task(kTfConfigChiefCluster,
                                                         R"({"type": "chief", "index": 1})")}}));
  expect_invalid(idx.status(), {"TF_CONFIG task.index 1", "\"chief\""});

  const char* no_chief = R"("cluster": {"worker": ["w0:1"], "ps": ["p:1"]})";
  auto missing = resolve_task(
      ClusterFlags{},
      env_of({{"TF_CONFIG", tf_with_task(no_chief, R"({"type": "chief", "index": 0})")}}));
  expect_invalid(missing.status(), {"TF_CONFIG task.type is \"chief\"", "no \"chief\""});

  const char* both = R"({"cluster": {"chief": ["c:1"], "master": ["m:1"], "ps": ["p:1"]},
                         "task": {"type": "chief", "index": 0}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", both}})).status(),
                 {"TF_CONFIG", "\"chief\" and \"master\""});

  const char* two = R"({"cluster": {"chief": ["c:1", "d:1"], "ps": ["p:1"]},
                        "task": {"type": "chief", "index": 0}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", two}})).status(),
                 {"TF_CONFIG cluster.chief", "2 entries", "c:1"});
}

TEST(ResolveTask, UnknownTfConfigKeysAreNoted) {
  const char* tf = R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"], "sidecar": ["s:1"]},
                       "task": {"type": "worker", "index": 0, "trial": "7"},
                       "rpc_layer": "grpc", "environment": "cloud"})";
  auto r = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(has_note(*r, "\"sidecar\""));
  EXPECT_TRUE(has_note(*r, "\"trial\""));
  EXPECT_TRUE(has_note(*r, "\"rpc_layer\""));
  EXPECT_FALSE(has_note(*r, "environment"));
}

TEST(ResolveTask, UnknownTfConfigTaskTypeIsAnError) {
  const char* tf = R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]},
                       "task": {"type": "sidecar", "index": 0}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}})).status(),
                 {"TF_CONFIG task.type", "\"sidecar\""});
}

// --- Precedence and mixes -----------------------------------------------------------------

TEST(ResolveTask, PrecedenceFlagsOverBatchAiOverTfConfigOverDefaults) {
  const Env batch = {{"AZ_BATCHAI_PS_HOSTS", "bp:1"},
                     {"AZ_BATCHAI_WORKER_HOSTS", "bw0:1,bw1:1,bw2:1"},
                     {"AZ_BATCHAI_TASK_INDEX", "2"},
                     {"AZ_BATCHAI_NUM_GPUS", "2"}};
  const std::string tf = R"({"cluster": {"ps": ["tp:1"], "worker": ["tw0:1", "tw1:1"]},
                             "task": {"type": "worker", "index": 1}})";
  ClusterFlags flags;
  flags.job_name = "worker";
  flags.task_index = 0;
  flags.ps_hosts = "fp:1";
  flags.worker_hosts = "fw0:1";
  flags.num_gpus = 3;

  Env all = batch;
  all["TF_CONFIG"] = tf;

  // 1. Flags win over everything.
  auto r1 = resolve_task(flags, env_of(all));
  ASSERT_TRUE(r1.ok()) << r1.status().to_string();
  EXPECT_EQ(r1->cluster.ps, std::vector<HostPort>{hp("fp", 1)});
  EXPECT_EQ(r1->cluster.workers, std::vector<HostPort>{hp("fw0", 1)});
  EXPECT_EQ(r1->task_index, 0);
  EXPECT_EQ(r1->num_gpus, 3);
  EXPECT_EQ(r1->cluster_source, "flags");
  EXPECT_TRUE(has_note(*r1, "TF_CONFIG is set but not used"));

  // 2. Batch AI wins over TF_CONFIG and defaults (job name still from the command line).
  ClusterFlags job_only;
  job_only.job_name = "worker";
  auto r2 = resolve_task(job_only, env_of(all));
  ASSERT_TRUE(r2.ok()) << r2.status().to_string();
  EXPECT_EQ(r2->cluster.ps, std::vector<HostPort>{hp("bp", 1)});
  EXPECT_EQ(r2->cluster.workers.size(), 3u);
  EXPECT_EQ(r2->task_index, 2);
  EXPECT_EQ(r2->num_gpus, 2);
  EXPECT_EQ(r2->cluster_source, "Batch AI (AZ_BATCHAI_*)");
  EXPECT_TRUE(has_note(*r2, "TF_CONFIG is set but not used"));

  // 3. TF_CONFIG wins over defaults.
  auto r3 = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}}));
  ASSERT_TRUE(r3.ok()) << r3.status().to_string();
  EXPECT_EQ(r3->cluster.ps, std::vector<HostPort>{hp("tp", 1)});
  EXPECT_EQ(r3->task_index, 1);
  EXPECT_EQ(r3->num_gpus, 1);  // TF_CONFIG gives no num_gpus: default
  EXPECT_EQ(r3->cluster_source, "TF_CONFIG");
  EXPECT_EQ(r3->num_gpus_source, "defaults (--num_gpus)");

  // 4. Defaults when nothing else is there.
  auto r4 = resolve_task(worker_flags(0), env_of({}));
  ASSERT_TRUE(r4.ok()) << r4.status().to_string();
  EXPECT_EQ(r4->cluster.ps, std::vector<HostPort>{hp("localhost", 2222)});
}

TEST(ResolveTask, FlagsAndBatchAiMix) {
  ClusterFlags f;
  f.job_name = "worker";
  f.ps_hosts = "p:1";
  Env env = {{"AZ_BATCHAI_WORKER_HOSTS", "w0:1,w1:1"}, {"AZ_BATCHAI_TASK_INDEX", "1"}};
  auto r = resolve_task(f, env_of(env));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->cluster.ps, std::vector<HostPort>{hp("p", 1)});
  EXPECT_EQ(r->cluster.workers.size(), 2u);
  EXPECT_EQ(r->cluster_source, "flags (--ps_hosts), Batch AI (AZ_BATCHAI_WORKER_HOSTS)");
  EXPECT_EQ(r->task_source, "flags (--job_name), Batch AI (AZ_BATCHAI_TASK_INDEX)");
}

TEST(ResolveTask, BatchAiAndTfConfigMix) {
  // Batch AI gives ps and the index; TF_CONFIG gives the workers and the job name. (TF_CONFIG's
  // task must agree with Batch AI's index; ResolveTaskClaim tests what happens when not.)
  Env env = {{"AZ_BATCHAI_PS_HOSTS", "p:1"},
             {"AZ_BATCHAI_TASK_INDEX", "0"},
             {"TF_CONFIG", R"({"cluster": {"worker": ["w0:1", "w1:1"]},
                               "task": {"type": "worker", "index": 0}})"}};
  auto r = resolve_task(ClusterFlags{}, env_of(env));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->cluster.ps, std::vector<HostPort>{hp("p", 1)});
  EXPECT_EQ(r->cluster.workers.size(), 2u);
  EXPECT_EQ(r->task_index, 0);  // Batch AI's index is used, TF_CONFIG's is not
  EXPECT_EQ(r->cluster_source, "Batch AI (AZ_BATCHAI_PS_HOSTS), TF_CONFIG (cluster.worker)");
  EXPECT_EQ(r->task_source, "TF_CONFIG (task.type), Batch AI (AZ_BATCHAI_TASK_INDEX)");
}

TEST(ResolveTask, TfConfigClusterWithTaskFromFlags) {
  // A TF_CONFIG without a task gives the cluster; flags give the task.
  ClusterFlags f;
  f.job_name = "ps";
  f.task_index = 0;
  const char* tf = R"({"cluster": {"ps": ["ps-0:2222"], "worker": ["worker-0:2222"]}})";
  auto r = resolve_task(f, env_of({{"TF_CONFIG", tf}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->job, JobName::kPs);
  EXPECT_EQ(r->task_index, 0);
  EXPECT_EQ(r->cluster_source, "TF_CONFIG");
  EXPECT_EQ(r->task_source, "flags");
}

TEST(ResolveTask, FlagJobWithTfConfigIndexMustAgree) {
  ClusterFlags ok_flags;
  ok_flags.job_name = "worker";
  auto ok = resolve_task(ok_flags, env_of({{"TF_CONFIG", kTfConfigPlain}}));
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->task_index, 1);
  EXPECT_EQ(ok->task_source, "flags (--job_name), TF_CONFIG (task.index)");

  ClusterFlags bad_flags;
  bad_flags.job_name = "ps";
  auto bad = resolve_task(bad_flags, env_of({{"TF_CONFIG", kTfConfigPlain}}));
  expect_invalid(bad.status(),
                 {"--job_name=ps (flags) disagrees with TF_CONFIG task {\"type\": \"worker\", "
                  "\"index\": 1}, which is worker 1",
                  "drop --job_name or make it worker"});
}

TEST(ResolveTask, SchedulerClusterIsNotMixedWithDefaults) {
  auto r1 = resolve_task(worker_flags(0), env_of({{"AZ_BATCHAI_WORKER_HOSTS", "w0:1,w1:1"}}));
  expect_invalid(r1.status(), {"AZ_BATCHAI_WORKER_HOSTS", "w0:1,w1:1", "--ps_hosts"});

  auto r2 = resolve_task(worker_flags(0), env_of({{"AZ_BATCHAI_PS_HOSTS", "p:1"}}));
  expect_invalid(r2.status(), {"AZ_BATCHAI_PS_HOSTS", "p:1", "--worker_hosts"});

  const char* tf = R"({"cluster": {"worker": ["w0:1"]}, "task": {"type": "worker", "index": 0}})";
  auto r3 = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}}));
  expect_invalid(r3.status(), {"TF_CONFIG cluster.worker", "w0:1", "no source gives the ps list"});

  // Flags plus a default is mnist_replica's own behaviour and stays allowed.
  ClusterFlags f = worker_flags(0);
  f.worker_hosts = "remote:1";
  auto r4 = resolve_task(f, env_of({}));
  ASSERT_TRUE(r4.ok()) << r4.status().to_string();
  EXPECT_EQ(r4->cluster_source, "defaults (--ps_hosts), flags (--worker_hosts)");
}

// --- Bad input names the source and the value ---------------------------------------------

TEST(ResolveTaskErrors, BadHostPortInEachSource) {
  ClusterFlags f = worker_flags(0);
  f.ps_hosts = "p:1,bad";
  expect_invalid(resolve_task(f, env_of({})).status(), {"--ps_hosts", "\"p:1,bad\"", "\"bad\""});

  expect_invalid(resolve_task(worker_flags(0), env_of({{"AZ_BATCHAI_PS_HOSTS", "p:1"},
                                                       {"AZ_BATCHAI_WORKER_HOSTS", "w:x"}}))
                     .status(),
                 {"AZ_BATCHAI_WORKER_HOSTS", "\"w:x\""});

  const char* tf = R"({"cluster": {"ps": ["p:1"], "worker": ["w0:1", "w1"]},
                       "task": {"type": "worker", "index": 0}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}})).status(),
                 {"TF_CONFIG cluster.worker[1]", "\"w1\""});
}

TEST(ResolveTaskErrors, PortOutOfRangeInEachSource) {
  ClusterFlags f = worker_flags(0);
  f.worker_hosts = "w:70000";
  expect_invalid(resolve_task(f, env_of({})).status(),
                 {"--worker_hosts", "w:70000", "out of range"});

  expect_invalid(resolve_task(worker_flags(0), env_of({{"AZ_BATCHAI_PS_HOSTS", "p:0"},
                                                       {"AZ_BATCHAI_WORKER_HOSTS", "w:1"}}))
                     .status(),
                 {"AZ_BATCHAI_PS_HOSTS", "p:0", "out of range"});

  const char* tf = R"({"cluster": {"ps": ["p:65536"], "worker": ["w:1"]},
                       "task": {"type": "worker", "index": 0}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}})).status(),
                 {"TF_CONFIG cluster.ps[0]", "p:65536", "out of range"});
}

TEST(ResolveTaskErrors, DuplicateAddresses) {
  ClusterFlags f = worker_flags(0);
  f.ps_hosts = "h:2222";
  Env env = {{"AZ_BATCHAI_WORKER_HOSTS", "w:2222,h:2222"}};
  expect_invalid(
      resolve_task(f, env_of(env)).status(),
      {"h:2222", "ps 0 (from flags --ps_hosts)", "worker 1 (from AZ_BATCHAI_WORKER_HOSTS)"});

  ClusterFlags g = worker_flags(0);
  g.worker_hosts = "a:1,b:1,A:1";  // host names compare case-insensitively
  expect_invalid(resolve_task(g, env_of({})).status(),
                 {"A:1", "worker 0 (from flags --worker_hosts)", "worker 2"});

  // Same host, different ports: fine.
  ClusterFlags h = worker_flags(0);
  h.ps_hosts = "localhost:1";
  h.worker_hosts = "localhost:2,localhost:3";
  EXPECT_TRUE(resolve_task(h, env_of({})).ok());
}

TEST(ResolveTaskErrors, TaskIndexOutOfRange) {
  ClusterFlags f;
  f.job_name = "worker";
  f.worker_hosts = "a:1,b:1";
  f.ps_hosts = "p:1";
  auto r = resolve_task(f, env_of({{"AZ_BATCHAI_TASK_INDEX", "3"}}));
  expect_invalid(r.status(), {"task_index 3 (from AZ_BATCHAI_TASK_INDEX) is out of range: the "
                              "cluster has 2 workers (from flags --worker_hosts)"});

  ClusterFlags neg = f;
  neg.task_index = -1;
  expect_invalid(resolve_task(neg, env_of({})).status(),
                 {"task_index -1 (from flags --task_index)", "out of range"});

  ClusterFlags ps;
  ps.job_name = "ps";
  ps.task_index = 1;
  expect_invalid(resolve_task(ps, env_of({})).status(), {"task_index 1 (from flags --task_index)",
                                                         "1 ps (from the default of --ps_hosts)"});

  const char* tf = R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]},
                       "task": {"type": "worker", "index": 5}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}})).status(),
                 {"task_index 5 (from TF_CONFIG task.index)", "1 workers (from TF_CONFIG"});
}

TEST(ResolveTaskErrors, NonIntegerBatchAiValues) {
  ClusterFlags f;
  f.job_name = "worker";
  for (const char* v : {"one", "1.5", "1x", "0x1"}) {
    SCOPED_TRACE(v);
    expect_invalid(resolve_task(f, env_of({{"AZ_BATCHAI_TASK_INDEX", v}})).status(),
                   {"AZ_BATCHAI_TASK_INDEX", std::string("\"") + v + "\"", "not an integer"});
  }
  expect_invalid(resolve_task(worker_flags(0), env_of({{"AZ_BATCHAI_NUM_GPUS", "two"}})).status(),
                 {"AZ_BATCHAI_NUM_GPUS", "\"two\"", "not an integer"});
  // Spaces around a number are tolerated.
  auto r = resolve_task(f, env_of({{"AZ_BATCHAI_TASK_INDEX", " 1 "}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->task_index, 1);
}

TEST(ResolveTaskErrors, BadTfConfigJson) {
  auto r = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", "{\"cluster\": "}}));
  expect_invalid(r.status(), {"TF_CONFIG is not valid JSON", "parse error", "{\"cluster\": "});
  auto r2 = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", "cluster=ps"}}));
  expect_invalid(r2.status(), {"TF_CONFIG is not valid JSON", "cluster=ps"});
}

TEST(ResolveTaskErrors, TfConfigWrongTypes) {
  struct Case {
    const char* json;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {R"([1, 2])", {"TF_CONFIG is a JSON array"}},
      {R"({"cluster": ["p:1"]})", {"TF_CONFIG cluster is a JSON array", "[\"p:1\"]"}},
      {R"({"cluster": {"ps": "p:1"}})", {"TF_CONFIG cluster.ps is a JSON string", "\"p:1\""}},
      {R"({"cluster": {"ps": ["p:1"], "worker": ["w:1", 7]}})",
       {"TF_CONFIG cluster.worker[1] is a JSON number", "7"}},
      {R"({"cluster": {"ps": [], "worker": ["w:1"]}})", {"TF_CONFIG cluster.ps", "empty"}},
      {R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]}, "task": "worker"})",
       {"TF_CONFIG task is a JSON string", "\"worker\""}},
      {R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]}, "task": {"type": 1, "index": 0}})",
       {"TF_CONFIG task.type is a JSON number", "1"}},
      {R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]}, "task": {"type": "worker", "index": 1.5}})",
       {"TF_CONFIG task.index 1.5"}},
      {R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]}, "task": {"type": "worker", "index": -1}})",
       {"TF_CONFIG task.index -1"}},
      {R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]}, "task": {"type": "worker", "index": "x"}})",
       {"TF_CONFIG task.index \"x\""}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", c.json}})).status(), c.parts);
  }
}

TEST(ResolveTaskErrors, TfConfigMissingTaskParts) {
  const char* no_task = R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", no_task}})).status(),
                 {"no job name", "--job_name"});
  const char* no_index = R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]},
                             "task": {"type": "worker"}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", no_index}})).status(),
                 {"TF_CONFIG task has no \"index\"", "--task_index"});
  const char* no_type = R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]},
                            "task": {"index": 0}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", no_type}})).status(),
                 {"TF_CONFIG task has no \"type\"", "--job_name"});
}

TEST(ResolveTaskErrors, UnusedBadTfConfigIsNotAnError) {
  ClusterFlags f = worker_flags(0);
  f.ps_hosts = "p:1";
  f.worker_hosts = "w:1";
  auto r = resolve_task(f, env_of({{"TF_CONFIG", "not json"}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(has_note(*r, "TF_CONFIG is set but not used"));
}

TEST(ResolveTaskErrors, BadJobName) {
  ClusterFlags f;
  f.job_name = "chief";
  f.task_index = 0;
  expect_invalid(resolve_task(f, env_of({})).status(),
                 {"--job_name", "\"chief\"", "--job_name=worker --task_index=0"});
  f.job_name = "evaluator";
  expect_invalid(resolve_task(f, env_of({})).status(), {"--job_name", "\"evaluator\""});
}

TEST(ResolveTaskErrors, NegativeNumGpus) {
  ClusterFlags f = worker_flags(0);
  f.num_gpus = -1;
  expect_invalid(resolve_task(f, env_of({})).status(),
                 {"num_gpus -1 (from flags --num_gpus)", "negative"});
  expect_invalid(resolve_task(worker_flags(0), env_of({{"AZ_BATCHAI_NUM_GPUS", "-2"}})).status(),
                 {"num_gpus -2 (from AZ_BATCHAI_NUM_GPUS)", "negative"});
}

TEST(ResolveTaskErrors, EmptyLists) {
  ClusterFlags f = worker_flags(0);
  f.ps_hosts = "";
  expect_invalid(resolve_task(f, env_of({})).status(),
                 {"bad ps list \"\" (from flags --ps_hosts)", "empty", "AZ_BATCHAI_PS_HOSTS"});
  ClusterFlags g = worker_flags(0);
  g.worker_hosts = " , ";
  expect_invalid(resolve_task(g, env_of({})).status(),
                 {"bad worker list \" , \" (from flags --worker_hosts)", "empty"});
  const char* tf = R"({"cluster": {"ps": ["p:1"], "worker": []},
                       "task": {"type": "worker", "index": 0}})";
  expect_invalid(resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}})).status(),
                 {"TF_CONFIG cluster.worker", "empty"});
}

TEST(ResolveTaskErrors, MissingJobNameOrTaskIndex) {
  ClusterFlags no_job;
  no_job.task_index = 0;
  expect_invalid(resolve_task(no_job, env_of({})).status(), {"no job name", "--job_name"});

  ClusterFlags no_index;
  no_index.job_name = "ps";
  expect_invalid(resolve_task(no_index, env_of({})).status(),
                 {"no task index", "--task_index", "AZ_BATCHAI_TASK_INDEX", "TF_CONFIG"});
}

// --- Each reader on its own ---------------------------------------------------------------

ValueOrigin origin_of(const std::string& source, const std::string& name, const std::string& from) {
  return {source, name, from};
}

void expect_origin(const ValueOrigin& got, const ValueOrigin& want) {
  EXPECT_EQ(got.source, want.source);
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.from, want.from);
}

TEST(ClusterReaders, DefaultListInContractOrder) {
  ClusterReaders readers = default_cluster_readers();
  std::vector<std::string> names;
  for (const auto& r : readers) names.push_back(r->name());
  EXPECT_EQ(names, (std::vector<std::string>{"flags", "Batch AI (AZ_BATCHAI_*)", "TF_CONFIG",
                                             "defaults"}));
  EXPECT_EQ(readers[0]->kind(), SourceKind::kCommandLine);
  EXPECT_EQ(readers[1]->kind(), SourceKind::kScheduler);
  EXPECT_EQ(readers[2]->kind(), SourceKind::kScheduler);
  EXPECT_EQ(readers[3]->kind(), SourceKind::kDefaults);
}

TEST(ClusterReaders, FlagsGiveWhatWasGiven) {
  auto reader = flags_reader();
  ClusterFlags f;
  f.job_name = "ps";
  f.ps_hosts = "p0:1, p1:1";
  f.worker_hosts = "w0:1";
  f.task_index = 1;
  f.num_gpus = 0;
  // The environment is not the flags reader's business.
  auto v = reader->read(f, env_of({{"AZ_BATCHAI_TASK_INDEX", "7"}, {"TF_CONFIG", "x"}}));
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  ASSERT_TRUE(v->ps_hosts && v->ps_hosts->value.ok());
  EXPECT_EQ(*v->ps_hosts->value, (std::vector<HostPort>{hp("p0", 1), hp("p1", 1)}));
  expect_origin(v->ps_hosts->origin, origin_of("flags", "--ps_hosts", "flags --ps_hosts"));
  EXPECT_EQ(v->ps_hosts->origin.short_text(), "flags (--ps_hosts)");
  ASSERT_TRUE(v->worker_hosts && v->worker_hosts->value.ok());
  EXPECT_EQ(*v->worker_hosts->value, std::vector<HostPort>{hp("w0", 1)});
  expect_origin(v->worker_hosts->origin,
                origin_of("flags", "--worker_hosts", "flags --worker_hosts"));
  ASSERT_TRUE(v->job && v->job->value.ok());
  EXPECT_EQ(*v->job->value, JobName::kPs);
  expect_origin(v->job->origin, origin_of("flags", "--job_name", "flags --job_name"));
  ASSERT_TRUE(v->task_index && v->task_index->value.ok());
  EXPECT_EQ(*v->task_index->value, 1);
  expect_origin(v->task_index->origin, origin_of("flags", "--task_index", "flags --task_index"));
  ASSERT_TRUE(v->num_gpus && v->num_gpus->value.ok());
  EXPECT_EQ(*v->num_gpus->value, 0);
  EXPECT_EQ(v->num_gpus->origin.short_text(), "flags (--num_gpus)");
  EXPECT_FALSE(v->task_claim);
  EXPECT_TRUE(v->notes.empty());

  auto none = reader->read(ClusterFlags{}, env_of({}));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->ps_hosts || none->worker_hosts || none->job || none->task_index ||
               none->num_gpus);
}

TEST(ClusterReaders, FlagsBadValueIsAnErrorInsideTheValue) {
  ClusterFlags f;
  f.job_name = "chief";
  f.ps_hosts = "";
  auto v = flags_reader()->read(f, env_of({}));
  ASSERT_TRUE(v.ok()) << v.status().to_string();  // the reader itself is fine
  ASSERT_TRUE(v->job);
  expect_invalid(v->job->value.status(), {"--job_name (from flags)", "\"chief\""});
  ASSERT_TRUE(v->ps_hosts);
  expect_invalid(v->ps_hosts->value.status(),
                 {"bad ps list \"\" (from flags --ps_hosts)", "--ps_hosts=$AZ_BATCHAI_PS_HOSTS"});
}

TEST(ClusterReaders, BatchAiGivesItsVariables) {
  auto reader = batch_ai_reader();
  EXPECT_FALSE(reader->gives().job);  // Batch AI passes the job name on the command line
  EXPECT_TRUE(reader->gives().task_index);
  ClusterFlags f;
  f.task_index = 5;  // flags are not the Batch AI reader's business
  Env env = {{"AZ_BATCHAI_PS_HOSTS", "p:1"},
             {"AZ_BATCHAI_WORKER_HOSTS", "w0:1,w1:1"},
             {"AZ_BATCHAI_TASK_INDEX", " 1 "},
             {"AZ_BATCHAI_NUM_GPUS", "4"}};
  auto v = reader->read(f, env_of(env));
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  ASSERT_TRUE(v->ps_hosts && v->ps_hosts->value.ok());
  EXPECT_EQ(*v->ps_hosts->value, std::vector<HostPort>{hp("p", 1)});
  expect_origin(v->ps_hosts->origin,
                origin_of("Batch AI", "AZ_BATCHAI_PS_HOSTS", "AZ_BATCHAI_PS_HOSTS"));
  EXPECT_EQ(v->ps_hosts->origin.short_text(), "Batch AI (AZ_BATCHAI_PS_HOSTS)");
  ASSERT_TRUE(v->worker_hosts && v->worker_hosts->value.ok());
  EXPECT_EQ(v->worker_hosts->value->size(), 2u);
  ASSERT_TRUE(v->task_index && v->task_index->value.ok());
  EXPECT_EQ(*v->task_index->value, 1);
  expect_origin(v->task_index->origin,
                origin_of("Batch AI", "AZ_BATCHAI_TASK_INDEX", "AZ_BATCHAI_TASK_INDEX"));
  ASSERT_TRUE(v->num_gpus && v->num_gpus->value.ok());
  EXPECT_EQ(*v->num_gpus->value, 4);
  EXPECT_FALSE(v->job);
  EXPECT_FALSE(v->task_claim);

  auto partial = reader->read(
      ClusterFlags{}, env_of({{"AZ_BATCHAI_PS_HOSTS", " "}, {"AZ_BATCHAI_TASK_INDEX", "one"}}));
  ASSERT_TRUE(partial.ok()) << partial.status().to_string();
  EXPECT_FALSE(partial->ps_hosts);  // empty counts as unset
  EXPECT_FALSE(partial->worker_hosts);
  ASSERT_TRUE(partial->task_index);
  expect_invalid(partial->task_index->value.status(),
                 {"AZ_BATCHAI_TASK_INDEX", "\"one\"", "not an integer"});
}

TEST(ClusterReaders, TfConfigGivesClusterTaskAndClaim) {
  auto reader = tf_config_reader();
  EXPECT_FALSE(reader->gives().num_gpus);
  EXPECT_TRUE(reader->gives().job);
  const std::string tf = tf_with_task(kTfConfigChiefCluster, R"({"type": "worker", "index": 0})");
  auto v = reader->read(ClusterFlags{}, env_of({{"TF_CONFIG", tf}}));
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  ASSERT_TRUE(v->ps_hosts && v->ps_hosts->value.ok());
  EXPECT_EQ(*v->ps_hosts->value, std::vector<HostPort>{hp("p", 2222)});
  expect_origin(v->ps_hosts->origin, origin_of("TF_CONFIG", "cluster.ps", "TF_CONFIG cluster.ps"));
  ASSERT_TRUE(v->worker_hosts && v->worker_hosts->value.ok());
  EXPECT_EQ(*v->worker_hosts->value,
            (std::vector<HostPort>{hp("c", 2222), hp("w0", 2222), hp("w1", 2222)}));
  expect_origin(v->worker_hosts->origin,
                origin_of("TF_CONFIG", "cluster.chief+worker", "TF_CONFIG cluster.chief+worker"));
  EXPECT_EQ(
      v->worker_hosts->notes,
      std::vector<std::string>{"TF_CONFIG: chief counted as worker 0, workers shifted by one"});
  ASSERT_TRUE(v->job && v->job->value.ok());
  EXPECT_EQ(*v->job->value, JobName::kWorker);
  expect_origin(v->job->origin, origin_of("TF_CONFIG", "task.type", "TF_CONFIG task.type"));
  ASSERT_TRUE(v->task_index && v->task_index->value.ok());
  EXPECT_EQ(*v->task_index->value, 1);
  expect_origin(v->task_index->origin,
                origin_of("TF_CONFIG", "task.index", "TF_CONFIG task.index"));
  EXPECT_EQ(v->task_index->notes,
            std::vector<std::string>{
                "TF_CONFIG: task worker 0 is pstrain worker 1 (the chief is worker 0)"});
  EXPECT_FALSE(v->num_gpus);
  ASSERT_TRUE(v->task_claim && v->task_claim->ok());
  const TaskClaim& claim = **v->task_claim;
  EXPECT_EQ(claim.text, R"(TF_CONFIG task {"type": "worker", "index": 0})");
  EXPECT_EQ(claim.job, JobName::kWorker);
  EXPECT_EQ(claim.task_index, std::optional<int>(1));
  EXPECT_EQ(claim.numbering, "the chief is worker 0");
  ASSERT_EQ(v->notes.size(), 1u);  // notes of the source as a whole
  EXPECT_THAT(v->notes[0], HasSubstr("evaluator"));
  EXPECT_EQ(reader->unused_note(env_of({{"TF_CONFIG", tf}})),
            std::optional<std::string>(
                "TF_CONFIG is set but not used: flags and Batch AI gave the cluster and the task"));
}

TEST(ClusterReaders, TfConfigPsTaskClaimHasNoShift) {
  auto v = tf_config_reader()->read(
      ClusterFlags{}, env_of({{"TF_CONFIG", tf_with_task(kTfConfigChiefCluster,
                                                         R"({"type": "ps", "index": 0})")}}));
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  ASSERT_TRUE(v->task_claim && v->task_claim->ok());
  EXPECT_EQ((*v->task_claim)->job, JobName::kPs);
  EXPECT_EQ((*v->task_claim)->task_index, std::optional<int>(0));
  EXPECT_EQ((*v->task_claim)->numbering, "");
}

TEST(ClusterReaders, TfConfigUnsetMalformedAndPartial) {
  auto reader = tf_config_reader();
  auto unset = reader->read(ClusterFlags{}, env_of({{"TF_CONFIG", " "}}));
  ASSERT_TRUE(unset.ok());
  EXPECT_FALSE(unset->ps_hosts || unset->worker_hosts || unset->job || unset->task_index ||
               unset->task_claim);
  EXPECT_EQ(reader->unused_note(env_of({})), std::nullopt);

  // Malformed as a whole: the reader fails.
  expect_invalid(reader->read(ClusterFlags{}, env_of({{"TF_CONFIG", "not json"}})).status(),
                 {"TF_CONFIG is not valid JSON", "not json"});

  // No task: a cluster only.
  auto no_task =
      reader->read(ClusterFlags{},
                   env_of({{"TF_CONFIG", R"({"cluster": {"ps": ["p:1"], "worker": ["w:1"]}})"}}));
  ASSERT_TRUE(no_task.ok()) << no_task.status().to_string();
  EXPECT_TRUE(no_task->ps_hosts && no_task->worker_hosts);
  EXPECT_FALSE(no_task->job || no_task->task_index || no_task->task_claim);

  // An evaluator task: the job, the index and the claim are errors, the cluster is fine.
  auto eval = reader->read(
      ClusterFlags{},
      env_of({{"TF_CONFIG",
               tf_with_task(kTfConfigChiefCluster, R"({"type": "evaluator", "index": 0})")}}));
  ASSERT_TRUE(eval.ok()) << eval.status().to_string();
  EXPECT_TRUE(eval->ps_hosts->value.ok());
  expect_invalid(eval->job->value.status(), {"\"evaluator\""});
  expect_invalid(eval->task_index->value.status(), {"\"evaluator\""});
  ASSERT_TRUE(eval->task_claim);
  expect_invalid(eval->task_claim->status(), {"pstrain runs no evaluator task"});

  // A type without an index: the claim names no index.
  auto no_index = reader->read(
      ClusterFlags{},
      env_of({{"TF_CONFIG", tf_with_task(kTfConfigChiefCluster, R"({"type": "worker"})")}}));
  ASSERT_TRUE(no_index.ok()) << no_index.status().to_string();
  ASSERT_TRUE(no_index->task_claim && no_index->task_claim->ok());
  EXPECT_EQ((*no_index->task_claim)->text, R"(TF_CONFIG task {"type": "worker"})");
  EXPECT_EQ((*no_index->task_claim)->task_index, std::nullopt);
  expect_invalid(no_index->task_index->value.status(), {"TF_CONFIG task has no \"index\""});
}

TEST(ClusterReaders, DefaultsAreMnistReplicas) {
  auto reader = defaults_reader();
  EXPECT_FALSE(reader->gives().job);
  EXPECT_FALSE(reader->gives().task_index);
  ClusterFlags f = worker_flags(0);
  f.ps_hosts = "p:1";  // ignored: the defaults are the defaults
  auto v = reader->read(f, env_of({{"AZ_BATCHAI_PS_HOSTS", "q:1"}}));
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  ASSERT_TRUE(v->ps_hosts && v->ps_hosts->value.ok());
  EXPECT_EQ(*v->ps_hosts->value, std::vector<HostPort>{hp("localhost", 2222)});
  expect_origin(v->ps_hosts->origin,
                origin_of("defaults", "--ps_hosts", "the default of --ps_hosts"));
  EXPECT_EQ(v->ps_hosts->notes,
            std::vector<std::string>{"ps_hosts not given: using mnist_replica's default "
                                     "localhost:2222"});
  ASSERT_TRUE(v->worker_hosts && v->worker_hosts->value.ok());
  EXPECT_EQ(*v->worker_hosts->value,
            (std::vector<HostPort>{hp("localhost", 2223), hp("localhost", 2224)}));
  ASSERT_TRUE(v->num_gpus && v->num_gpus->value.ok());
  EXPECT_EQ(*v->num_gpus->value, 1);
  EXPECT_EQ(v->num_gpus->origin.short_text(), "defaults (--num_gpus)");
  EXPECT_FALSE(v->job || v->task_index || v->task_claim);
}

// --- The loop: first reader wins ----------------------------------------------------------

template <typename T>
SourcedValue<T> given(T value, const std::string& source, const std::string& name) {
  return SourcedValue<T>{
      Result<T>(std::move(value)), origin_of(source, name, source + " " + name), {}};
}

// A reader for the loop tests: gives what it was built with and counts its reads.
class FakeReader final : public ClusterReader {
 public:
  FakeReader(std::string name, SourceKind kind, Result<ClusterValues> values,
             std::shared_ptr<int> reads)
      : name_(std::move(name)), kind_(kind), values_(std::move(values)), reads_(std::move(reads)) {}
  std::string name() const override { return name_; }
  SourceKind kind() const override { return kind_; }
  ClusterValueSet gives() const override {
    if (!values_.ok()) return {true, true, true, true, true};
    return {values_->ps_hosts.has_value(), values_->worker_hosts.has_value(),
            values_->job.has_value(), values_->task_index.has_value(),
            values_->num_gpus.has_value()};
  }
  Result<ClusterValues> read(const ClusterFlags& /*flags*/,
                             const EnvLookup& /*env*/) const override {
    ++*reads_;
    return values_;
  }
  std::optional<std::string> unused_note(const EnvLookup& /*env*/) const override {
    return name_ + " not read";
  }

 private:
  std::string name_;
  SourceKind kind_;
  Result<ClusterValues> values_;
  std::shared_ptr<int> reads_;
};

struct FakeList {
  ClusterReaders readers;
  std::vector<std::shared_ptr<int>> reads;
  void add(const std::string& name, SourceKind kind, Result<ClusterValues> values) {
    reads.push_back(std::make_shared<int>(0));
    readers.push_back(std::make_unique<FakeReader>(name, kind, std::move(values), reads.back()));
  }
};

TEST(ResolveLoop, EachValueFromTheFirstReaderThatGivesIt) {
  FakeList list;
  ClusterValues a;
  a.ps_hosts = given(std::vector<HostPort>{hp("a-ps", 1)}, "A", "a.ps");
  a.job = given(JobName::kWorker, "A", "a.job");
  list.add("A all", SourceKind::kCommandLine, a);
  ClusterValues b;
  b.ps_hosts = given(std::vector<HostPort>{hp("b-ps", 1)}, "B", "b.ps");  // A's wins
  b.worker_hosts = given(std::vector<HostPort>{hp("b-w0", 1), hp("b-w1", 1)}, "B", "b.workers");
  b.task_index = given(1, "B", "b.index");
  b.notes = {"B was read"};
  list.add("B all", SourceKind::kScheduler, b);
  ClusterValues c;
  c.worker_hosts = given(std::vector<HostPort>{hp("c-w", 1)}, "C", "c.workers");  // B's wins
  c.num_gpus = given(3, "C", "c.gpus");
  list.add("C all", SourceKind::kScheduler, c);
  ClusterValues d;
  d.num_gpus = given(9, "D", "d.gpus");
  list.add("D all", SourceKind::kDefaults, d);

  auto r = resolve_task(list.readers, ClusterFlags{}, env_of({}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->cluster.ps, std::vector<HostPort>{hp("a-ps", 1)});
  EXPECT_EQ(r->cluster.workers, (std::vector<HostPort>{hp("b-w0", 1), hp("b-w1", 1)}));
  EXPECT_EQ(r->job, JobName::kWorker);
  EXPECT_EQ(r->task_index, 1);
  EXPECT_EQ(r->num_gpus, 3);
  EXPECT_EQ(r->cluster_source, "A (a.ps), B (b.workers)");
  EXPECT_EQ(r->task_source, "A (a.job), B (b.index)");
  EXPECT_EQ(r->num_gpus_source, "C (c.gpus)");
  EXPECT_EQ(describe_task(*r),
            "worker 1 in a cluster of 1 ps and 2 workers, num_gpus 3; cluster from A (a.ps), B "
            "(b.workers); task from A (a.job), B (b.index); num_gpus from C (c.gpus)");
  // D could give only num_gpus, which C gave: not read, and its note says so.
  EXPECT_EQ(*list.reads[0], 1);
  EXPECT_EQ(*list.reads[1], 1);
  EXPECT_EQ(*list.reads[2], 1);
  EXPECT_EQ(*list.reads[3], 0);
  EXPECT_TRUE(has_note(*r, "B was read"));
  EXPECT_TRUE(has_note(*r, "D all not read"));
}

TEST(ResolveLoop, OneReaderGivingBothValuesIsNamedByItsName) {
  FakeList list;
  ClusterValues a;
  a.ps_hosts = given(std::vector<HostPort>{hp("p", 1)}, "A", "a.ps");
  a.worker_hosts = given(std::vector<HostPort>{hp("w", 1)}, "A", "a.workers");
  a.job = given(JobName::kPs, "A", "a.job");
  a.task_index = given(0, "A", "a.index");
  a.num_gpus = given(0, "A", "a.gpus");
  list.add("A (A_*)", SourceKind::kScheduler, a);
  auto r = resolve_task(list.readers, ClusterFlags{}, env_of({}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->cluster_source, "A (A_*)");
  EXPECT_EQ(r->task_source, "A (A_*)");
  EXPECT_EQ(r->num_gpus_source, "A (a.gpus)");
}

TEST(ResolveLoop, ABadValueCountsOnlyIfUsed) {
  ClusterValues full;
  full.ps_hosts = given(std::vector<HostPort>{hp("p", 1)}, "A", "a.ps");
  full.worker_hosts = given(std::vector<HostPort>{hp("w", 1)}, "A", "a.workers");
  full.job = given(JobName::kWorker, "A", "a.job");
  full.num_gpus = given(0, "A", "a.gpus");
  ClusterValues bad;
  bad.task_index = SourcedValue<int>{
      invalid_argument("B's index is broken"), origin_of("B", "b.index", "B b.index"), {}};
  bad.num_gpus = SourcedValue<int>{
      invalid_argument("B's num_gpus is broken"), origin_of("B", "b.gpus", "B b.gpus"), {}};
  {
    // A gives num_gpus, so B's broken num_gpus is ignored; B's broken index is used.
    FakeList list;
    list.add("A", SourceKind::kCommandLine, full);
    list.add("B", SourceKind::kScheduler, bad);
    expect_invalid(resolve_task(list.readers, ClusterFlags{}, env_of({})).status(),
                   {"B's index is broken"});
  }
  {
    ClusterValues with_index = full;
    with_index.task_index = given(0, "A", "a.index");
    FakeList list;
    list.add("A", SourceKind::kCommandLine, with_index);
    list.add("B", SourceKind::kScheduler, bad);
    auto r = resolve_task(list.readers, ClusterFlags{}, env_of({}));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(*list.reads[1], 0);
  }
}

TEST(ResolveLoop, AFailingReaderFailsOnlyIfRead) {
  ClusterValues all;
  all.ps_hosts = given(std::vector<HostPort>{hp("p", 1)}, "A", "a.ps");
  all.worker_hosts = given(std::vector<HostPort>{hp("w", 1)}, "A", "a.workers");
  all.job = given(JobName::kWorker, "A", "a.job");
  all.task_index = given(0, "A", "a.index");
  all.num_gpus = given(0, "A", "a.gpus");
  {
    FakeList list;
    list.add("A", SourceKind::kCommandLine, all);
    list.add("Broken", SourceKind::kScheduler,
             Result<ClusterValues>(invalid_argument("unreadable")));
    auto r = resolve_task(list.readers, ClusterFlags{}, env_of({}));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(*list.reads[1], 0);
  }
  {
    ClusterValues no_gpus = all;
    no_gpus.num_gpus.reset();
    FakeList list;
    list.add("A", SourceKind::kCommandLine, no_gpus);
    list.add("Broken", SourceKind::kScheduler,
             Result<ClusterValues>(invalid_argument("unreadable")));
    expect_invalid(resolve_task(list.readers, ClusterFlags{}, env_of({})).status(), {"unreadable"});
    EXPECT_EQ(*list.reads[1], 1);
  }
}

TEST(ResolveLoop, ListWithoutDefaultsCanLeaveAValueMissing) {
  ClusterValues a;
  a.worker_hosts = given(std::vector<HostPort>{hp("w", 1)}, "A", "a.workers");
  FakeList list;
  list.add("A", SourceKind::kCommandLine, a);
  expect_invalid(resolve_task(list.readers, ClusterFlags{}, env_of({})).status(),
                 {"no ps list", "--ps_hosts"});
  EXPECT_FALSE(resolve_task(ClusterReaders{}, worker_flags(0), env_of({})).ok());
}

// What a Slurm reader would be: SLURM_PROCID as the task index.
class ProcIdReader final : public ClusterReader {
 public:
  std::string name() const override { return "Slurm (SLURM_*)"; }
  SourceKind kind() const override { return SourceKind::kScheduler; }
  ClusterValueSet gives() const override { return {.task_index = true}; }
  Result<ClusterValues> read(const ClusterFlags& /*flags*/, const EnvLookup& env) const override {
    ClusterValues v;
    if (std::optional<std::string> t = env("SLURM_PROCID")) {
      v.task_index = given(std::atoi(t->c_str()), "Slurm", "SLURM_PROCID");
    }
    return v;
  }
};

TEST(ResolveLoop, ANewSourceIsOneReaderInTheList) {
  ClusterReaders readers = default_cluster_readers();
  readers.insert(readers.begin() + 2, std::make_unique<ProcIdReader>());  // before TF_CONFIG
  ClusterFlags f;
  f.job_name = "worker";
  f.ps_hosts = "p:1";
  f.worker_hosts = "w0:1,w1:1";
  auto r = resolve_task(readers, f, env_of({{"SLURM_PROCID", "1"}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->task_index, 1);
  EXPECT_EQ(r->task_source, "flags (--job_name), Slurm (SLURM_PROCID)");
  EXPECT_EQ(r->num_gpus_source, "defaults (--num_gpus)");

  // TF_CONFIG's task is checked against the new source's index as against any earlier one.
  auto bad = resolve_task(readers, ClusterFlags{},
                          env_of({{"SLURM_PROCID", "0"}, {"TF_CONFIG", kTfConfigPlain}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(
      bad.status().message(),
      R"(SLURM_PROCID=0 (Slurm) disagrees with TF_CONFIG task {"type": "worker", "index": 1}, )"
      R"(which is worker 1 in pstrain's numbering; unset SLURM_PROCID or set it to 1)");
}

// --- TF_CONFIG's task must agree with an earlier job name or task index -------------------

// Kubeflow: chief c, TF workers w0 and w1 (pstrain workers 1 and 2), ps p.
std::string kubeflow(const std::string& task) { return tf_with_task(kTfConfigChiefCluster, task); }

TEST(ResolveTaskClaim, KubeflowWorkerGivenTheChiefsIndexIsAnError) {
  ClusterFlags f;
  f.task_index = 0;
  auto r = resolve_task(f, env_of({{"TF_CONFIG", kubeflow(R"({"type": "worker", "index": 0})")}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            R"(--task_index=0 (flags) disagrees with TF_CONFIG task {"type": "worker", )"
            R"("index": 0}, which is worker 1 in pstrain's numbering (the chief is worker 0); )"
            R"(drop --task_index or make it 1)");

  // The same with --job_name=worker too: only the index disagrees.
  f.job_name = "worker";
  auto r2 = resolve_task(f, env_of({{"TF_CONFIG", kubeflow(R"({"type": "worker", "index": 0})")}}));
  expect_invalid(r2.status(), {"--task_index=0 (flags) disagrees", "drop --task_index"});
  EXPECT_THAT(r2.status().message(), ::testing::Not(HasSubstr("--job_name")));
}

TEST(ResolveTaskClaim, AgreeingFlagsAreFine) {
  ClusterFlags f;
  f.task_index = 1;
  auto r = resolve_task(f, env_of({{"TF_CONFIG", kubeflow(R"({"type": "worker", "index": 0})")}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->job, JobName::kWorker);
  EXPECT_EQ(r->task_index, 1);
  EXPECT_EQ(r->cluster_source, "TF_CONFIG");
  EXPECT_EQ(r->task_source, "TF_CONFIG (task.type), flags (--task_index)");

  ClusterFlags both = worker_flags(2);
  auto r2 =
      resolve_task(both, env_of({{"TF_CONFIG", kubeflow(R"({"type": "worker", "index": 1})")}}));
  ASSERT_TRUE(r2.ok()) << r2.status().to_string();
  EXPECT_EQ(r2->task_index, 2);
  EXPECT_EQ(r2->task_source, "flags");

  ClusterFlags chief = worker_flags(0);
  auto r3 =
      resolve_task(chief, env_of({{"TF_CONFIG", kubeflow(R"({"type": "chief", "index": 0})")}}));
  ASSERT_TRUE(r3.ok()) << r3.status().to_string();
  EXPECT_EQ(r3->task_index, 0);

  ClusterFlags ps;
  ps.job_name = "ps";
  ps.task_index = 0;
  auto r4 = resolve_task(ps, env_of({{"TF_CONFIG", kubeflow(R"({"type": "ps", "index": 0})")}}));
  ASSERT_TRUE(r4.ok()) << r4.status().to_string();
  EXPECT_EQ(r4->job, JobName::kPs);
}

TEST(ResolveTaskClaim, ChiefGivenAnotherIndex) {
  ClusterFlags f = worker_flags(1);
  auto r = resolve_task(f, env_of({{"TF_CONFIG", kubeflow(R"({"type": "chief", "index": 0})")}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            R"(--task_index=1 (flags) disagrees with TF_CONFIG task {"type": "chief", )"
            R"("index": 0}, which is worker 0 in pstrain's numbering (the chief is worker 0); )"
            R"(drop --task_index or make it 0)");
}

TEST(ResolveTaskClaim, MasterAndPsNumbering) {
  const char* cluster =
      R"("cluster": {"master": ["m:1"], "worker": ["w0:1"], "ps": ["p0:1", "p1:1"]})";
  ClusterFlags f;
  f.task_index = 0;
  auto w = resolve_task(
      f, env_of({{"TF_CONFIG", tf_with_task(cluster, R"({"type": "worker", "index": 0})")}}));
  expect_invalid(w.status(), {"which is worker 1 in pstrain's numbering (the master is worker 0)",
                              "make it 1"});

  ClusterFlags p;
  p.job_name = "ps";
  p.task_index = 1;
  auto ps = resolve_task(
      p, env_of({{"TF_CONFIG", tf_with_task(cluster, R"({"type": "ps", "index": 0})")}}));
  ASSERT_FALSE(ps.ok());
  EXPECT_EQ(ps.status().message(),
            R"(--task_index=1 (flags) disagrees with TF_CONFIG task {"type": "ps", "index": 0}, )"
            R"(which is ps 0 in pstrain's numbering; drop --task_index or make it 0)");
}

TEST(ResolveTaskClaim, JobNameAndIndexBothDisagree) {
  ClusterFlags f;
  f.job_name = "ps";
  f.task_index = 0;
  auto r = resolve_task(f, env_of({{"TF_CONFIG", kTfConfigPlain}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            R"(--job_name=ps (flags) and --task_index=0 (flags) disagree with TF_CONFIG task )"
            R"({"type": "worker", "index": 1}, which is worker 1 in pstrain's numbering; drop )"
            R"(--job_name or make it worker; and drop --task_index or make it 1)");

  // Same index, other job: only the job disagrees.
  f.task_index = 1;
  auto r2 = resolve_task(f, env_of({{"TF_CONFIG", kTfConfigPlain}}));
  expect_invalid(r2.status(), {"--job_name=ps (flags) disagrees", "make it worker"});
  EXPECT_THAT(r2.status().message(), ::testing::Not(HasSubstr("--task_index")));
}

TEST(ResolveTaskClaim, BatchAiIndexAgainstTfConfig) {
  const std::string tf = kubeflow(R"({"type": "worker", "index": 0})");
  auto bad =
      resolve_task(ClusterFlags{}, env_of({{"AZ_BATCHAI_TASK_INDEX", "0"}, {"TF_CONFIG", tf}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            R"(AZ_BATCHAI_TASK_INDEX=0 (Batch AI) disagrees with TF_CONFIG task {"type": )"
            R"("worker", "index": 0}, which is worker 1 in pstrain's numbering (the chief is )"
            R"(worker 0); unset AZ_BATCHAI_TASK_INDEX or set it to 1)");

  auto ok =
      resolve_task(ClusterFlags{}, env_of({{"AZ_BATCHAI_TASK_INDEX", "1"}, {"TF_CONFIG", tf}}));
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->task_index, 1);
  EXPECT_EQ(ok->task_source, "TF_CONFIG (task.type), Batch AI (AZ_BATCHAI_TASK_INDEX)");

  // A flag job name and a Batch AI index, both against TF_CONFIG.
  ClusterFlags f;
  f.job_name = "ps";
  auto both = resolve_task(f, env_of({{"AZ_BATCHAI_TASK_INDEX", "0"}, {"TF_CONFIG", tf}}));
  expect_invalid(both.status(),
                 {"--job_name=ps (flags) and AZ_BATCHAI_TASK_INDEX=0 (Batch AI) disagree",
                  "drop --job_name or make it worker; and unset AZ_BATCHAI_TASK_INDEX or set it "
                  "to 1"});
}

TEST(ResolveTaskClaim, EvaluatorTaskGivenATaskByFlags) {
  ClusterFlags f = worker_flags(1);
  auto r =
      resolve_task(f, env_of({{"TF_CONFIG", kubeflow(R"({"type": "evaluator", "index": 0})")}}));
  expect_invalid(r.status(), {"\"evaluator\"", "pstrain runs no evaluator task"});
}

TEST(ResolveTaskClaim, PartialTaskIsComparedOnWhatItHas) {
  const char* cluster = R"("cluster": {"ps": ["p:1"], "worker": ["w0:1", "w1:1"]})";
  // A type and no index: only the job name is compared.
  auto r = resolve_task(worker_flags(1),
                        env_of({{"TF_CONFIG", tf_with_task(cluster, R"({"type": "worker"})")}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->task_index, 1);
  ClusterFlags ps_flags;
  ps_flags.job_name = "ps";
  ps_flags.task_index = 0;
  auto bad = resolve_task(ps_flags,
                          env_of({{"TF_CONFIG", tf_with_task(cluster, R"({"type": "worker"})")}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            R"(--job_name=ps (flags) disagrees with TF_CONFIG task {"type": "worker"}, which is )"
            R"(a worker in pstrain's numbering; drop --job_name or make it worker)");
  // No type: nothing to compare.
  auto no_type =
      resolve_task(ps_flags, env_of({{"TF_CONFIG", tf_with_task(cluster, R"({"index": 1})")}}));
  ASSERT_TRUE(no_type.ok()) << no_type.status().to_string();
  EXPECT_EQ(no_type->job, JobName::kPs);
}

TEST(ResolveTaskClaim, NotCheckedWhenTfConfigIsNotRead) {
  // Flags and Batch AI give the cluster and the task: TF_CONFIG is not read, so its task is
  // not compared (it is not this job's).
  const std::string tf = kubeflow(R"({"type": "worker", "index": 0})");
  ClusterFlags f = worker_flags(0);
  f.ps_hosts = "p:1";
  f.worker_hosts = "w0:1,w1:1";
  auto r = resolve_task(f, env_of({{"TF_CONFIG", tf}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->task_index, 0);
  EXPECT_TRUE(has_note(*r, "TF_CONFIG is set but not used"));

  ClusterFlags job_only;
  job_only.job_name = "worker";
  Env env = {{"AZ_BATCHAI_PS_HOSTS", "p:1"},
             {"AZ_BATCHAI_WORKER_HOSTS", "w0:1,w1:1"},
             {"AZ_BATCHAI_TASK_INDEX", "0"},
             {"TF_CONFIG", tf}};
  auto r2 = resolve_task(job_only, env_of(env));
  ASSERT_TRUE(r2.ok()) << r2.status().to_string();
  EXPECT_EQ(r2->task_index, 0);
}

TEST(ResolveTaskClaim, FlagsOverBatchAiIsStillPlainPrecedence) {
  // The rule is about TF_CONFIG's task: a Batch AI index that flags override is no error.
  ClusterFlags f = worker_flags(0);
  f.ps_hosts = "p:1";
  f.worker_hosts = "w0:1,w1:1";
  auto r = resolve_task(f, env_of({{"AZ_BATCHAI_TASK_INDEX", "1"}, {"AZ_BATCHAI_NUM_GPUS", "2"}}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->task_index, 0);
  EXPECT_EQ(r->num_gpus, 2);  // Batch AI was read, for num_gpus
}

TEST(ResolveTaskErrors, MalformedTfConfigReadOnlyWhenAValueIsMissing) {
  ClusterFlags job_only;
  job_only.job_name = "worker";
  Env env = {{"AZ_BATCHAI_PS_HOSTS", "p:1"},
             {"AZ_BATCHAI_WORKER_HOSTS", "w0:1,w1:1"},
             {"AZ_BATCHAI_TASK_INDEX", "1"},
             {"TF_CONFIG", "{\"cluster\": "}};
  auto r = resolve_task(job_only, env_of(env));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(has_note(*r, "TF_CONFIG is set but not used"));

  env.erase("AZ_BATCHAI_TASK_INDEX");  // now TF_CONFIG must give the index
  expect_invalid(resolve_task(job_only, env_of(env)).status(), {"TF_CONFIG is not valid JSON"});
}

// --- Job id -------------------------------------------------------------------------------

TEST(DeriveJobId, SameSpecSameIdOnEveryTask) {
  // A ps task told by flags and a worker task told by TF_CONFIG see the same cluster.
  ClusterFlags f;
  f.job_name = "ps";
  f.task_index = 0;
  f.ps_hosts = "p:2222";
  f.worker_hosts = "w0:2222, w1:2222";
  auto a = resolve_task(f, env_of({}));
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  const char* tf = R"({"cluster": {"chief": ["w0:2222"], "worker": ["w1:2222"], "ps": ["p:2222"]},
                       "task": {"type": "worker", "index": 0}})";
  auto b = resolve_task(ClusterFlags{}, env_of({{"TF_CONFIG", tf}}));
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  ASSERT_EQ(a->cluster, b->cluster);
  EXPECT_EQ(derive_job_id(a->cluster), derive_job_id(b->cluster));
  EXPECT_EQ(derive_job_id(a->cluster), derive_job_id(a->cluster));
  EXPECT_NE(derive_job_id(a->cluster), 0u);

  ClusterSpec upper = a->cluster;
  upper.ps[0].host = "P";
  EXPECT_EQ(derive_job_id(upper), derive_job_id(a->cluster));
}

TEST(DeriveJobId, DifferentSpecsDiffer) {
  ClusterSpec base{{hp("p", 1)}, {hp("w0", 1), hp("w1", 1)}};
  ClusterSpec other_port{{hp("p", 2)}, {hp("w0", 1), hp("w1", 1)}};
  ClusterSpec reordered{{hp("p", 1)}, {hp("w1", 1), hp("w0", 1)}};
  ClusterSpec moved{{hp("p", 1), hp("w0", 1)}, {hp("w1", 1)}};  // same hosts, other roles
  ClusterSpec fewer{{hp("p", 1)}, {hp("w0", 1)}};
  ClusterSpec joined{{hp("p", 1)}, {hp("w0", 11)}};  // "w0:1"+"1" must not alias "w0:11"
  std::vector<uint64_t> ids = {derive_job_id(base),      derive_job_id(other_port),
                               derive_job_id(reordered), derive_job_id(moved),
                               derive_job_id(fewer),     derive_job_id(joined)};
  for (size_t i = 0; i < ids.size(); ++i) {
    for (size_t j = i + 1; j < ids.size(); ++j) {
      EXPECT_NE(ids[i], ids[j]) << i << " vs " << j;
    }
  }
}

TEST(ProcessEnvironment, ReadsGetenv) {
  const char* name = "PSTRAIN_CLUSTER_TEST_ONLY_VARIABLE";
  EnvLookup env = process_environment();
  ASSERT_EQ(::unsetenv(name), 0);
  EXPECT_FALSE(env(name).has_value());
  ASSERT_EQ(::setenv(name, "x:1", 1), 0);
  EXPECT_EQ(env(name), std::optional<std::string>("x:1"));
  ASSERT_EQ(::unsetenv(name), 0);
}

// --- Rank-based schedulers ------------------------------------------------------------------

RankFlags num_ps(int n) {
  RankFlags f;
  f.num_ps = n;
  return f;
}

TEST(RankTask, SlurmRanksBecomeRolesAndTheRendezvousIsOnTheFirstNode) {
  const Env env = {{"SLURM_PROCID", "2"},        {"SLURM_NTASKS", "3"},
                   {"SLURM_JOB_ID", "41234"},    {"SLURM_STEP_NODELIST", "node[03-04]"},
                   {"SLURM_JOB_NODELIST", "x1"}, {"SLURM_LOCALID", "1"},
                   {"SLURMD_NODENAME", "node04"}};
  auto t = resolve_rank_task({}, num_ps(1), env_of(env));
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  ASSERT_TRUE(t->has_value());
  const RankTask& r = **t;
  EXPECT_EQ(r.scheduler, "Slurm");
  EXPECT_EQ(r.job, JobName::kWorker);
  EXPECT_EQ(r.task_index, 1);
  EXPECT_EQ(r.num_ps, 1);
  EXPECT_EQ(r.num_workers, 2);
  EXPECT_FALSE(r.serves_rendezvous);
  EXPECT_EQ(r.rendezvous, hp("node03", 10000 + 41234 % 20000));
  EXPECT_EQ(r.host, "node04");
  EXPECT_EQ(r.local_rank, 1);
  EXPECT_THAT(describe_rank_task(r), HasSubstr("SLURM_PROCID=2, --num_ps=1"));
  EXPECT_THAT(describe_rank_task(r), HasSubstr("SLURM_STEP_NODELIST=node[03-04]"));
}

TEST(RankTask, RankZeroIsPsZeroAndServesTheRendezvous) {
  const Env env = {{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"}};
  RankFlags f = num_ps(2);
  f.rendezvous = "10.0.0.1:5555";
  auto t = resolve_rank_task({}, f, env_of(env));
  ASSERT_TRUE(t.ok() && t->has_value()) << t.status().to_string();
  EXPECT_EQ((*t)->job, JobName::kPs);
  EXPECT_EQ((*t)->task_index, 0);
  EXPECT_TRUE((*t)->serves_rendezvous);
  EXPECT_EQ((*t)->rendezvous, hp("10.0.0.1", 5555));
  EXPECT_EQ((*t)->num_workers, 2);
}

TEST(RankTask, MpirunInsideASlurmAllocationUsesMpiRanks) {
  const Env env = {{"SLURM_PROCID", "0"},
                   {"SLURM_NTASKS", "1"},
                   {"SLURM_JOB_NODELIST", "n1"},
                   {"OMPI_COMM_WORLD_RANK", "2"},
                   {"OMPI_COMM_WORLD_SIZE", "3"}};
  auto t = resolve_rank_task({}, num_ps(1), env_of(env));
  ASSERT_TRUE(t.ok() && t->has_value()) << t.status().to_string();
  EXPECT_EQ((*t)->scheduler, "Open MPI");
  EXPECT_EQ((*t)->task_index, 1);
  EXPECT_EQ((*t)->rendezvous.host, "127.0.0.1");
  EXPECT_EQ((*t)->host, "127.0.0.1");
}

TEST(RankTask, EarlierSourcesWin) {
  const Env slurm = {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "3"}, {"SLURM_JOB_NODELIST", "n1"}};
  ClusterFlags flags;
  flags.ps_hosts = "a:1";
  auto t = resolve_rank_task(flags, num_ps(1), env_of(slurm));
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->has_value());
  for (const std::string var : {"AZ_BATCHAI_PS_HOSTS", "TF_CONFIG"}) {
    Env env = slurm;
    env.insert_or_assign(var, std::string("x"));
    auto u = resolve_rank_task({}, num_ps(1), env_of(env));
    ASSERT_TRUE(u.ok()) << var;
    EXPECT_FALSE(u->has_value()) << var;
  }
  auto none = resolve_rank_task({}, {}, env_of({}));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(RankTask, DmlcRolesAndCounts) {
  const Env common = {{"DMLC_PS_ROOT_URI", "10.1.2.3"},
                      {"DMLC_PS_ROOT_PORT", "9000"},
                      {"DMLC_NUM_SERVER", "2"},
                      {"DMLC_NUM_WORKER", "3"},
                      {"DMLC_NODE_HOST", "10.1.2.9"}};
  Env worker = common;
  worker["DMLC_ROLE"] = "worker";
  worker["DMLC_WORKER_ID"] = "2";
  auto w = resolve_rank_task({}, {}, env_of(worker));
  ASSERT_TRUE(w.ok() && w->has_value()) << w.status().to_string();
  EXPECT_EQ((*w)->job, JobName::kWorker);
  EXPECT_EQ((*w)->task_index, 2);
  EXPECT_EQ((*w)->num_ps, 2);
  EXPECT_EQ((*w)->num_workers, 3);
  EXPECT_EQ((*w)->rendezvous, hp("10.1.2.3", 9000));
  EXPECT_EQ((*w)->host, "10.1.2.9");
  EXPECT_FALSE((*w)->rank.has_value());
  Env server = common;
  server["DMLC_ROLE"] = "server";
  auto s = resolve_rank_task({}, {}, env_of(server));
  ASSERT_TRUE(s.ok() && s->has_value());
  EXPECT_EQ((*s)->job, JobName::kPs);
  EXPECT_EQ((*s)->task_index, -1);
  Env sched = common;
  sched["DMLC_ROLE"] = "scheduler";
  auto c = resolve_rank_task({}, {}, env_of(sched));
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_TRUE((*c)->rendezvous_only);
  EXPECT_TRUE((*c)->serves_rendezvous);
  auto bad = resolve_rank_task({}, num_ps(1), env_of(worker));
  expect_invalid(bad.status(), {"--num_ps=1 disagrees with DMLC_NUM_SERVER=2"});
}

TEST(RankTask, BadValuesNameTheVariable) {
  expect_invalid(
      resolve_rank_task({}, num_ps(1), env_of({{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "3"}}))
          .status(),
      {"SLURM_PROCID=\"x\""});
  expect_invalid(resolve_rank_task({}, num_ps(1), env_of({{"SLURM_PROCID", "0"}})).status(),
                 {"SLURM_NTASKS is not set"});
  expect_invalid(
      resolve_rank_task(
          {}, num_ps(1),
          env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "3"}, {"SLURM_JOB_NODELIST", "n[1-2"}}))
          .status(),
      {"SLURM_JOB_NODELIST: hostlist \"n[1-2\""});
  expect_invalid(
      resolve_rank_task({}, num_ps(3), env_of({{"PMI_RANK", "0"}, {"PMI_SIZE", "3"}})).status(),
      {"--num_ps=3 with PMI_SIZE=3 leaves no worker"});
  ClusterFlags f;
  f.task_index = 0;
  expect_invalid(
      resolve_rank_task(f, num_ps(1), env_of({{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}})).status(),
      {"--task_index=0 (flags) disagrees with PMI (PMI_RANK=2, --num_ps=1)", "worker 1"});
}

TEST(RankTask, TheRendezvousReaderNamesItsSources) {
  const Env env = {{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_NODELIST", "n1"}};
  auto t = resolve_rank_task({}, num_ps(1), env_of(env));
  ASSERT_TRUE(t.ok() && t->has_value());
  const ClusterSpec cluster{{hp("n1", 1000)}, {hp("n1", 1001)}};
  auto task = resolve_task(
      rank_cluster_readers(rendezvous_reader(**t, cluster, JobName::kWorker, 0)), {}, env_of(env));
  ASSERT_TRUE(task.ok()) << task.status().to_string();
  EXPECT_EQ(task->cluster, cluster);
  EXPECT_EQ(task->job, JobName::kWorker);
  EXPECT_EQ(task->task_index, 0);
  EXPECT_THAT(task->cluster_source, HasSubstr("Slurm rendezvous at n1:"));
  EXPECT_EQ(task->num_gpus_source, "defaults (--num_gpus)");
}

}  // namespace
}  // namespace pstrain
