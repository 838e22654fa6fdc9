#include "rle.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace megamed {

namespace {

constexpr size_t kHeaderBytes = 64;  // G.5: 16 little-endian 32-bit values
constexpr uint32_t kMaxSegments = 15;

struct Segments {
  uint32_t count = 0;
  uint64_t begin[kMaxSegments] = {};
  uint64_t end[kMaxSegments] = {};
};

[[noreturn]] void bad_frame(uint32_t index, const std::string& what) {
  throw DicomFormatError("RLE frame " + std::to_string(index) + ": " + what);
}

Segments read_header(const PixelSpec& spec, ByteSpan frame, uint32_t index) {
  if (spec.bits_allocated % 8)
    bad_frame(index, "BitsAllocated " + std::to_string(spec.bits_allocated) + " cannot be RLE encoded (G.2 needs whole bytes)");
  if (frame.size < kHeaderBytes) bad_frame(index, std::to_string(frame.size) + " bytes, shorter than the 64-byte RLE header");
  Segments s;
  s.count = load_u32(frame.data, true);
  // G.2: one segment per byte of each sample, most significant byte first.
  uint32_t expected = spec.samples * (spec.bits_allocated / 8);
  if (s.count != expected || s.count > kMaxSegments)
    bad_frame(index, "header lists " + std::to_string(s.count) + " segments, SamplesPerPixel x BitsAllocated/8 needs " +
                         std::to_string(expected) + " (at most 15)");
  for (uint32_t i = 0; i < s.count; ++i) s.begin[i] = load_u32(frame.data + 4 + 4 * i, true);
  for (uint32_t i = 0; i < s.count; ++i) {
    s.end[i] = i + 1 < s.count ? s.begin[i + 1] : frame.size;
    if (s.begin[i] < kHeaderBytes || s.begin[i] > s.end[i] || s.end[i] > frame.size)
      bad_frame(index, "segment " + std::to_string(i) + " offset " + std::to_string(s.begin[i]) +
                           " is out of order or outside the " + std::to_string(frame.size) + "-byte frame");
  }
  return s;
}

// G.3.1: a header byte n in [0, 127] copies the next n + 1 bytes literally; n in
// [-127, -1] repeats the next byte 1 - n times; -128 is a no-op. Fills `count` bytes at
// `stride` apart; returns how many the segment held.
uint64_t decode_segment(const uint8_t* in, const uint8_t* in_end, uint8_t* out, uint64_t count, uint64_t stride) {
  uint64_t written = 0;
  while (in < in_end && written < count) {
    int8_t n = int8_t(*in++);
    if (n >= 0) {
      uint64_t available = std::min<uint64_t>(uint64_t(n) + 1, uint64_t(in_end - in));
      uint64_t run = std::min(available, count - written);
      if (stride == 1) {
        std::memcpy(out + written, in, run);
      } else {
        for (uint64_t i = 0; i < run; ++i) out[(written + i) * stride] = in[i];
      }
      in += available;
      written += run;
    } else if (n != -128) {
      if (in == in_end) break;
      uint64_t run = std::min<uint64_t>(uint64_t(1 - n), count - written);
      uint8_t value = *in++;
      if (stride == 1) {
        std::memset(out + written, value, run);
      } else {
        for (uint64_t i = 0; i < run; ++i) out[(written + i) * stride] = value;
      }
      written += run;
    }
  }
  return written;
}

}  // namespace

void check_rle_frame(const PixelSpec& spec, ByteSpan frame, uint32_t index) {
  Segments s = read_header(spec, frame, index);
  for (uint32_t i = 0; i < s.count; ++i) {
    uint64_t most = (s.end[i] - s.begin[i]) / 2 * 128 + (s.end[i] - s.begin[i]) % 2 * 128;
    if (most < spec.pixels_per_frame())
      bad_frame(index, "segment " + std::to_string(i) + " has " + std::to_string(s.end[i] - s.begin[i]) +
                           " bytes, too few for " + std::to_string(spec.pixels_per_frame()) + " pixels");
  }
}

void decode_rle_frame(const PixelSpec& spec, ByteSpan frame, uint32_t index, uint8_t* out) {
  Segments s = read_header(spec, frame, index);
  const uint64_t item = spec.bits_allocated / 8;
  const uint64_t stride = spec.samples * item;
  const uint64_t pixels = spec.pixels_per_frame();
  for (uint32_t i = 0; i < s.count; ++i) {
    uint64_t sample = i / item, byte = i % item;  // segment i: sample i / item, byte `byte` from the MSB
    uint64_t offset = sample * item + (item - 1 - byte);  // into a little-endian sample
    uint64_t got = decode_segment(frame.data + s.begin[i], frame.data + s.end[i], out + offset, pixels, stride);
    if (got < pixels)
      bad_frame(index, "segment " + std::to_string(i) + " decodes to " + std::to_string(got) +
                           " bytes, Rows x Columns needs " + std::to_string(pixels));
  }
  correct_unused_bits(spec, out, spec.samples_per_frame());
}

}  // namespace megamed
