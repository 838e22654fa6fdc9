// The candidate identifier values of megamed/data/deid/patterns.py (_id_values), for ASCII text.
#pragma once

#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace megamed {

// (start, end) of every value that patterns._id_values yields for `text` (ASCII only: the
// caller keeps other text in Python). `label_ends`: patterns._LABEL_ENDS.
std::vector<std::pair<long, long>> deid_id_values(const std::string& text,
                                                  const std::unordered_set<std::string>& label_ends);

}  // namespace megamed
