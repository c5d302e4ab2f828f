#include "runtime/metrics/metrics.h"

#include <exception>
#include <utility>

#include <CivetServer.h>
#include <prometheus/exposer.h>

namespace pstrain::metrics {

namespace {

std::string bind_address(const std::string& host, int port) {
  // civetweb takes IPv6 addresses in brackets.
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// civetweb's own error messages while a server starts (it reports them through the log
// callback, on the thread that starts it), so that a failure says what went wrong.
thread_local std::string* t_civetweb_log = nullptr;

int log_civetweb(const mg_connection* /*conn*/, const char* message) {
  if (t_civetweb_log != nullptr && message != nullptr) {
    if (!t_civetweb_log->empty()) *t_civetweb_log += "; ";
    *t_civetweb_log += message;
  }
  return 1;  // handled: civetweb prints nothing itself
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& host, int port) {
  if (port < 0 || port > 65535) {
    return invalid_argument("--metrics_port " + std::to_string(port) +
                            " is not a port number (0..65535; 0 picks a free port)");
  }
  const std::string address = bind_address(host, port);
  CivetCallbacks callbacks;
  callbacks.log_message = log_civetweb;
  std::unique_ptr<prometheus::Exposer> exposer;
  std::string why;
  // A free port (0) is the kernel's choice and cannot be in use; a start that still fails is
  // tried again a few times before it counts as an error.
  const int attempts = port == 0 ? 3 : 1;
  for (int attempt = 0; attempt < attempts && !exposer; ++attempt) {
    std::string log;
    t_civetweb_log = &log;
    try {
      exposer = std::make_unique<prometheus::Exposer>(
          std::vector<std::string>{"listening_ports", address, "num_threads", "1"}, &callbacks);
    } catch (const std::exception& e) {
      why = std::string(e.what()) + (log.empty() ? "" : ": " + log);
    }
    t_civetweb_log = nullptr;
  }
  if (!exposer) {
    return invalid_argument("cannot serve metrics on " + address +
                            " (--metrics_port, --metrics_host): the address cannot be bound (a "
                            "port in use, or not an address of this machine); pick another port, "
                            "or 0 for a free one (civetweb: " +
                            why + ")");
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) {
    return invalid_argument("cannot serve metrics on " + address +
                            " (--metrics_port, --metrics_host): no listening port");
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(host, ports.front(), std::move(exposer)));
}

MetricsServer::MetricsServer(std::string host, int port,
                             std::unique_ptr<prometheus::Exposer> exposer)
    : host_(std::move(host)), port_(port), exposer_(std::move(exposer)) {}

MetricsServer::~MetricsServer() {
  // Stop the HTTP threads (the exposer joins them) before the collectables they read go.
  exposer_.reset();
  kept_.clear();
}

std::string MetricsServer::url() const {
  return "http://" + bind_address(host_, port_) + "/metrics";
}

void MetricsServer::add(std::shared_ptr<prometheus::Collectable> c) {
  std::lock_guard<std::mutex> lock(mutex_);
  exposer_->RegisterCollectable(c);
  kept_.push_back(std::move(c));
}

prometheus::MetricFamily family(const std::string& name, const std::string& help,
                                prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void sample(prometheus::MetricFamily& f, double value, const Labels& labels) {
  prometheus::ClientMetric m;
  for (const auto& [name, label_value] : labels) m.label.push_back({name, label_value});
  switch (f.type) {
    case prometheus::MetricType::Counter:
      m.counter.value = value;
      break;
    case prometheus::MetricType::Gauge:
      m.gauge.value = value;
      break;
    default:
      m.untyped.value = value;
      break;
  }
  f.metric.push_back(std::move(m));
}

}  // namespace pstrain::metrics
