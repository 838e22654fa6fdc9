#include "jpeg_lossless.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

namespace megamed {

namespace {

// Markers (T.81 Table B.1).
constexpr uint8_t kSOI = 0xD8, kEOI = 0xD9, kSOS = 0xDA, kDHT = 0xC4, kDRI = 0xDD, kDNL = 0xDC;
constexpr uint8_t kSOF3 = 0xC3, kRST0 = 0xD0, kRST7 = 0xD7;
constexpr int kFastBits = 11;

// F.2.2.1 EXTEND: the difference that `ssss` extra bits `v` code (T.81 Table H.2).
inline int32_t extend(int32_t v, int ssss) { return v < (1 << (ssss - 1)) ? v - (1 << ssss) + 1 : v; }

[[noreturn]] void fail(uint32_t index, const std::string& what) {
  throw DicomFormatError("JPEG Lossless frame " + std::to_string(index) + ": " + what);
}

// A Huffman table for the difference categories SSSS (T.81 Annex C, F.2.2.3).
struct HuffmanTable {
  bool defined = false;
  uint8_t count = 0;                                       // number of codes
  // Indexed by the next kFastBits bits. `length` 0: a code longer than kFastBits. Else
  // `resolved`: code and extra bits fit, `length` covers both and `diff` is the difference;
  // otherwise `length` covers the code and `ssss` is the category.
  struct Fast {
    int32_t diff;
    uint8_t length, ssss;
    bool resolved;
  };
  std::array<Fast, 1 << kFastBits> fast{};
  std::array<int32_t, 17> max_code{}, min_code{}, value_at{};
  std::array<uint8_t, 256> values{};
};

void fill_fast(HuffmanTable& t, int32_t code, int length, uint8_t ssss) {
  int extra = ssss == 16 ? 0 : ssss;
  if (ssss <= 16 && length + extra <= kFastBits) {
    int shift = kFastBits - length - extra;
    for (int32_t v = 0; v < (1 << extra); ++v) {
      int32_t first = ((code << extra) | v) << shift;
      int32_t diff = ssss == 0 ? 0 : ssss == 16 ? 32768 : extend(v, ssss);
      for (int j = 0; j < (1 << shift); ++j) t.fast[first + j] = {diff, uint8_t(length + extra), ssss, true};
    }
    return;
  }
  int shift = kFastBits - length;
  for (int j = 0; j < (1 << shift); ++j) t.fast[(code << shift) + j] = {0, uint8_t(length), ssss, false};
}

// T.81 C.2 (code generation) and F.2.2.3 (MAXCODE / MINCODE / VALPTR).
void build_table(HuffmanTable& t, const uint8_t* lengths, const uint8_t* values, uint32_t index) {
  t = HuffmanTable{};
  int32_t code = 0, k = 0;
  for (int length = 1; length <= 16; ++length) {
    int n = lengths[length - 1];
    // More codes than `length` bits can tell apart: no prefix code has these lengths.
    if (code + n > (1 << length)) fail(index, "bad Huffman table: more codes of length " + std::to_string(length) + " than the code space holds");
    t.value_at[length] = k;
    t.min_code[length] = code;
    for (int i = 0; i < n; ++i, ++code, ++k) {
      t.values[k] = values[k];
      if (length <= kFastBits) fill_fast(t, code, length, values[k]);
    }
    t.max_code[length] = n ? code - 1 : -1;
    code <<= 1;
  }
  t.count = uint8_t(k);
  t.defined = true;
}

struct Component {
  uint8_t id = 0, table = 0;
};

struct Frame {
  uint32_t precision = 0, lines = 0, columns = 0;
  std::vector<Component> components;
};

// Entropy-coded bits of one scan (T.81 F.1.2.3: a 0xFF data byte is followed by a stuffed
// 0x00). Past a marker or the end, zero bits are supplied and counted, so running past the
// real data is detected by `overrun` instead of read out of bounds.
class BitReader {
 public:
  BitReader(const uint8_t* at, const uint8_t* end) : at_(at), end_(end) {}

  void fill() {
    // Fast path: eight bytes ahead hold no 0xFF (no stuffing, no marker), take them whole.
    if (end_ - at_ >= 8) {
      uint64_t word;
      std::memcpy(&word, at_, 8);
      uint64_t inverted = ~word;  // a zero byte here is a 0xFF byte in the data
      if (!((inverted - 0x0101010101010101ULL) & ~inverted & 0x8080808080808080ULL)) {
        int take = (64 - bits_) >> 3;
        acc_ |= (__builtin_bswap64(word) >> (64 - 8 * take)) << (64 - bits_ - 8 * take);
        at_ += take;
        bits_ += 8 * take;
        return;
      }
    }
    while (bits_ <= 56) {
      uint64_t byte = 0;
      if (at_ < end_ && *at_ != 0xFF) {
        byte = *at_++;
      } else if (at_ + 1 < end_ && at_[1] == 0x00) {
        byte = 0xFF;
        at_ += 2;
      } else {
        padding_ += 8;  // a marker or the end: at_ stays on it
      }
      acc_ |= byte << (56 - bits_);
      bits_ += 8;
    }
  }

  // The next difference (T.81 H.1.2.2): a Huffman-coded category SSSS, then SSSS extra bits.
  int32_t difference(const HuffmanTable& t, uint32_t index) {
    if (bits_ < 32) fill();
    const HuffmanTable::Fast& f = t.fast[acc_ >> (64 - kFastBits)];
    int ssss;
    if (f.length) {
      consume(f.length);
      if (f.resolved) return f.diff;
      ssss = f.ssss;
    } else {
      int length = kFastBits + 1;
      for (; length <= 16; ++length)
        if (int32_t(acc_ >> (64 - length)) <= t.max_code[length]) break;
      if (length > 16) fail(index, "invalid Huffman code in the entropy-coded data");
      ssss = t.values[t.value_at[length] + int32_t(acc_ >> (64 - length)) - t.min_code[length]];
      consume(length);
    }
    if (ssss == 0) return 0;
    if (ssss == 16) return 32768;
    int32_t v = int32_t(acc_ >> (64 - ssss));
    consume(ssss);
    return extend(v, ssss);
  }

  // Bits were taken from the zero padding: the segment ended before the data it encodes.
  bool overrun() const { return padding_ > uint64_t(bits_); }

  // Drops the bits left in the current byte and returns the position of the next marker,
  // skipping fill bytes (T.81 B.1.1.2); nullptr when the data ends first.
  const uint8_t* marker() {
    acc_ = 0;
    bits_ = 0;
    padding_ = 0;
    const uint8_t* p = at_;  // past it: only coded bytes that held no needed bit
    while (p + 1 < end_) {
      if (p[0] != 0xFF) ++p;
      else if (p[1] == 0x00) p += 2;   // a stuffed data byte
      else if (p[1] == 0xFF) ++p;      // a fill byte before the marker
      else return p;
    }
    return nullptr;
  }

  void restart_at(const uint8_t* at) { at_ = at; }

 private:
  void consume(int n) {
    acc_ <<= n;
    bits_ -= n;
  }

  const uint8_t* at_;
  const uint8_t* end_;
  uint64_t acc_ = 0;
  int bits_ = 0;
  uint64_t padding_ = 0;
};

// T.81 Table H.1, with Ra left, Rb above, Rc above-left.
template <int kPredictor>
inline int32_t predict(int32_t ra, int32_t rb, int32_t rc) {
  if constexpr (kPredictor == 1) return ra;
  if constexpr (kPredictor == 2) return rb;
  if constexpr (kPredictor == 3) return rc;
  if constexpr (kPredictor == 4) return ra + rb - rc;
  if constexpr (kPredictor == 5) return ra + ((rb - rc) >> 1);
  if constexpr (kPredictor == 6) return rb + ((ra - rc) >> 1);
  return (ra + rb) >> 1;
}

struct Scan {
  std::vector<int> components;            // frame component indices, in scan order
  std::vector<const HuffmanTable*> tables;
  int predictor = 0, point_transform = 0;
};

// Decodes one scan's samples into `planes` (one row-major plane per frame component).
class ScanDecoder {
 public:
  ScanDecoder(const Frame& frame, const Scan& scan, uint32_t restart_interval, uint32_t index,
              std::vector<std::vector<uint16_t>>& planes)
      : frame_(frame), scan_(scan), restart_(restart_interval), index_(index), planes_(planes) {}

  // Returns the position after the scan's last entropy-coded byte.
  const uint8_t* run(const uint8_t* at, const uint8_t* end) {
    switch (scan_.predictor) {
      case 1: return lines<1>(at, end);
      case 2: return lines<2>(at, end);
      case 3: return lines<3>(at, end);
      case 4: return lines<4>(at, end);
      case 5: return lines<5>(at, end);
      case 6: return lines<6>(at, end);
      default: return lines<7>(at, end);
    }
  }

 private:
  template <int kPredictor>
  const uint8_t* lines(const uint8_t* at, const uint8_t* end) {
    switch (scan_.components.size()) {
      case 1: return lines<kPredictor, 1>(at, end);
      case 2: return lines<kPredictor, 2>(at, end);
      default: return lines<kPredictor, 3>(at, end);
    }
  }

  template <int kPredictor, int kComponents>
  const uint8_t* lines(const uint8_t* at, const uint8_t* end) {
    BitReader bits(at, end);
    const uint32_t height = frame_.lines;
    const int32_t initial = 1 << (frame_.precision - scan_.point_transform - 1);
    uint32_t lines_per_interval = restart_ ? restart_ / frame_.columns : 0;
    uint32_t restarts = 0;
    bool first_line = true;
    for (uint32_t y = 0; y < height; ++y) {
      if (lines_per_interval && y > 0 && y % lines_per_interval == 0) {
        expect_restart(bits, restarts++);
        first_line = true;
      }
      if (first_line) decode_line<1, kComponents>(bits, y, true, initial);
      else decode_line<kPredictor, kComponents>(bits, y, false, initial);
      if (bits.overrun()) fail(index_, "truncated entropy-coded segment: the data ends in line " + std::to_string(y) + " of " + std::to_string(height));
      first_line = false;
    }
    const uint8_t* next = bits.marker();
    return next ? next : end;
  }

  // One line of every component in the scan. The first sample of a line is predicted from
  // above (or `initial` on the first line of the scan or of a restart interval), the first
  // line from the left (predictor 1), the rest with the scan's predictor (T.81 H.1.2.1).
  template <int kPredictor, int kComponents>
  void decode_line(BitReader& bits, uint32_t y, bool first_line, int32_t initial) {
    const uint32_t width = frame_.columns;
    uint16_t* rows[kComponents];
    const uint16_t* above[kComponents];
    const HuffmanTable* tables[kComponents];
    for (int c = 0; c < kComponents; ++c) {
      rows[c] = planes_[scan_.components[c]].data() + size_t(y) * width;
      above[c] = y > 0 ? rows[c] - width : rows[c];
      tables[c] = scan_.tables[c];
    }
    for (int c = 0; c < kComponents; ++c) {
      int32_t prediction = first_line ? initial : above[c][0];
      rows[c][0] = uint16_t(prediction + bits.difference(*tables[c], index_));
    }
    for (uint32_t x = 1; x < width; ++x) {
      for (int c = 0; c < kComponents; ++c) {
        int32_t prediction = predict<kPredictor>(rows[c][x - 1], above[c][x], above[c][x - 1]);
        rows[c][x] = uint16_t(prediction + bits.difference(*tables[c], index_));  // modulo 2^16 (H.2.1)
      }
    }
  }

  void expect_restart(BitReader& bits, uint32_t count) {
    const uint8_t* m = bits.marker();
    uint8_t wanted = uint8_t(kRST0 + count % 8);
    if (!m || m[1] != wanted)
      fail(index_, "expected restart marker RST" + std::to_string(count % 8) + " after " +
                   std::to_string(restart_ * (count + 1)) + " samples" + (m ? "" : ", the data ended"));
    bits.restart_at(m + 2);
  }

  const Frame& frame_;
  const Scan& scan_;
  uint32_t restart_;
  uint32_t index_;
  std::vector<std::vector<uint16_t>>& planes_;
};

// Walks the marker segments of one frame (T.81 B.2). `decode` false stops at the first SOS.
class FrameParser {
 public:
  FrameParser(const PixelSpec& spec, ByteSpan data, uint32_t index) : spec_(spec), reader_(data.data, data.size, false), index_(index) {}

  void header() {
    if (reader_.remaining() < 2 || reader_.u16() != 0xFF00 + kSOI) fail(index_, "does not start with the SOI marker (FFD8)");
    for (;;) {
      uint8_t m = next_marker();
      if (m == kSOS) {
        if (frame_.components.empty()) fail(index_, "markers out of order: SOS before the frame header (SOF3)");
        return;
      }
      segment(m);
    }
  }

  const Frame& frame() const { return frame_; }
  size_t pos() const { return reader_.pos(); }

  void decode(uint8_t* out) {
    header();
    std::vector<std::vector<uint16_t>> planes(frame_.components.size());
    std::vector<bool> decoded(frame_.components.size(), false);
    int point_transform = -1;
    for (;;) {
      Scan scan = scan_header(decoded);
      if (point_transform >= 0 && point_transform != scan.point_transform)
        fail(index_, "scans use different point transforms");
      point_transform = scan.point_transform;
      for (int c : scan.components) planes[c].assign(size_t(frame_.lines) * frame_.columns, 0);
      ScanDecoder decoder(frame_, scan, restart_interval_, index_, planes);
      const uint8_t* end = reader_.data() + reader_.size();
      const uint8_t* next = decoder.run(reader_.data() + reader_.pos(), end);
      reader_.seek(size_t(next - reader_.data()));
      if (std::find(decoded.begin(), decoded.end(), false) == decoded.end()) break;
      uint8_t m;
      while ((m = next_marker()) != kSOS) {
        if (m == kEOI) fail(index_, "EOI before every component was decoded");
        segment(m);
      }
    }
    write(planes, point_transform, out);
  }

 private:
  uint8_t next_marker() {
    if (reader_.remaining() < 2) fail(index_, "truncated: the data ends before the next marker");
    if (reader_.data()[reader_.pos()] != 0xFF) fail(index_, "expected a marker at byte " + std::to_string(reader_.pos()));
    while (reader_.remaining() >= 2 && reader_.data()[reader_.pos() + 1] == 0xFF) reader_.skip(1);
    if (reader_.remaining() < 2) fail(index_, "truncated: the data ends in fill bytes");
    reader_.skip(1);
    return reader_.take(1).data[0];
  }

  ByteReader segment_body() {
    uint16_t length = reader_.u16();
    if (length < 2) fail(index_, "marker segment length " + std::to_string(length) + " is below 2");
    if (length - 2u > reader_.remaining()) fail(index_, "truncated: a marker segment runs past the end of the frame");
    ByteSpan body = reader_.take(length - 2u);
    return ByteReader(body.data, body.size, false);
  }

  void segment(uint8_t m) {
    if (m == kSOF3) return frame_header(segment_body());
    if (m == kDHT) return huffman_tables(segment_body());
    if (m == kDRI) return restart_interval(segment_body());
    if ((m >= 0xE0 && m <= 0xEF) || m == 0xFE || m == 0xDB) { segment_body(); return; }  // APPn, COM, DQT
    if ((m >= 0xC0 && m <= 0xCF) && m != 0xC4 && m != 0xC8 && m != 0xCC)
      fail(index_, "frame marker FF" + hex(m) + " is not the lossless Huffman process (SOF3, FFC3) that this transfer syntax requires");
    if (m == kDNL) fail(index_, "a DNL marker (number of lines after the scan) is not supported");
    if (m == kSOI || m == kEOI || (m >= kRST0 && m <= kRST7)) fail(index_, "markers out of order: FF" + hex(m) + " before the scan");
    segment_body();  // other marker segments (DAC, DHP, EXP, JPG, ...) carry no data used here
  }

  static std::string hex(uint8_t m) {
    const char* digits = "0123456789ABCDEF";
    return {digits[m >> 4], digits[m & 15]};
  }

  void frame_header(ByteReader r) {
    if (!frame_.components.empty()) fail(index_, "markers out of order: a second frame header (SOF)");
    if (r.remaining() < 6) fail(index_, "truncated frame header");
    frame_.precision = r.take(1).data[0];
    frame_.lines = r.u16();
    frame_.columns = r.u16();
    uint32_t n = r.take(1).data[0];
    if (frame_.precision < 2 || frame_.precision > 16) fail(index_, "sample precision " + std::to_string(frame_.precision) + " is outside 2-16 (T.81 Table B.2)");
    if (frame_.lines == 0) fail(index_, "the frame header gives 0 lines (DNL is not supported)");
    if (frame_.lines != spec_.rows || frame_.columns != spec_.columns)
      fail(index_, "frame size " + std::to_string(frame_.columns) + " x " + std::to_string(frame_.lines) +
                   " disagrees with Columns x Rows " + std::to_string(spec_.columns) + " x " + std::to_string(spec_.rows));
    if (n != spec_.samples) fail(index_, std::to_string(n) + " components, SamplesPerPixel is " + std::to_string(spec_.samples));
    if (frame_.precision > 8 * spec_.item_size())
      fail(index_, "sample precision " + std::to_string(frame_.precision) + " bits does not fit BitsAllocated " + std::to_string(spec_.bits_allocated));
    if (r.remaining() < 3 * n) fail(index_, "truncated frame header");
    for (uint32_t i = 0; i < n; ++i) {
      const uint8_t* c = r.take(3).data;
      if (c[1] != 0x11) fail(index_, "component sampling factors other than 1x1 are not supported");
      frame_.components.push_back({c[0], 0});
    }
  }

  void huffman_tables(ByteReader r) {
    while (r.remaining() > 0) {
      if (r.remaining() < 17) fail(index_, "bad Huffman table: truncated DHT segment");
      uint8_t tc_th = r.take(1).data[0];
      const uint8_t* lengths = r.take(16).data;
      uint32_t total = 0;
      for (int i = 0; i < 16; ++i) total += lengths[i];
      if (total > 256 || total > r.remaining()) fail(index_, "bad Huffman table: " + std::to_string(total) + " codes, the segment holds " + std::to_string(r.remaining()));
      if ((tc_th >> 4) > 1 || (tc_th & 15) > 3) fail(index_, "bad Huffman table: class/destination byte " + std::to_string(tc_th));
      const uint8_t* values = r.take(total).data;
      if (tc_th >> 4) continue;  // AC tables are not used by the lossless process
      build_table(tables_[tc_th & 15], lengths, values, index_);
    }
  }

  void restart_interval(ByteReader r) {
    if (r.remaining() != 2) fail(index_, "DRI segment length is not 4");
    restart_interval_ = r.u16();
  }

  Scan scan_header(std::vector<bool>& decoded) {
    ByteReader r = segment_body();
    if (r.remaining() < 1) fail(index_, "truncated scan header");
    uint32_t n = r.take(1).data[0];
    if (n < 1 || n > frame_.components.size() || r.remaining() != 2 * n + 3) fail(index_, "bad scan header (" + std::to_string(n) + " components)");
    Scan scan;
    for (uint32_t i = 0; i < n; ++i) {
      const uint8_t* c = r.take(2).data;
      int found = -1;
      for (size_t k = 0; k < frame_.components.size(); ++k)
        if (frame_.components[k].id == c[0]) found = int(k);
      if (found < 0) fail(index_, "the scan names component " + std::to_string(c[0]) + ", which the frame header does not define");
      if (decoded[found]) fail(index_, "component " + std::to_string(c[0]) + " is coded in two scans");
      decoded[found] = true;
      const HuffmanTable& table = tables_[(c[1] >> 4) & 3];
      if ((c[1] >> 4) > 3 || !table.defined) fail(index_, "markers out of order: the scan uses Huffman table " + std::to_string(c[1] >> 4) + ", which no DHT defined");
      for (int k = 0; k < table.count; ++k)
        if (table.values[k] > 16) fail(index_, "bad Huffman table: difference category " + std::to_string(table.values[k]) + " (expected 0-16)");
      scan.components.push_back(found);
      scan.tables.push_back(&table);
    }
    const uint8_t* tail = r.take(3).data;
    scan.predictor = tail[0];
    scan.point_transform = tail[2] & 15;
    if (scan.predictor < 1 || scan.predictor > 7) fail(index_, "selection value " + std::to_string(scan.predictor) + " is not a lossless predictor (1-7)");
    if (scan.point_transform >= int(frame_.precision)) fail(index_, "point transform " + std::to_string(scan.point_transform) + " leaves no bits of the " + std::to_string(frame_.precision) + "-bit precision");
    if (restart_interval_ % frame_.columns != 0)
      fail(index_, "restart interval " + std::to_string(restart_interval_) + " is not a whole number of " + std::to_string(frame_.columns) + "-sample lines (not supported)");
    return scan;
  }

  void write(const std::vector<std::vector<uint16_t>>& planes, int point_transform, uint8_t* out) const {
    const size_t n = planes.size(), count = size_t(frame_.lines) * frame_.columns;
    if (spec_.item_size() == 1) {
      for (size_t c = 0; c < n; ++c)
        for (size_t i = 0; i < count; ++i) out[i * n + c] = uint8_t(planes[c][i] << point_transform);
    } else {
      uint16_t* o = reinterpret_cast<uint16_t*>(out);
      for (size_t c = 0; c < n; ++c)
        for (size_t i = 0; i < count; ++i) o[i * n + c] = uint16_t(planes[c][i] << point_transform);
    }
  }

  const PixelSpec& spec_;
  ByteReader reader_;
  uint32_t index_;
  Frame frame_;
  std::array<HuffmanTable, 4> tables_{};
  uint32_t restart_interval_ = 0;
};

}  // namespace

void check_jpeg_lossless_frame(const PixelSpec& spec, ByteSpan frame, uint32_t index) {
  if (spec.item_size() > 2) fail(index, "BitsAllocated " + std::to_string(spec.bits_allocated) + " cannot hold JPEG samples (at most 16 bits)");
  FrameParser parser(spec, frame, index);
  parser.header();
  // Every sample costs at least one bit of Huffman code, so the bytes after the scan header
  // bound the image size the data can fill (refused here, before the output is allocated).
  uint64_t coded_bits = 8 * uint64_t(frame.size - parser.pos());
  if (spec.samples_per_frame() > coded_bits)
    fail(index, "truncated entropy-coded segment: " + std::to_string(frame.size - parser.pos()) +
                " bytes are too few for " + std::to_string(spec.samples_per_frame()) + " samples");
}

void decode_jpeg_lossless_frame(const PixelSpec& spec, ByteSpan frame, uint32_t index, uint8_t* out) {
  FrameParser parser(spec, frame, index);
  parser.decode(out);
  // pydicom masks or sign-extends the bits above Bits Stored of every decoded frame too.
  correct_unused_bits(spec, out, spec.samples_per_frame());
}

}  // namespace megamed
