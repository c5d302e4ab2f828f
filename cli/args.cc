#include "cli/args.h"

#include "cli/cli.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>

namespace pstrain {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({sub, prev[j] + 1, cur[j - 1] + 1});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  const size_t limit = std::max<size_t>(2, word.size() / 3);
  std::string best;
  size_t best_d = limit + 1;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

namespace {

constexpr int kMaxFlagfileDepth = 16;

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

Status expand_into(const std::vector<std::string>& args, int depth, std::vector<std::string>& out);

Status expand_file(const std::string& path, int depth, std::vector<std::string>& out) {
  if (depth >= kMaxFlagfileDepth) {
    return invalid_argument("--flagfile=" + path + ": flagfiles nested more than " +
                            std::to_string(kMaxFlagfileDepth) + " deep (a cycle?)");
  }
  std::ifstream in(path);
  if (!in) return invalid_argument("--flagfile=" + path + ": cannot read the file");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    // absl's format is `--name=value`; `--name value` on one line is read the same way.
    const auto space = line.find_first_of(" \t");
    if (line.rfind("--", 0) == 0 && space != std::string::npos && line.find('=') > space) {
      lines.push_back(line.substr(0, space));
      lines.push_back(trim(line.substr(space)));
    } else {
      lines.push_back(line);
    }
  }
  if (in.bad()) return invalid_argument("--flagfile=" + path + ": cannot read the file");
  return expand_into(lines, depth + 1, out);
}

Status expand_into(const std::vector<std::string>& args, int depth, std::vector<std::string>& out) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--flagfile" || a == "-flagfile") {
      if (i + 1 >= args.size()) return invalid_argument("--flagfile needs a file name");
      PSTRAIN_RETURN_IF_ERROR(expand_file(args[++i], depth, out));
    } else if (a.rfind("--flagfile=", 0) == 0) {
      PSTRAIN_RETURN_IF_ERROR(expand_file(a.substr(11), depth, out));
    } else {
      out.push_back(a);
    }
  }
  return {};
}

bool never_from_environment(const std::string& name) {
  return name == "help" || name == "help-all" || name == "version" || name == "flagfile";
}

}  // namespace

Result<std::vector<std::string>> expand_flagfiles(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  PSTRAIN_RETURN_IF_ERROR(expand_into(args, 0, out));
  return out;
}

Status apply_environment(CLI::App& app, const std::vector<std::string>& skip) {
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_lnames().empty() || opt->count() > 0) continue;
    const std::string name = opt->get_lnames()[0];
    if (never_from_environment(name) ||
        std::find(skip.begin(), skip.end(), "--" + name) != skip.end()) {
      continue;
    }
    std::string var = "PSTRAIN_";
    for (char ch : name) var += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    const char* value = std::getenv(var.c_str());
    if (value == nullptr || *value == '\0') continue;
    try {
      opt->add_result(std::string(value));
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return invalid_argument(var + "=" + value + " is not a valid value for --" + name + ": " +
                              e.what());
    }
  }
  return {};
}

std::string leftover_message(const CLI::App& app, const std::vector<std::string>& leftovers,
                             const std::vector<std::string>& commands) {
  if (leftovers.empty()) return "";
  std::vector<std::string> flags;
  for (const CLI::Option* opt : app.get_options()) {
    for (const std::string& n : opt->get_lnames()) flags.push_back("--" + n);
  }
  std::string head;
  const std::string& first = leftovers.front();
  if (first.size() > 1 && first[0] == '-') {
    std::string name = first.substr(0, first.find('='));
    if (name.rfind("--", 0) != 0) name = "-" + name;  // -train_steps: as --train_steps
    std::string underscored = name;
    std::replace(underscored.begin() + 2, underscored.end(), '-', '_');
    head = "unknown flag " + first.substr(0, first.find('='));
    if (underscored != name && std::find(flags.begin(), flags.end(), underscored) != flags.end()) {
      head +=
          "; did you mean " + underscored + "? (pstrain's flags use underscores, as TensorFlow's)";
    } else if (std::string n = nearest(underscored, flags); !n.empty()) {
      head += "; did you mean " + n + "?";
    }
  } else if (!commands.empty()) {
    head = "unknown command \"" + first + "\"";
    if (std::string n = nearest(first, commands); !n.empty()) {
      head += "; did you mean \"" + n + "\"?";
    }
  } else {
    head = "unexpected argument \"" + first + "\"";
  }
  if (leftovers.size() > 1) {
    head += " (not understood:";
    for (const std::string& l : leftovers) head += " " + l;
    head += ")";
  }
  return head;
}

std::optional<int> parse_command_words(CLI::App& app, const std::vector<std::string>& words) {
  std::vector<std::string> reversed(words.rbegin(), words.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace pstrain
