#include "runtime/job/hostlist.h"

#include <cctype>
#include <cstdint>

namespace pstrain {
namespace {

bool name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// One piece of an item: literal text, or the numbers of a bracket group (already formatted).
using Piece = std::vector<std::string>;

Status error(const std::string& expression, const std::string& what) {
  return invalid_argument("hostlist \"" + expression + "\": " + what +
                          " (Slurm's forms: node01, node[01-04,07], rack[1-2]-node[01-02], "
                          "a,b[1-3],c)");
}

// "01-04,07" -> {"01","02","03","04","07"}.
Result<Piece> expand_group(const std::string& expression, const std::string& group) {
  if (group.empty()) return error(expression, "empty brackets \"[]\"");
  Piece out;
  size_t start = 0;
  while (true) {
    const size_t comma = group.find(',', start);
    const std::string part =
        group.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const std::string where = "\"[" + group + "]\"";
    if (part.empty()) return error(expression, "an empty entry in " + where);
    const size_t dash = part.find('-');
    const std::string lo_text = part.substr(0, dash);
    const std::string hi_text = dash == std::string::npos ? lo_text : part.substr(dash + 1);
    if (!all_digits(lo_text) || !all_digits(hi_text)) {
      return error(expression,
                   "\"" + part + "\" in " + where + " is not a number or a range lo-hi of numbers");
    }
    if (lo_text.size() > 9 || hi_text.size() > 9) {
      return error(expression, "\"" + part + "\" in " + where + " has a number over 9 digits");
    }
    const int64_t lo = std::stoll(lo_text);
    const int64_t hi = std::stoll(hi_text);
    if (lo > hi) {
      return error(expression, "the range \"" + part + "\" in " + where + " runs backwards");
    }
    if (static_cast<uint64_t>(hi - lo) + out.size() >= kMaxHostlistHosts) {
      return error(expression,
                   "it names more than " + std::to_string(kMaxHostlistHosts) + " hosts");
    }
    const bool padded =
        (lo_text.size() > 1 && lo_text[0] == '0') || (hi_text.size() > 1 && hi_text[0] == '0');
    const size_t width = padded ? lo_text.size() : 0;
    for (int64_t v = lo; v <= hi; ++v) {
      std::string s = std::to_string(v);
      if (s.size() < width) s.insert(0, width - s.size(), '0');
      out.push_back(std::move(s));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// One item ("rack[1-2]-node[01-02]") appended to `hosts`.
Status expand_item(const std::string& expression, const std::string& item,
                   std::vector<std::string>* hosts) {
  if (item.empty()) return error(expression, "an empty host name (stray comma?)");
  std::vector<Piece> pieces;
  size_t i = 0;
  while (i < item.size()) {
    if (item[i] == '[') {
      const size_t close = item.find(']', i);
      if (close == std::string::npos) return error(expression, "'[' without a closing ']'");
      const std::string group = item.substr(i + 1, close - i - 1);
      if (group.find('[') != std::string::npos) {
        return error(expression, "nested '[' inside \"[" + group + "]\"");
      }
      PSTRAIN_ASSIGN_OR_RETURN(Piece p, expand_group(expression, group));
      pieces.push_back(std::move(p));
      i = close + 1;
    } else if (item[i] == ']') {
      return error(expression, "']' without an opening '['");
    } else {
      size_t j = i;
      while (j < item.size() && item[j] != '[' && item[j] != ']') {
        if (!name_char(item[j])) {
          return error(expression, "the character '" + std::string(1, item[j]) +
                                       "' is not allowed in a host name (letters, digits, "
                                       "'-', '.', '_')");
        }
        ++j;
      }
      pieces.push_back(Piece{item.substr(i, j - i)});
      i = j;
    }
  }
  // Cartesian product, the first group varying slowest.
  uint64_t count = 1;
  for (const Piece& p : pieces) {
    count *= p.size();
    if (count + hosts->size() > kMaxHostlistHosts) {
      return error(expression,
                   "it names more than " + std::to_string(kMaxHostlistHosts) + " hosts");
    }
  }
  std::vector<std::string> names{""};
  for (const Piece& p : pieces) {
    std::vector<std::string> next;
    next.reserve(names.size() * p.size());
    for (const std::string& prefix : names) {
      for (const std::string& s : p) next.push_back(prefix + s);
    }
    names = std::move(next);
  }
  hosts->insert(hosts->end(), names.begin(), names.end());
  return {};
}

}  // namespace

Result<std::vector<std::string>> expand_hostlist(const std::string& expression) {
  if (expression.empty()) return error(expression, "it is empty");
  std::vector<std::string> hosts;
  size_t start = 0;
  int depth = 0;
  for (size_t i = 0; i <= expression.size(); ++i) {
    const char c = i < expression.size() ? expression[i] : ',';
    if (c == '[') {
      if (++depth > 1) return error(expression, "nested '['");
    } else if (c == ']') {
      if (--depth < 0) return error(expression, "']' without an opening '['");
    } else if (c == ',' && (depth == 0 || i == expression.size())) {
      if (depth != 0) return error(expression, "'[' without a closing ']'");
      PSTRAIN_RETURN_IF_ERROR(expand_item(expression, expression.substr(start, i - start), &hosts));
      start = i + 1;
    }
  }
  return hosts;
}

}  // namespace pstrain
