// A C++ transcription of patterns._id_values (megamed/data/deid/patterns.py) for ASCII text:
// the same loop over digits, the same back-up to the start of the run, _ID_VALUE matched by
// hand, the same pre-filter (_may_follow_label, a "#" just before). Every step names the
// Python it stands for; tests/data/test_deid_text.py compares both on random text.
#include "deid_scan.h"

namespace megamed {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
// str.isspace() on ASCII: also the separators 0x1c-0x1f
bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }
// [A-Z0-9-] under re.I
bool in_lookahead(char c) { return is_alnum(c) || c == '-'; }
// [A-Z0-9./-] under re.I
bool in_middle(char c) { return is_alnum(c) || c == '.' || c == '/' || c == '-'; }

// _ID_AT.match(text, s): the end of the match, or -1.
// ((?=[A-Z0-9-]{0,25}\d)[A-Z0-9][A-Z0-9./-]{2,24}[A-Z0-9]|\d{3,}), re.I
long id_at(const std::string& t, long s) {
  const long n = static_cast<long>(t.size());
  bool ahead = false;  // (?=[A-Z0-9-]{0,25}\d)
  for (long k = 0; k <= 25 && s + k < n; ++k) {
    if (is_digit(t[s + k])) { ahead = true; break; }
    if (!in_lookahead(t[s + k])) break;
  }
  if (ahead && s < n && is_alnum(t[s])) {
    long run = 0;  // [A-Z0-9./-]{2,24}, greedy, then [A-Z0-9]
    while (run < 24 && s + 1 + run < n && in_middle(t[s + 1 + run])) ++run;
    for (long j = run; j >= 2; --j)
      if (s + 1 + j < n && is_alnum(t[s + 1 + j])) return s + 2 + j;
  }
  long d = 0;  // \d{3,}
  while (s + d < n && is_digit(t[s + d])) ++d;
  return d >= 3 ? s + d : -1;
}

// patterns._may_follow_label on ASCII text
bool may_follow_label(const std::string& t, long start,
                      const std::unordered_set<std::string>& label_ends) {
  long i = start;
  while (i > 0) {
    const char c = t[i - 1];
    if (c == ':' || c == '#' || c == '=' || c == '.' || c == '-' || is_space(c)) --i;
    else break;
  }
  long j = i;
  while (j > 0 && is_alpha(t[j - 1])) --j;
  std::string word = t.substr(j, i - j);
  for (char& c : word) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return label_ends.count(word) > 0;
}

}  // namespace

std::vector<std::pair<long, long>> deid_id_values(const std::string& t,
                                                  const std::unordered_set<std::string>& label_ends) {
  std::vector<std::pair<long, long>> out;
  const long n = static_cast<long>(t.size());
  long pos = 0;
  while (true) {
    long digit = pos;  // _ID_CANDIDATE.search(text, pos)
    while (digit < n && !is_digit(t[digit])) ++digit;
    if (digit >= n) break;
    long start = digit;  // back up to the start of the alphanumeric run (24 at most)
    while (start > 0 && (is_alnum(t[start - 1]) || t[start - 1] == '.' || t[start - 1] == '/' ||
                         t[start - 1] == '-') && digit - start < 24)
      --start;
    while (start < digit && !is_alnum(t[start])) ++start;
    const long end = id_at(t, start);
    pos = end > digit + 1 ? end : digit + 1;  // max(m.end() if m else digit.end(), digit.end())
    if (end < 0) continue;
    bool hash = false;  // "#" in text[max(0, start - 8):start]
    for (long k = start > 8 ? start - 8 : 0; k < start; ++k) hash = hash || t[k] == '#';
    if (hash || may_follow_label(t, start, label_ends)) out.emplace_back(start, end);
  }
  return out;
}

std::vector<long> deid_place_words(const std::string& t, const std::vector<std::string>& endings,
                                   const std::unordered_set<std::string>& triggers) {
  // _CAPITALISED = [A-Z](?<!\w[A-Z])[A-Za-z]+\b: a capital after no word character, the
  // letters after it, then no word character (else no match: backing up ends inside the word)
  std::vector<long> out;
  const long n = static_cast<long>(t.size());
  auto is_word = [](char c) { return is_alnum(c) || c == '_'; };
  for (long p = 0; p < n; ++p) {
    if (!(t[p] >= 'A' && t[p] <= 'Z') || (p > 0 && is_word(t[p - 1]))) continue;
    long q = p + 1;
    while (q < n && is_alpha(t[q])) ++q;
    if (q - p >= 2 && (q == n || !is_word(t[q]))) {
      const std::string word = t.substr(p, q - p);
      bool take = triggers.count(word) > 0;
      for (size_t k = 0; !take && word.size() > 5 && k < endings.size(); ++k)
        take = word.size() >= endings[k].size() &&
               word.compare(word.size() - endings[k].size(), endings[k].size(), endings[k]) == 0;
      if (take) out.push_back(p);
    }
    p = q - 1;  // (a capital inside the word follows a letter: no match starts there)
  }
  return out;
}

std::vector<long> deid_month_starts(const std::string& low) {
  static const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                        "jul", "aug", "sep", "oct", "nov", "dec"};
  std::vector<long> out;
  const long n = static_cast<long>(low.size());
  for (long a = 0; a + 3 <= n; ++a) {
    if (a > 0 && is_alpha(low[a - 1])) continue;
    for (const char* m : kMonths)
      if (low[a] == m[0] && low[a + 1] == m[1] && low[a + 2] == m[2]) { out.push_back(a); break; }
  }
  return out;
}

}  // namespace megamed
