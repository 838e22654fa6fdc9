// The Image Pixel module (PS3.3 C.7.6.3) values that shape decoded pixels, validated, and
// the unused-bits rule that native and RLE decoding share (PS3.5 8.1.1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dicom_parse.h"

namespace megamed {

// Decoded samples are written in the host's byte order, and the decoders assume it is
// little endian (x86-64, AArch64).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "megamed._dicom needs a little-endian host");

struct PixelSpec {
  uint32_t rows = 0, columns = 0, samples = 1, frames = 1;
  uint32_t bits_allocated = 0, bits_stored = 0, pixel_representation = 0;
  uint32_t planar_configuration = 0;
  std::string photometric;

  uint64_t pixels_per_frame() const { return uint64_t(rows) * columns; }
  uint64_t samples_per_frame() const { return pixels_per_frame() * samples; }
  // Bytes of one decoded sample: 1-bit data is unpacked to one uint8 per pixel.
  uint32_t item_size() const { return bits_allocated == 1 ? 1 : bits_allocated / 8; }
  bool is_signed() const { return bits_allocated > 1 && pixel_representation == 1; }
  uint64_t output_bytes() const { return samples_per_frame() * frames * item_size(); }
  // [rows, columns], [rows, columns, samples], [frames, rows, columns(, samples)]: pydicom's.
  std::vector<int64_t> shape() const;
};

// Reads and checks the attributes (the same rules as pydicom's decoder). Planar
// Configuration is required only for native 3-sample data; compressed syntaxes ignore it.
PixelSpec pixel_spec_from(const ParsedDicom& parsed);

// PS3.5 8.1.1: bits above Bits Stored carry no pixel value (they may hold overlays). For a
// raw sample v of U's width: unsigned keeps the low Bits Stored bits; signed also replaces
// the high bits with the sign bit: ((v & mask) ^ sign) - sign, in modular arithmetic.
template <typename U>
struct UnusedBits {
  U mask = U(~U(0)), sign = 0;
  bool identity() const { return mask == U(~U(0)); }
  U operator()(U v) const { return U(U((v & mask) ^ sign) - sign); }
};

template <typename U>
UnusedBits<U> unused_bits(const PixelSpec& spec) {
  UnusedBits<U> bits;
  if (spec.bits_stored < 8 * sizeof(U)) {
    bits.mask = U((U(1) << spec.bits_stored) - 1);
    if (spec.is_signed()) bits.sign = U(U(1) << (spec.bits_stored - 1));
  }
  return bits;
}

// Applies UnusedBits in place over `count` native-order samples of spec.item_size() bytes.
void correct_unused_bits(const PixelSpec& spec, uint8_t* samples, uint64_t count);

}  // namespace megamed
