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

size_t fragment_at(const std::vector<uint64_t>& offsets, uint64_t offset, const char* table) {
  for (size_t i = 0; i < offsets.size(); ++i)
    if (offsets[i] == offset) return i;
  fail(std::string(table) + " offset " + std::to_string(offset) + " is not the start of a fragment");
}

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
  std::vector<std::vector<ByteSpan>> out;
  std::vector<uint64_t> extended = read_u64s(attribute(parsed, tags::kExtendedOffsetTable));
  std::vector<uint64_t> lengths = read_u64s(attribute(parsed, tags::kExtendedOffsetTableLengths));
  if (!extended.empty()) {
    // PS3.5 A.4 (Extended Offset Table): one fragment per frame, offsets and lengths given.
    if (extended.size() != frames || lengths.size() != frames)
      fail("Extended Offset Table lists " + std::to_string(extended.size()) + " offsets and " +
           std::to_string(lengths.size()) + " lengths for " + std::to_string(frames) + " frames");
    std::vector<uint64_t> offsets = fragment_offsets(fragments);
    for (uint32_t i = 0; i < frames; ++i) {
      const ByteSpan& f = fragments[fragment_at(offsets, extended[i], "Extended Offset Table")];
      if (f.size != lengths[i]) fail("Extended Offset Table length " + std::to_string(lengths[i]) + " disagrees with the fragment's " + std::to_string(f.size));
      out.push_back({f});
    }
  } else if (!basic.empty()) {
    // PS3.5 A.4 (Basic Offset Table): the first fragment of each frame, in order.
    if (basic.size() != frames)
      fail("Basic Offset Table lists " + std::to_string(basic.size()) + " frames, NumberOfFrames is " + std::to_string(frames));
    std::vector<uint64_t> offsets = fragment_offsets(fragments);
    std::vector<size_t> first;
    for (uint32_t offset : basic) first.push_back(fragment_at(offsets, offset, "Basic Offset Table"));
    first.push_back(fragments.size());
    for (uint32_t i = 0; i < frames; ++i) {
      if (first[i + 1] <= first[i]) fail("Basic Offset Table offsets are not increasing");
      out.emplace_back(fragments.begin() + first[i], fragments.begin() + first[i + 1]);
    }
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
