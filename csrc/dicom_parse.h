// DICOM Part 10 files and bare datasets -> the elements the decoder needs.
// PS3.10 7.1 (preamble, "DICM", file meta), PS3.5 7 (data elements), 7.5 (sequences),
// A.4 (encapsulated pixel data), A.5 (deflated syntax).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "byte_reader.h"
#include "inflate.h"
#include "memory_budget.h"

namespace megamed {

struct TransferSyntax {
  std::string uid;
  bool explicit_vr = true;
  bool little_endian = true;
  bool deflated = false;      // PS3.5 A.5: everything after the file meta is raw deflate
  bool encapsulated = false;  // PS3.5 A.4: pixel data in items (fragments)
  bool rle = false;           // PS3.5 Annex G, decoded here; other encapsulated syntaxes are not
};

// Throws DicomFormatError for a UID that is not a transfer syntax of PS3.5 Annex A.
TransferSyntax transfer_syntax_from_uid(const std::string& uid);

// One data element of the header returned on request. Sequences hold their items, each
// item a list of elements; other values stay bytes in the buffer.
struct Element {
  uint32_t tag = 0;
  char vr[3] = "UN";  // "UN" in implicit VR syntaxes: no data dictionary is bundled
  ByteSpan value;
  bool is_sequence = false;
  std::vector<std::vector<Element>> items;
};

struct PixelDataLocation {
  bool present = false;
  bool encapsulated = false;
  char vr[3] = "UN";
  ByteSpan value;                      // native: the whole value
  std::vector<uint32_t> basic_offsets;  // encapsulated: the Basic Offset Table (A.4, Table A.4-1)
  std::vector<ByteSpan> fragments;      // encapsulated: item values after the offset table
};

struct ParsedDicom {
  InflatedBytes inflated;  // owns the dataset bytes of a deflated file
  TransferSyntax syntax;
  bool syntax_guessed = false;  // no (0002,0010): syntax inferred from the first element
  std::map<uint32_t, ByteSpan> attributes;  // top-level values of the tags is_wanted() names
  PixelDataLocation pixels;
  std::vector<Element> header;  // every element but Pixel Data, only when asked for
  // What this decode has allocated and may still allocate. Mutable: planning a decode
  // (which sees the parse as const) charges its buffers here too.
  mutable MemoryBudget memory;
};

// Parses `size` bytes. Stops at the top-level Pixel Data unless `keep_header` asks for the
// elements after it too. Never reads outside [data, data + size). Sequences nest at most
// kMaxSequenceDepth deep; `memory_limit` bounds what the decode allocates (MemoryBudget).
ParsedDicom parse_dicom(const uint8_t* data, size_t size, bool keep_header,
                        uint64_t memory_limit = MemoryBudget::kAuto);

// Real files nest sequences a handful of levels deep; the bound keeps a crafted file from
// exhausting the stack. Counted across every path into a nested dataset (SQ, undefined
// length UN, implicit VR values parsed as items), so no path restarts it.
constexpr int kMaxSequenceDepth = 64;

}  // namespace megamed
