// A C++ transcription of patterns._id_values (megamed/data/deid/patterns.py) for ASCII text:
// the same loop over digits, the same back-up to the start of the run, _ID_VALUE matched by
// hand, the same pre-filter (_may_follow_label, a "#" just before). Every step names the
// Python it stands for; tests/data/test_deid_text.py compares both on random text.
#include "deid_scan.h"

#include <cstring>

namespace megamed {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
char lower(char c) { return is_upper(c) ? static_cast<char>(c - 'A' + 'a') : c; }
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
    // a capital just before: a payer code ("member # UHC 9910") may follow the label
    const bool payer = start >= 2 && t[start - 2] >= 'A' && t[start - 2] <= 'Z';
    if (hash || payer || may_follow_label(t, start, label_ends)) out.emplace_back(start, end);
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

namespace {

bool digits_at(const std::string& t, long p, long k) {
  if (p + k > static_cast<long>(t.size())) return false;
  for (long i = 0; i < k; ++i) if (!is_digit(t[p + i])) return false;
  return true;
}
bool at(const std::string& t, long p, char c) { return p < static_cast<long>(t.size()) && t[p] == c; }
bool literal_at(const std::string& t, long p, const char* s) {
  for (long i = 0; s[i] != '\0'; ++i)
    if (p + i >= static_cast<long>(t.size()) || t[p + i] != s[i]) return false;
  return true;
}
// [-.\s]
bool phone_sep(char c) { return c == '-' || c == '.' || is_space(c); }

// (?:\(\d{3}\)[-.\s]?|\d{3}[-.\s/])\d{3}[-.\s]?\d{4} (an optional separator that is
// there is taken: skipping it leaves a non-digit where a digit must be)
bool phone_core(const std::string& t, long p) {
  const long n = static_cast<long>(t.size());
  long q;
  if (at(t, p, '(') && digits_at(t, p + 1, 3) && at(t, p + 4, ')')) {
    q = p + 5;
    if (q < n && phone_sep(t[q])) ++q;
  } else if (digits_at(t, p, 3) && p + 3 < n && (phone_sep(t[p + 3]) || t[p + 3] == '/')) {
    q = p + 4;
  } else {
    return false;
  }
  if (!digits_at(t, q, 3)) return false;
  q += 3;
  if (q < n && phone_sep(t[q])) ++q;
  return digits_at(t, q, 4);
}

// \d\.\d{1,3}\.\d
bool ip_hint(const std::string& t, long p) {
  if (!digits_at(t, p, 1) || !at(t, p + 1, '.')) return false;
  long k = 0;
  while (k < 3 && digits_at(t, p + 2 + k, 1)) ++k;
  return k >= 1 && at(t, p + 2 + k, '.') && digits_at(t, p + 3 + k, 1);
}

// (?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\b
bool month_capital(const std::string& t, long p) {
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "Jun", "Jul",
                                        "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (std::strchr("JFMASOND", t[p]) == nullptr) return false;    // (a month's first letter)
  bool month = false;
  for (const char* m : kMonths) month = month || literal_at(t, p, m);
  if (!month) return false;
  long q = p + 3;
  while (q < static_cast<long>(t.size()) && t[q] >= 'a' && t[q] <= 'z') ++q;
  return q == static_cast<long>(t.size()) || !(is_alnum(t[q]) || t[q] == '_');
}

// 9\d|1[01]\d|ninety|one hundred|a hundred|hundred
bool age_start(const std::string& t, long p) {
  return (at(t, p, '9') && digits_at(t, p + 1, 1)) ||
         (at(t, p, '1') && (at(t, p + 1, '0') || at(t, p + 1, '1')) && digits_at(t, p + 2, 1)) ||
         literal_at(t, p, "ninety") || literal_at(t, p, "one hundred") ||
         literal_at(t, p, "a hundred") || literal_at(t, p, "hundred");
}

// \d(?<![\w.,/:+-]\d): the first digit of a run that no word character, ".", ",", "/", ":",
// "+" or "-" precedes (more_patterns._DIGIT_AT, where each _DIGIT_START match starts)
bool digit_start(const std::string& t, long p) {
  if (!is_digit(t[p])) return false;
  if (p == 0) return true;
  const char c = t[p - 1];
  return !(is_alnum(c) || c == '_' || std::strchr(".,/:+-", c) != nullptr);
}

// age|turned
bool age_cue(const std::string& t, long p) { return literal_at(t, p, "age") || literal_at(t, p, "turned"); }

// \d(?i:st|nd|rd|th)
bool ordinal_hint(const std::string& t, long p) {
  if (!digits_at(t, p, 1) || p + 2 >= static_cast<long>(t.size())) return false;
  const char a = lower(t[p + 1]), b = lower(t[p + 2]);
  return (a == 's' && b == 't') || (a == 'n' && b == 'd') || (a == 'r' && b == 'd') ||
         (a == 't' && b == 'h');
}

// \d{3}[-.]\d{4} with a letter in the 5 characters before (patterns._phone7_after_letter)
bool phone7_letter(const std::string& t, long p) {
  if (!(digits_at(t, p, 3) && (at(t, p + 3, '-') || at(t, p + 3, '.')) && digits_at(t, p + 4, 4)))
    return false;
  for (long k = p > 5 ? p - 5 : 0; k < p; ++k) if (is_alpha(t[k])) return true;
  return false;
}

// \s?#?\s?\d from q (an optional character that is there is taken: skipping it leaves it
// where the next item, or the digit, cannot take it, or the second \s? takes it alike)
bool extension_tail(const std::string& t, long q) {
  const long n = static_cast<long>(t.size());
  if (q < n && is_space(t[q])) ++q;
  if (q < n && t[q] == '#') ++q;
  if (q < n && is_space(t[q])) ++q;
  return digits_at(t, q, 1);
}

// (?:e(?<!\we)xt(?:ension|\.)?|p(?<!\wp)(?:ager|gr)|b(?<!\wb)eeper|x(?<!\wx))\s?#?\s?\d
// (patterns._EXTENSION_WORD, on lower-case text)
bool extension_cue(const std::string& t, long p) {
  if (p > 0 && (is_alnum(t[p - 1]) || t[p - 1] == '_')) return false;
  if (literal_at(t, p, "ext"))
    return (literal_at(t, p + 3, "ension") && extension_tail(t, p + 9)) ||
           (at(t, p + 3, '.') && extension_tail(t, p + 4)) || extension_tail(t, p + 3);
  if (literal_at(t, p, "pager")) return extension_tail(t, p + 5);
  if (literal_at(t, p, "pgr")) return extension_tail(t, p + 3);
  if (literal_at(t, p, "beeper")) return extension_tail(t, p + 6);
  return at(t, p, 'x') && extension_tail(t, p + 1);
}

// [A-Z](?<!\w[A-Z])(?=[A-Z0-9]*[\d-]): patterns._WORD_START, where the word scan is tried
bool word_gate(const std::string& t, long p) {
  const long n = static_cast<long>(t.size());
  if (!(t[p] >= 'A' && t[p] <= 'Z') || (p > 0 && (is_alnum(t[p - 1]) || t[p - 1] == '_')))
    return false;
  long q = p + 1;
  for (; q < n && ((t[q] >= 'A' && t[q] <= 'Z') || is_digit(t[q])); ++q)
    if (is_digit(t[q])) return true;
  return q < n && t[q] == '-';
}

}  // namespace

std::vector<std::string> deid_split_tokens(const std::string& t) {
  // ([A-Za-z]+(?:['-][A-Za-z]+)*): letters, and more letters after each ' or - between them
  std::vector<std::string> parts;
  const std::vector<long> b = deid_token_bounds(t);      // (the scan: at the end of the file)
  long gap = 0;
  for (size_t k = 0; k < b.size(); k += 2) {
    parts.push_back(t.substr(gap, b[k] - gap));
    parts.push_back(t.substr(b[k], b[k + 1] - b[k]));
    gap = b[k + 1];
  }
  parts.push_back(t.substr(gap));
  return parts;
}

std::vector<std::pair<long, long>> deid_uncased_regions(const std::string& t) {
  // _SHOUTED_LINE = ^[^a-z\n]*[A-Z]{2}[^a-z\n]*$ (re.M): a whole line without [a-z], with
  // two capitals in a row; kept with 24 letters or more (all capitals there)
  std::vector<std::pair<long, long>> out;
  const long n = static_cast<long>(t.size());
  for (long p = 0; p <= n;) {
    long q = p;
    bool lower = false, pair = false;
    long capitals = 0;
    for (; q < n && t[q] != '\n'; ++q) {
      const char c = t[q];
      lower = lower || (c >= 'a' && c <= 'z');
      if (c >= 'A' && c <= 'Z') {
        ++capitals;
        pair = pair || (q > p && t[q - 1] >= 'A' && t[q - 1] <= 'Z');
      }
    }
    if (!lower && pair && capitals >= 24) out.emplace_back(p, q);
    p = q + 1;
  }
  return out;
}

namespace {


// a month name starts at p (_MONTH: each form starts with its 3-letter abbreviation), any case
bool month_at(const std::string& t, long p) {
  static const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                        "jul", "aug", "sep", "oct", "nov", "dec"};
  if (p + 3 > static_cast<long>(t.size())) return false;
  for (const char* m : kMonths)
    if (lower(t[p]) == m[0] && lower(t[p + 1]) == m[1] && lower(t[p + 2]) == m[2]) return true;
  return false;
}

// _STREET's lower-case branch from p: (?:[a-z][a-z'-]*[ ]){1,3} then a spelled-out street type
bool lower_street_at(const std::string& t, long p) {
  static const char* const kTypes[] = {"street", "avenue", "road", "drive", "lane", "boulevard",
                                       "court", "place", "circle", "parkway", "highway", "terrace"};
  const long n = static_cast<long>(t.size());
  for (int word = 0; word < 3; ++word) {
    if (p >= n || !is_lower(t[p])) return false;
    while (p < n && (is_lower(t[p]) || t[p] == '\'' || t[p] == '-')) ++p;
    if (p >= n || t[p] != ' ') return false;
    ++p;
    for (const char* type : kTypes) if (literal_at(t, p, type)) return true;
  }
  return false;
}

// month name (any case) at k, after the spaces from k: date7's "\s+(?:of\s+)?" month
bool spaced_month_or_of(const std::string& t, long k) {
  const long n = static_cast<long>(t.size());
  while (k < n && is_space(t[k])) ++k;
  return month_at(t, k) || (k + 1 < n && lower(t[k]) == 'o' && lower(t[k + 1]) == 'f');
}

// _STREET after its digits: [A-Z]?[ ]{1,2} then a capital or a digit (a direction, a name,
// "1st"), or lower-case words and a spelled-out street type
bool street_may_follow(const std::string& t, long q) {
  const long n = static_cast<long>(t.size());
  if (q >= n) return false;
  if (is_upper(t[q])) return true;
  if (t[q] != ' ') return false;
  long k = q + 1;
  if (k < n && t[k] == ' ') ++k;
  if (k < n && (is_upper(t[k]) || is_digit(t[k]))) return true;
  return lower_street_at(t, k);
}

// The _RUN_PATTERNS patterns (bits in patterns._RUN_BITS order) that may match at the run of
// r digits starting at p: a necessary condition of each on what follows the run.
int run_mask(const std::string& t, long p, long r) {
  const long n = static_cast<long>(t.size()), q = p + r;
  const char c = q < n ? t[q] : '\0';
  const char c1 = q + 1 < n ? t[q + 1] : '\0';
  const bool sep = c == '/' || c == '.' || c == '-', digit_next = is_digit(c1);
  int mask = 0;
  if (r <= 2 && sep && digit_next) mask |= 1 << 0;                          // date0
  if (r == 4 && sep && digit_next) mask |= 1 << 1;                          // date1
  if (r <= 2 && (c == '/' || c == '-') && digit_next) mask |= 1 << 2;       // date2
  if (r == 4 && c == '-' && digit_next) mask |= 1 << 3;                     // date3
  if (r <= 2 && c == '-' && month_at(t, q + 1)) mask |= 1 << 4;             // date4
  if (r <= 2 && c == '/' && digit_next) mask |= 1 << 5;                     // month_day
  if (r == 3 && c == '-' && digit_next) mask |= 1 << 6;                     // ssn
  if (r == 5 && c == '-' && digit_next) mask |= 1 << 7;                     // zip
  if (r <= 2 && ((q < n && std::strchr("sSnNrRtT", c) != nullptr) ||       // date7: ordinal,
                 (q < n && is_space(c) && spaced_month_or_of(t, q))))       // or \s+ (of) month
    mask |= 1 << 8;
  if (r <= 6 && street_may_follow(t, q)) mask |= 1 << 9;                   // street
  if (r <= 2 && (month_at(t, q) || ((c == '-' || c == ' ') && month_at(t, q + 1))))
    mask |= 1 << 10;                                                        // date5
  if (r >= 7 || is_upper(c) || c == '-') mask |= 1 << 11;                  // bare_id
  if (r <= 16 && is_upper(c)) mask |= 1 << 12;                             // vin
  return mask;
}

}  // namespace

std::vector<std::pair<long, int>> deid_run_masks(const std::string& t) {
  std::vector<std::pair<long, int>> out;
  const long n = static_cast<long>(t.size());
  for (long p = 0; p < n;) {
    if (!is_digit(t[p])) { ++p; continue; }
    long q = p;
    while (q < n && is_digit(t[q])) ++q;
    const int mask = run_mask(t, p, q - p);
    if (mask) out.emplace_back(p, mask);
    p = q;
  }
  return out;
}

namespace {

// every position where Test holds (Test inlined: no call per position)
template <bool (*Test)(const std::string&, long)>
std::vector<long> positions_where(const std::string& t) {
  std::vector<long> out;
  const long n = static_cast<long>(t.size());
  for (long p = 0; p < n; ++p)
    if (Test(t, p)) out.push_back(p);
  return out;
}

}  // namespace

std::vector<long> deid_anchor_starts(const std::string& kind, const std::string& t) {
  if (kind == "phone_core") return positions_where<phone_core>(t);
  if (kind == "ip_hint") return positions_where<ip_hint>(t);
  if (kind == "month_capital") return positions_where<month_capital>(t);
  if (kind == "age_start") return positions_where<age_start>(t);
  if (kind == "age_cue") return positions_where<age_cue>(t);
  if (kind == "ordinal_hint") return positions_where<ordinal_hint>(t);
  if (kind == "word_gate") return positions_where<word_gate>(t);
  if (kind == "phone7_letter") return positions_where<phone7_letter>(t);
  if (kind == "extension_cue") return positions_where<extension_cue>(t);
  if (kind == "digit_start") return positions_where<digit_start>(t);
  return {};
}

namespace {

// an anchor kind: its test, and the characters its matches may start with (a test is tried
// only at those: most characters start no anchor)
struct AnchorKind {
  const char* name;
  bool (*test)(const std::string&, long);
  const char* first;                       // nullptr: digits; "A-Z": capitals
};

const AnchorKind kAnchorKinds[] = {
    {"phone_core", phone_core, "(0123456789"},
    {"ip_hint", ip_hint, "0123456789"},
    {"month_capital", month_capital, "JFMASOND"},
    {"age_start", age_start, "91noah"},
    {"age_cue", age_cue, "at"},
    {"ordinal_hint", ordinal_hint, "0123456789"},
    {"word_gate", word_gate, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    {"phone7_letter", phone7_letter, "0123456789"},
    {"extension_cue", extension_cue, "epbx"},
    {"digit_start", digit_start, "0123456789"},
};

}  // namespace

std::vector<std::vector<long>> deid_anchor_table(const std::string& t,
                                                 const std::vector<std::string>& kinds) {
  std::vector<std::vector<long>> out(kinds.size());
  std::vector<const AnchorKind*> known(kinds.size(), nullptr);
  unsigned starts[256] = {};               // bit k: kinds[k] may start with the character
  for (size_t k = 0; k < kinds.size() && k < 32; ++k)
    for (const AnchorKind& kind : kAnchorKinds)
      if (kinds[k] == kind.name) {
        known[k] = &kind;
        for (const char* c = kind.first; *c; ++c) starts[static_cast<unsigned char>(*c)] |= 1u << k;
      }
  for (size_t k = 0; k < kinds.size(); ++k)          // (beyond 32 kinds, or unknown: alone)
    if (known[k] == nullptr || k >= 32) out[k] = deid_anchor_starts(kinds[k], t);
  const long n = static_cast<long>(t.size());
  for (long p = 0; p < n; ++p)
    for (unsigned m = starts[static_cast<unsigned char>(t[p])]; m; m &= m - 1) {
      const int k = __builtin_ctz(m);
      if (known[k]->test(t, p)) out[k].push_back(p);
    }
  return out;
}

}  // namespace megamed

namespace megamed {

LiteralGates::LiteralGates(const std::vector<std::tuple<std::string, bool, int>>& literals,
                           int gates)
    : always_(gates, 0), gates_(gates), table_(kTable) {
  for (const auto& [text, folded, gate] : literals) {
    if (gate < 0 || gate >= gates) continue;
    if (text.empty()) { always_[gate] = 1; continue; }   // "" in text: always
    const int k = static_cast<int>(literals_.size());
    literals_.push_back({text, folded, gate});
    if (text.size() == 1) {
      singles_.push_back(k);
      continue;
    }
    // (a folded literal is keyed by its own characters: the text's are lowered to look it up)
    const unsigned key = pair_key(text[0], text[1]);
    seen_[key] = true;
    table_[slot(key)].push_back(k);
  }
}

unsigned LiteralGates::pair_key(char a, char b) {
  return static_cast<unsigned>(static_cast<unsigned char>(a)) << 8 |
         static_cast<unsigned char>(b);
}

unsigned LiteralGates::slot(unsigned key) { return (key * 2654435761u >> 16) % kTable; }

bool LiteralGates::matches_at(const Literal& lit, const std::string& t, size_t p) {
  if (lit.text.size() > t.size() - p) return false;
  if (!lit.folded) return t.compare(p, lit.text.size(), lit.text) == 0;
  for (size_t j = 0; j < lit.text.size(); ++j)
    if (lower(t[p + j]) != lit.text[j]) return false;
  return true;
}

std::string LiteralGates::scan(const std::string& t) const {
  std::string on(always_.begin(), always_.end());
  for (int k : singles_)                                  // (one character: rare)
    for (size_t p = 0; p < t.size() && !on[literals_[k].gate]; ++p)
      if (matches_at(literals_[k], t, p)) on[literals_[k].gate] = 1;
  for (size_t p = 0; p + 1 < t.size(); ++p) {
    const unsigned exact = pair_key(t[p], t[p + 1]);
    const unsigned folded = pair_key(lower(t[p]), lower(t[p + 1]));
    // a literal starts here only if its first two characters are the text's (exact) or the
    // lowered text's (folded): looked up by those two keys, each literal under its own
    for (unsigned key : {exact, folded}) {
      if (!seen_[key]) continue;
      for (int k : table_[slot(key)]) {
        const Literal& lit = literals_[k];
        const unsigned own = lit.folded ? folded : exact;
        if (!on[lit.gate] && pair_key(lit.text[0], lit.text[1]) == own && matches_at(lit, t, p))
          on[lit.gate] = 1;
      }
      if (folded == exact) break;
    }
  }
  return on;
}

}  // namespace megamed

namespace megamed {

std::vector<long> deid_token_bounds(const std::string& t) {
  // the tokens of deid_split_tokens (names._TOKEN_SPLIT_ASCII), as start, end, start, end, ...
  std::vector<long> bounds;
  const long n = static_cast<long>(t.size());
  long i = 0;
  while (i < n) {
    if (!is_alpha(t[i])) { ++i; continue; }
    long j = i;
    while (j < n && is_alpha(t[j])) ++j;
    while (j + 1 < n && (t[j] == '\'' || t[j] == '-') && is_alpha(t[j + 1])) {
      ++j;
      while (j < n && is_alpha(t[j])) ++j;
    }
    bounds.push_back(i);
    bounds.push_back(j);
    i = j;
  }
  return bounds;
}

}  // namespace megamed
