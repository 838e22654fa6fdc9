#include "encapsulation.h"

#include <cstring>
#include <string>

#include "attributes.h"

namespace megamed {

namespace {

[[noreturn]] void fail(const std::string& what) { throw DicomFormatError("encapsulated Pixel Data: " + what); }

// Offset of each fragment's Item tag from the first fragment's, as the tables count them.
std::vector<uint64_t> fragment_offsets(const std::vector<ByteSpan>& fragments) {
  std::vector<uint64_t> offsets;
  uint64_t at = 0;
  for (const ByteSpan& f : fragments) {
    offsets.push_back(at);
    at += 8 + f.size;  // PS3.5 7.5: Item tag (4) and Item length (4) precede each value
  }
  return offsets;
}

// The fragment each table entry points at, in one pass over both lists. A table lists the
// frames in order (PS3.5 A.4), so its offsets strictly increase: no two frames share a
// fragment, and the frames can never decode to more than the fragments present hold.
std::vector<size_t> fragments_at(const std::vector<uint64_t>& offsets, const std::vector<uint64_t>& table,
                                 const char* name) {
  std::vector<size_t> indices;
  indices.reserve(table.size());
  size_t j = 0;
  for (size_t i = 0; i < table.size(); ++i) {
    if (i > 0 && table[i] <= table[i - 1])
      fail(std::string(name) + " offsets are not increasing: frame " + std::to_string(i) + " at " +
           std::to_string(table[i]) + " after " + std::to_string(table[i - 1]));
    while (j < offsets.size() && offsets[j] < table[i]) ++j;
    if (j == offsets.size() || offsets[j] != table[i])
      fail(std::string(name) + " offset " + std::to_string(table[i]) + " is not the start of a fragment");
    indices.push_back(j);
  }
  return indices;
}

// Bytes of bookkeeping per frame and fragment (spans, lists, offsets), charged up front.
constexpr uint64_t kIndexBytesPerFragment = 96;

std::vector<uint64_t> read_u64s(const ByteSpan* value) {
  std::vector<uint64_t> out;
  if (value)
    for (size_t i = 0; i + 8 <= value->size; i += 8) out.push_back(load_u64(value->data + i, true));
  return out;
}

const ByteSpan* attribute(const ParsedDicom& parsed, uint32_t tag) {
  auto it = parsed.attributes.find(tag);
  return it == parsed.attributes.end() ? nullptr : &it->second;
}

}  // namespace

std::vector<std::vector<ByteSpan>> split_frames(const ParsedDicom& parsed, uint32_t frames) {
  const std::vector<ByteSpan>& fragments = parsed.pixels.fragments;
  const std::vector<uint32_t>& basic = parsed.pixels.basic_offsets;
  if (fragments.empty()) fail("no fragments after the Basic Offset Table");
  parsed.memory.charge(kIndexBytesPerFragment * fragments.size(), "the frame index");
  std::vector<std::vector<ByteSpan>> out;
  std::vector<uint64_t> extended = read_u64s(attribute(parsed, tags::kExtendedOffsetTable));
  std::vector<uint64_t> lengths = read_u64s(attribute(parsed, tags::kExtendedOffsetTableLengths));
  if (!extended.empty()) {
    // PS3.5 A.4 (Extended Offset Table): one fragment per frame, offsets and lengths given.
    if (extended.size() != frames || lengths.size() != frames)
      fail("Extended Offset Table lists " + std::to_string(extended.size()) + " offsets and " +
           std::to_string(lengths.size()) + " lengths for " + std::to_string(frames) + " frames");
    std::vector<size_t> index = fragments_at(fragment_offsets(fragments), extended, "Extended Offset Table");
    for (uint32_t i = 0; i < frames; ++i) {
      const ByteSpan& f = fragments[index[i]];
      if (f.size != lengths[i]) fail("Extended Offset Table length " + std::to_string(lengths[i]) + " disagrees with the fragment's " + std::to_string(f.size));
      out.push_back({f});
    }
  } else if (!basic.empty()) {
    // PS3.5 A.4 (Basic Offset Table): the first fragment of each frame, in order.
    if (basic.size() != frames)
      fail("Basic Offset Table lists " + std::to_string(basic.size()) + " frames, NumberOfFrames is " + std::to_string(frames));
    std::vector<size_t> first = fragments_at(fragment_offsets(fragments),
                                             std::vector<uint64_t>(basic.begin(), basic.end()), "Basic Offset Table");
    first.push_back(fragments.size());
    for (uint32_t i = 0; i < frames; ++i) out.emplace_back(fragments.begin() + first[i], fragments.begin() + first[i + 1]);
  } else if (fragments.size() == frames) {
    for (const ByteSpan& f : fragments) out.push_back({f});
  } else if (frames == 1) {
    out.push_back(fragments);
  } else {
    fail(std::to_string(fragments.size()) + " fragments for " + std::to_string(frames) +
         " frames and no offset table to tell which fragments form which frame");
  }
  return out;
}

ByteSpan join_fragments(const std::vector<ByteSpan>& fragments, std::vector<uint8_t>& storage) {
  if (fragments.size() == 1) return fragments[0];
  storage.clear();
  for (const ByteSpan& f : fragments) storage.insert(storage.end(), f.data, f.data + f.size);
  return {storage.data(), storage.size()};
}

}  // namespace megamed
