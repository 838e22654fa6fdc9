#include "dicom_parse.h"

#include <algorithm>
#include <bitset>
#include <cstring>

#include "attributes.h"
#include "dicom_values.h"
#include "inflate.h"
#include "pixel_spec.h"

namespace megamed {

namespace {

constexpr uint32_t kItem = 0xFFFEE000;               // PS3.5 7.5.1
constexpr uint32_t kItemDelimitation = 0xFFFEE00D;   // PS3.5 7.5.2
constexpr uint32_t kSequenceDelimitation = 0xFFFEE0DD;
constexpr uint32_t kUndefinedLength = 0xFFFFFFFF;

std::string hex_tag(uint32_t tag) {
  char text[12];
  std::snprintf(text, sizeof text, "(%04X,%04X)", tag >> 16, tag & 0xFFFF);
  return text;
}

// PS3.5 Table 6.2-1 (valid VRs) and 7.1.2 (VRs with two reserved bytes and a 32-bit
// length in explicit VR), as bitsets over the two VR bytes: one lookup per element.
struct VRTable {
  std::bitset<65536> valid, long_length;
  VRTable() {
    for (const char* vr : {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT",
                           "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"})
      valid[key(vr)] = true;
    for (const char* vr : {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
      valid[key(vr)] = long_length[key(vr)] = true;
  }
  static size_t key(const char* vr) { return size_t(uint8_t(vr[0])) << 8 | uint8_t(vr[1]); }
};

const VRTable& vr_table() {
  static const VRTable table;
  return table;
}

bool is_vr(const uint8_t* p) { return vr_table().valid[size_t(p[0]) << 8 | p[1]]; }

bool has_long_length(const char* vr) { return vr_table().long_length[VRTable::key(vr)]; }

struct ElementHeader {
  uint32_t tag = 0;
  char vr[3] = "UN";
  uint32_t length = 0;
  size_t offset = 0;  // of the tag, for error messages
};

// Where the top-level Pixel Data value starts, found in a partly inflated dataset.
struct PixelDataProbe {
  bool found = false;
  size_t value_offset = 0;
  uint32_t length = 0;
};

class DatasetParser {
 public:
  DatasetParser(ByteReader& reader, bool explicit_vr, bool keep_header, ParsedDicom& out,
                PixelDataProbe* probe = nullptr)
      : r_(reader), explicit_vr_(explicit_vr), keep_(keep_header), out_(out), probe_(probe) {}

  // Reads elements until `end`, an Item Delimitation (when `in_undefined_item`), or the
  // top-level Pixel Data when the header is not wanted (or, probing, its element header).
  void dataset(size_t end, int depth, std::vector<Element>* sink, bool in_undefined_item) {
    if (depth > kMaxSequenceDepth)
      throw DicomLimitError("sequences nested deeper than " + std::to_string(kMaxSequenceDepth) +
                            " levels (at byte " + std::to_string(r_.pos()) + ")");
    const bool top = depth == 0;
    while (r_.pos() < end) {
      ElementHeader h = header();
      if (h.tag == kItemDelimitation) {
        if (!in_undefined_item) fail("Item Delimitation " + hex_tag(h.tag) + " outside an item", h);
        return;
      }
      if ((h.tag >> 16) == 0xFFFE) fail("unexpected item tag " + hex_tag(h.tag) + " in a dataset", h);
      if (top && sink && !image_sized_ && h.tag > tags::kPixelRepresentation) size_image();
      if (top && h.tag == tags::kPixelData) {
        if (probe_) {
          *probe_ = {true, r_.pos(), h.length};
          return;
        }
        pixel_data(h);
        if (!keep_) return;
        continue;
      }
      if (sink) out_.memory.charge(MemoryBudget::kHeaderElementBytes, "the header's elements");
      Element element;
      element.tag = h.tag;
      std::memcpy(element.vr, h.vr, 3);
      bool undefined = h.length == kUndefinedLength;
      bool is_sq = std::strcmp(h.vr, "SQ") == 0 || (!explicit_vr_ && undefined);
      if (undefined && std::strcmp(h.vr, "UN") == 0 && explicit_vr_) {
        // PS3.5 6.2.2 note: UN of undefined length holds a sequence in implicit VR LE.
        ImplicitScope scope(*this);
        sequence(h, depth, sink ? &element : nullptr);
      } else if (is_sq) {
        sequence(h, depth, sink ? &element : nullptr);
      } else if (undefined && h.tag == tags::kPixelData) {  // e.g. an icon's, PS3.5 A.4
        std::vector<ByteSpan> fragments;
        encapsulated_items(h, fragments);
      } else if (undefined) {
        fail("undefined length on " + hex_tag(h.tag) + " with VR " + h.vr, h);
      } else {
        element.value = r_.take(h.length);
        if (top && is_wanted(h.tag)) out_.attributes[h.tag] = element.value;
        if (!explicit_vr_ && sink) element.is_sequence = looks_like_sequence(element, depth);
      }
      if (sink) sink->push_back(std::move(element));
    }
    if (r_.pos() != end) fail("element runs past the end of its item or file");
    if (in_undefined_item)
      throw DicomTruncatedError("item of undefined length has no Item Delimitation (at byte " +
                                std::to_string(r_.pos()) + ")");
  }

 private:
  // Elements come in tag order (PS3.5 7.1), so past (0028,0103) the Image Pixel module has
  // described the image: the automatic memory limit grows with it before the rest of a
  // large header (an enhanced multi-frame's per-frame groups, say) is charged. Only a kept
  // header is charged per element; pixel decoding sizes the image in plan_decode.
  void size_image() {
    image_sized_ = true;
    try {
      out_.memory.set_image_bytes(pixel_spec_from(out_).output_bytes());
    } catch (const DicomLimitError&) {
      throw;
    } catch (const DicomFormatError&) {
      // Not an image, or not a valid one: the floor of the limit applies.
    }
  }

  // PS3.5 6.2.2: the content of an undefined-length UN is implicit VR little endian.
  struct ImplicitScope {
    explicit ImplicitScope(DatasetParser& p)
        : p_(p), explicit_(p.explicit_vr_), little_(p.r_.little_endian()) {
      p.explicit_vr_ = false;
      p.r_.set_little_endian(true);
    }
    ~ImplicitScope() {
      p_.explicit_vr_ = explicit_;
      p_.r_.set_little_endian(little_);
    }
    DatasetParser& p_;
    bool explicit_, little_;
  };

  [[noreturn]] void fail(const std::string& what, const ElementHeader& h) const {
    throw DicomFormatError(what + " (element at byte " + std::to_string(h.offset) + ")");
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw DicomFormatError(what + " (at byte " + std::to_string(r_.pos()) + ")");
  }

  // PS3.5 7.1.1-7.1.3 (explicit VR), 7.1.3 (implicit VR), 7.5 (item tags carry no VR).
  ElementHeader header() {
    ElementHeader h;
    h.offset = r_.pos();
    uint16_t group = r_.u16(), elem = r_.u16();
    h.tag = uint32_t(group) << 16 | elem;
    if (group == 0xFFFE || !explicit_vr_) {
      h.length = r_.u32();
      return h;
    }
    ByteSpan vr = r_.take(2);
    if (!is_vr(vr.data)) {
      fail("invalid VR '" + printable(std::string(vr.data, vr.data + 2)) + "' for " + hex_tag(h.tag) +
               " in an explicit VR transfer syntax", h);
    }
    h.vr[0] = char(vr.data[0]);
    h.vr[1] = char(vr.data[1]);
    if (has_long_length(h.vr)) {
      r_.skip(2);
      h.length = r_.u32();
    } else {
      h.length = r_.u16();
    }
    return h;
  }

  // PS3.5 7.5: a sequence is items of defined or undefined length; the sequence itself
  // has a defined length or ends with a Sequence Delimitation Item.
  void sequence(const ElementHeader& h, int depth, Element* element) {
    bool undefined = h.length == kUndefinedLength;
    if (element) element->is_sequence = true;
    if (!undefined && !element) {  // nothing inside is needed: jump over it
      r_.skip(h.length);
      return;
    }
    size_t end = undefined ? r_.size() : r_.pos() + r_.take(h.length).size;
    if (!undefined) r_.seek(end - h.length);
    while (r_.pos() < end) {
      ElementHeader item = header();
      if (item.tag == kSequenceDelimitation) {
        if (!undefined) fail("Sequence Delimitation inside a sequence of defined length", item);
        return;
      }
      if (item.tag != kItem) fail("expected an Item tag in " + hex_tag(h.tag) + ", found " + hex_tag(item.tag), item);
      std::vector<Element>* items = nullptr;
      if (element) {
        out_.memory.charge(MemoryBudget::kHeaderElementBytes, "the header's sequence items");
        items = &element->items.emplace_back();
      }
      if (item.length == kUndefinedLength) {
        dataset(end, depth + 1, items, true);
      } else {
        size_t item_end = r_.pos() + r_.take(item.length).size;
        r_.seek(item_end - item.length);
        dataset(item_end, depth + 1, items, false);
      }
    }
    if (undefined)
      throw DicomTruncatedError("sequence " + hex_tag(h.tag) + " has no Sequence Delimitation (element at byte " +
                                std::to_string(h.offset) + ")");
    if (r_.pos() != end) fail("items run past the end of sequence " + hex_tag(h.tag), h);
  }

  // Implicit VR carries no "SQ": a defined-length value that parses as items is a sequence.
  // The items sit at `depth` + 1, like those of any sequence at `depth`, and a limit hit
  // inside them rejects the file rather than the guess.
  bool looks_like_sequence(Element& element, int depth) {
    if (element.value.size < 8 || load_u32(element.value.data, true) != 0xE000FFFE) return false;
    ByteReader sub(element.value.data, element.value.size, true);
    DatasetParser nested(sub, false, true, out_);
    ElementHeader h;
    h.tag = element.tag;
    h.length = uint32_t(element.value.size);
    uint64_t in_use = out_.memory.used();
    try {
      nested.sequence(h, depth, &element);
      return true;
    } catch (const DicomLimitError&) {
      throw;
    } catch (const DicomFormatError&) {
      element.items.clear();
      out_.memory.release(out_.memory.used() - in_use);
      return false;
    }
  }

  // PS3.5 A.4: encapsulated Pixel Data has undefined length and holds items: first the
  // Basic Offset Table, then one or more fragments, then a Sequence Delimitation Item.
  void pixel_data(const ElementHeader& h) {
    PixelDataLocation& px = out_.pixels;
    px.present = true;
    std::memcpy(px.vr, h.vr, 3);
    if (h.length != kUndefinedLength) {
      px.value = r_.take(h.length);
      return;
    }
    px.encapsulated = true;
    encapsulated_items(h, px.fragments);
    ByteSpan table = px.fragments.front();
    px.fragments.erase(px.fragments.begin());
    if (table.size % 4) fail("Basic Offset Table length " + std::to_string(table.size) + " is not a multiple of 4", h);
    for (size_t i = 0; i < table.size; i += 4) px.basic_offsets.push_back(load_u32(table.data + i, true));
  }

  void encapsulated_items(const ElementHeader& h, std::vector<ByteSpan>& items) {
    while (true) {
      ElementHeader item = header();
      if (item.tag == kSequenceDelimitation) break;
      if (item.tag != kItem) fail("expected an Item in encapsulated Pixel Data, found " + hex_tag(item.tag), item);
      if (item.length == kUndefinedLength) fail("fragment of undefined length in encapsulated Pixel Data", item);
      out_.memory.charge(sizeof(ByteSpan), "the fragment list");
      items.push_back(r_.take(item.length));
    }
    if (items.empty()) fail("encapsulated Pixel Data has no Basic Offset Table item", h);
  }

  ByteReader& r_;
  bool explicit_vr_;
  bool keep_;
  ParsedDicom& out_;
  PixelDataProbe* probe_;
  bool image_sized_ = false;
};

// A bare dataset (no preamble) must start with a plausible element: PS3.5 7.1 orders
// elements by tag, and real datasets open with group 0002 (meta) or 0008.
bool looks_like_dataset(const uint8_t* data, size_t size) {
  if (size < 8) return false;
  uint16_t group_le = load_u16(data, true), group_be = load_u16(data, false);
  return (group_le >= 0x0002 && group_le <= 0x0028 && group_le % 2 == 0) || group_be == 0x0008;
}

// With no Transfer Syntax UID, the first element tells the encoding (PS3.5 7.1): an
// explicit VR has two letters after the tag; a big-endian group reads small that way.
TransferSyntax guess_syntax(const uint8_t* p, size_t remaining) {
  if (remaining < 8) throw DicomFormatError("dataset too short to tell its transfer syntax");
  bool explicit_vr = is_vr(p + 4);
  bool big = load_u16(p, true) > 0x00FF && load_u16(p, false) <= 0x00FF;
  if (big) return transfer_syntax_from_uid("1.2.840.10008.1.2.2");
  return transfer_syntax_from_uid(explicit_vr ? "1.2.840.10008.1.2.1" : "1.2.840.10008.1.2");
}

// PS3.10 7.1: the File Meta Information is group 0002, explicit VR little endian.
void parse_file_meta(ByteReader& r, ParsedDicom& out, bool keep_header, std::string& ts_uid) {
  std::vector<Element>* sink = keep_header ? &out.header : nullptr;
  size_t meta_end = r.size();
  while (const uint8_t* p = r.peek(8)) {
    if (load_u16(p, true) != 0x0002 || r.pos() >= meta_end) break;
    uint32_t tag = 0x00020000u | load_u16(p + 2, true);
    ByteReader element(r.data(), r.size(), true);
    element.seek(r.pos() + 4);
    Element e;
    e.tag = tag;
    if (is_vr(p + 4)) {
      element.skip(2);
      e.vr[0] = char(p[4]);
      e.vr[1] = char(p[5]);
      uint32_t length;
      if (has_long_length(e.vr)) {
        element.skip(2);
        length = element.u32();
      } else {
        length = element.u16();
      }
      e.value = element.take(length);
    } else {  // some writers put implicit VR in the meta group; read it as such
      e.value = element.take(element.u32());
    }
    r.seek(element.pos());
    // (0002,0000) Group Length bounds the meta group, so a deflated stream that happens
    // to begin with bytes 02 00 is not read as meta.
    if (tag == 0x00020000 && e.value.size == 4) meta_end = r.pos() + load_u32(e.value.data, true);
    if (tag == tags::kTransferSyntaxUID) {
      ts_uid = text_value(e.value);
      out.attributes[tag] = e.value;
    }
    if (sink) {
      out.memory.charge(MemoryBudget::kHeaderElementBytes, "the header's elements");
      sink->push_back(std::move(e));
    }
  }
}

// Some writers declare one VR encoding and use the other. Explicit VR puts two letters
// after the tag (PS3.5 7.1.2), implicit VR the low bytes of a length (7.1.3); like
// pydicom, trust what the first element shows.
bool body_is_explicit_vr(const ByteReader& body, const TransferSyntax& syntax) {
  const uint8_t* p = body.peek(6);
  return p ? is_vr(p + 4) : syntax.explicit_vr;
}

// Trailing elements after Pixel Data (padding, signatures) that a deflated dataset may hold.
constexpr uint64_t kDeflateMargin = uint64_t(4) << 20;

// Parses the inflated prefix up to the top-level Pixel Data element. Returns the most the
// whole dataset may inflate to: the prefix, plus what the image attributes justify for the
// pixel value (one frame of slack for padding), plus kDeflateMargin; unbounded (~0) while
// the prefix does not reach Pixel Data. Other format errors in the prefix are thrown.
uint64_t justified_inflated_size(ByteSpan prefix, const TransferSyntax& syntax, MemoryBudget& memory,
                                 std::string& justification) {
  ParsedDicom probe;
  probe.syntax = syntax;
  PixelDataProbe pixels;
  ByteReader body(prefix.data, prefix.size, syntax.little_endian);
  DatasetParser parser(body, body_is_explicit_vr(body, syntax), false, probe, &pixels);
  try {
    parser.dataset(body.size(), 0, nullptr, false);
  } catch (const DicomTruncatedError&) {
    return ~uint64_t(0);
  }
  if (!pixels.found) return ~uint64_t(0);
  uint64_t value = pixels.length;
  justification = "its Pixel Data element's length";
  if (pixels.length == kUndefinedLength) return ~uint64_t(0);  // encapsulated: not a native image
  try {
    PixelSpec spec = pixel_spec_from(probe);
    memory.set_image_bytes(spec.output_bytes());
    // Stored bytes never exceed decoded bytes (1-bit and YBR_FULL_422 data store fewer).
    uint64_t image = spec.output_bytes() + spec.output_bytes() / spec.frames;
    if (image < value) {
      value = image;
      justification = std::to_string(spec.rows) + " rows x " + std::to_string(spec.columns) + " columns x " +
                      std::to_string(spec.samples) + " samples x " + std::to_string(spec.frames) + " frames x " +
                      std::to_string(spec.bits_allocated) + " bits";
    }
  } catch (const DicomLimitError&) {
    throw;
  } catch (const DicomFormatError&) {
    // No valid image attributes: the element's own length is all the header offers.
  }
  return pixels.value_offset + value + kDeflateMargin;
}

// PS3.5 A.5: inflates in doubling steps until the prefix reaches Pixel Data, then no
// further than the header justifies, so a deflate bomb fails after little output.
InflatedBytes inflate_dataset(ByteSpan compressed, const TransferSyntax& syntax, MemoryBudget& memory) {
  RawInflater inflater(compressed, memory);
  uint64_t bound = ~uint64_t(0);
  std::string justification;
  // The buffer's growth is charged to `memory`: the steps stop at its limit.
  for (size_t step = 1 << 16; !inflater.finished() && bound == ~uint64_t(0); step *= 2) {
    inflater.inflate_to(step);
    if (!inflater.finished()) bound = justified_inflated_size(inflater.output(), syntax, memory, justification);
  }
  if (!inflater.finished()) {
    inflater.inflate_to(size_t(std::min<uint64_t>(bound + 1, ~size_t(0))));
    if (!inflater.finished())
      throw DicomFormatError("deflated dataset inflates past " + std::to_string(inflater.output().size) +
                             " bytes, more than " + justification + " justifies (" + std::to_string(bound) +
                             " bytes with the header and a " + std::to_string(kDeflateMargin >> 20) +
                             " MiB margin): a deflate bomb or a corrupt stream");
  }
  return inflater.take_output();
}

}  // namespace

TransferSyntax transfer_syntax_from_uid(const std::string& uid) {
  TransferSyntax ts;
  ts.uid = uid;
  if (uid == "1.2.840.10008.1.2") {
    ts.explicit_vr = false;
  } else if (uid == "1.2.840.10008.1.2.1") {
  } else if (uid == "1.2.840.10008.1.2.1.99") {
    ts.deflated = true;
  } else if (uid == "1.2.840.10008.1.2.2") {
    ts.little_endian = false;
  } else if (uid == "1.2.840.10008.1.2.5") {
    ts.encapsulated = ts.rle = true;
  } else if (uid.rfind("1.2.840.10008.1.2.4.", 0) == 0 || uid == "1.2.840.10008.1.2.1.98" ||
             uid.rfind("1.2.840.10008.1.2.8.", 0) == 0) {
    // JPEG, JPEG-LS, JPEG 2000, HTJ2K, MPEG, encapsulated uncompressed, deflated frames:
    // explicit VR little endian datasets with encapsulated pixel data (PS3.5 A.4).
    ts.encapsulated = true;
  } else {
    throw DicomFormatError("unknown Transfer Syntax UID '" + printable(uid) + "'");
  }
  return ts;
}

ParsedDicom parse_dicom(const uint8_t* data, size_t size, bool keep_header, uint64_t memory_limit) {
  ParsedDicom out;
  out.memory = MemoryBudget(memory_limit);
  ByteReader r(data, size, true);
  // PS3.10 7.1: a 128-byte preamble, then "DICM".
  if (size >= 132 && std::memcmp(data + 128, "DICM", 4) == 0) {
    r.seek(132);
  } else if (!looks_like_dataset(data, size)) {
    throw DicomFormatError("not DICOM: no 'DICM' magic at byte 128 and no data element at byte 0");
  }
  std::string ts_uid;
  parse_file_meta(r, out, keep_header, ts_uid);
  if (ts_uid.empty()) {
    const uint8_t* p = r.peek(8);
    out.syntax = guess_syntax(p ? p : data, p ? 8 : 0);
    out.syntax_guessed = true;
  } else {
    out.syntax = transfer_syntax_from_uid(ts_uid);
  }

  ByteReader body = r;
  if (out.syntax.deflated) {
    out.inflated = inflate_dataset(r.take(r.remaining()), out.syntax, out.memory);
    body = ByteReader(out.inflated.data(), out.inflated.size(), true);
  }
  body.set_little_endian(out.syntax.little_endian);
  DatasetParser parser(body, body_is_explicit_vr(body, out.syntax), keep_header, out);
  parser.dataset(body.size(), 0, keep_header ? &out.header : nullptr, false);
  return out;
}

}  // namespace megamed
