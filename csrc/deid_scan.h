// The candidate identifier values of megamed/data/deid/patterns.py (_id_values), for ASCII text.
#pragma once

#include <bitset>
#include <string>
#include <unordered_map>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

namespace megamed {

// (start, end) of every value that patterns._id_values yields for `text` (ASCII only: the
// caller keeps other text in Python). `label_ends`: patterns._LABEL_ENDS.
std::vector<std::pair<long, long>> deid_id_values(const std::string& text,
                                                  const std::unordered_set<std::string>& label_ends);

// The starts of the words patterns._CAPITALISED finds in ASCII `text` that addresses() acts on:
// longer than 5 letters and ending with one of `endings`, or one of `triggers`.
std::vector<long> deid_place_words(const std::string& text, const std::vector<std::string>& endings,
                                   const std::unordered_set<std::string>& triggers);

// The starts of patterns._MONTH_WORD's matches in `low` (lower-case ASCII) at a word's start.
std::vector<long> deid_month_starts(const std::string& low);

// Every position where the anchor pattern `kind` of patterns.py matches in ASCII `text`:
// "phone_core" (_PHONE_CORE), "ip_hint" (_IP_HINT), "month_capital" (_MONTH_CAPITAL), and on
// lower-case text "age_start" (_AGE_START), "age_cue" (_AGE_CUE); "digit_start"
// (more_patterns._DIGIT_AT). Unknown kind: empty.
std::vector<long> deid_anchor_starts(const std::string& kind, const std::string& text);
// deid_anchor_starts of each of `kinds` on `text`, in one call (one conversion of the text)
std::vector<std::vector<long>> deid_anchor_table(const std::string& text,
                                                 const std::vector<std::string>& kinds);

// names._TOKEN_SPLIT_ASCII.split(text) for ASCII text: gap, token, gap, ..., gap.
std::vector<std::string> deid_split_tokens(const std::string& text);

// names._uncased_regions(text) for ASCII text: the lines with no lower-case letter, two
// capitals in a row and at least 24 letters, as (start, end) without the newline.
std::vector<std::pair<long, long>> deid_uncased_regions(const std::string& text);

// (start, mask) of the digit runs of ASCII `text` where some pattern of patterns._RUN_PATTERNS
// may match: bit k of mask (patterns._RUN_BITS order) set where the k-th may (a necessary
// condition of each, from the characters after the run). run_matches tries each pattern only
// where its bit is set; no pattern matches where its bit is clear.
std::vector<std::pair<long, int>> deid_run_masks(const std::string& text);

}  // namespace megamed

namespace megamed {

// One pass for the literal gates of megamed/data/deid/gates.py: `literals` holds
// (literal, folded, gate); gate g is on where one of its literals occurs in ASCII `text` (a
// folded literal, lower case, against the text read in lower case: `literal in text.lower()`).
class LiteralGates {
 public:
  LiteralGates(const std::vector<std::tuple<std::string, bool, int>>& literals, int gates);
  // one byte per gate: 1 on, 0 off
  std::string scan(const std::string& text) const;

 private:
  struct Literal { std::string text; bool folded; int gate; };
  static constexpr unsigned kTable = 1024;
  static unsigned pair_key(char a, char b);
  static unsigned slot(unsigned key);
  static bool matches_at(const Literal& lit, const std::string& t, size_t p);
  std::vector<Literal> literals_;
  std::vector<int> singles_;                  // one-character literals
  // the others by their first two characters: a bit per pair (most pairs start none), then
  // a small hash table of literal indices
  std::bitset<65536> seen_;
  std::vector<char> always_;                  // gates with an empty literal (always on)
  int gates_;
  std::vector<std::vector<int>> table_;
};

}  // namespace megamed

namespace megamed {

// The tokens of names._TOKEN_SPLIT_ASCII.split(text) for ASCII text as start, end, start,
// end, ... (names._token_parts builds its lists from them: csrc/bindings.cpp).
std::vector<long> deid_token_bounds(const std::string& text);

}  // namespace megamed
