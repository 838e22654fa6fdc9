#include "native.h"

#include <cstring>
#include <vector>

namespace megamed {

namespace {

bool is_ybr_422(const PixelSpec& spec) { return spec.photometric == "YBR_FULL_422"; }

// Bytes of one frame as stored; 1-bit frames need not end on a byte boundary.
uint64_t stored_bits_per_frame(const PixelSpec& spec) {
  uint64_t samples = is_ybr_422(spec) ? spec.pixels_per_frame() * 2 : spec.samples_per_frame();
  return samples * spec.bits_allocated;
}

uint64_t stored_bytes(const PixelSpec& spec) {
  return (stored_bits_per_frame(spec) * spec.frames + 7) / 8;
}

inline uint8_t byte_swap(uint8_t v) { return v; }
inline uint16_t byte_swap(uint16_t v) { return __builtin_bswap16(v); }
inline uint32_t byte_swap(uint32_t v) { return __builtin_bswap32(v); }
inline uint64_t byte_swap(uint64_t v) { return __builtin_bswap64(v); }

// Copies `count` samples, swapping bytes for a big-endian source, and applies the
// unused-bits rule in the same pass.
template <typename U>
void load_words(const uint8_t* src, uint64_t count, bool swap, UnusedBits<U> bits, uint8_t* dst) {
  if (!swap && bits.identity()) {
    std::memcpy(dst, src, count * sizeof(U));
    return;
  }
  U* out = reinterpret_cast<U*>(dst);
  for (uint64_t i = 0; i < count; ++i) {
    U v;
    std::memcpy(&v, src + i * sizeof(U), sizeof(U));
    out[i] = bits(swap ? byte_swap(v) : v);
  }
}

// [frame][sample][pixel] -> [frame][pixel][sample] (PS3.3 C.7.6.3.1.3, value 1).
template <typename U>
void interleave_planes(const PixelSpec& spec, const uint8_t* src, uint8_t* dst) {
  const U* in = reinterpret_cast<const U*>(src);
  U* o = reinterpret_cast<U*>(dst);
  uint64_t pixels = spec.pixels_per_frame(), samples = spec.samples;
  for (uint64_t f = 0; f < spec.frames; ++f, in += pixels * samples, o += pixels * samples)
    for (uint64_t s = 0; s < samples; ++s)
      for (uint64_t p = 0; p < pixels; ++p) o[p * samples + s] = in[s * pixels + p];
}

// Y1 Y2 Cb Cr -> Y1 Cb Cr Y2 Cb Cr (PS3.3 C.7.6.3.1.2): two pixels share one chroma pair.
template <typename U>
void upsample_ybr_422(uint64_t pairs, const uint8_t* src, uint8_t* dst) {
  const U* in = reinterpret_cast<const U*>(src);
  U* o = reinterpret_cast<U*>(dst);
  for (uint64_t i = 0; i < pairs; ++i, in += 4, o += 6) {
    o[0] = in[0], o[1] = in[2], o[2] = in[3];
    o[3] = in[1], o[4] = in[2], o[5] = in[3];
  }
}

template <typename U>
void decode_words(const PixelSpec& spec, const uint8_t* src, bool swap, uint8_t* out) {
  UnusedBits<U> bits = unused_bits<U>(spec);
  if (is_ybr_422(spec)) {
    uint64_t pairs = spec.pixels_per_frame() * spec.frames / 2;
    std::vector<uint8_t> stored(pairs * 4 * sizeof(U));
    load_words<U>(src, pairs * 4, swap, bits, stored.data());
    upsample_ybr_422<U>(pairs, stored.data(), out);
  } else if (spec.samples > 1 && spec.planar_configuration == 1) {
    std::vector<uint8_t> planes(spec.output_bytes());
    load_words<U>(src, spec.samples_per_frame() * spec.frames, swap, bits, planes.data());
    interleave_planes<U>(spec, planes.data(), out);
  } else {
    load_words<U>(src, spec.samples_per_frame() * spec.frames, swap, bits, out);
  }
}

// PS3.5 8.1.1: 1-bit pixels are packed eight to a byte, the first pixel in the least
// significant bit; frames follow each other without padding to a byte boundary.
void unpack_bits(const uint8_t* src, uint64_t count, uint8_t* out) {
  for (uint64_t i = 0; i < count; ++i) out[i] = (src[i >> 3] >> (i & 7)) & 1;
}

}  // namespace

void check_native_length(const PixelSpec& spec, uint64_t value_size) {
  if (is_ybr_422(spec)) {
    if (spec.samples != 3) throw DicomFormatError("YBR_FULL_422 with SamplesPerPixel " + std::to_string(spec.samples) + ", expected 3");
    if (spec.pixels_per_frame() * spec.frames % 2)
      throw DicomFormatError("YBR_FULL_422 needs an even number of pixels (PS3.3 C.7.6.3.1.2)");
  }
  uint64_t expected = stored_bytes(spec);
  uint64_t frame_bytes = (stored_bits_per_frame(spec) + 7) / 8;
  std::string described = std::to_string(spec.rows) + " rows x " + std::to_string(spec.columns) +
                          " columns x " + std::to_string(spec.samples) + " samples x " +
                          std::to_string(spec.frames) + " frames x " +
                          std::to_string(spec.bits_allocated) + " bits";
  if (value_size < expected)
    throw DicomFormatError("Pixel Data has " + std::to_string(value_size) + " bytes but " + described +
                           " needs " + std::to_string(expected));
  if (value_size - expected >= frame_bytes && value_size - expected > 1)
    throw DicomFormatError("Pixel Data has " + std::to_string(value_size) + " bytes, at least one frame more than the " +
                           std::to_string(expected) + " that " + described + " needs");
  // What decode_native reads. Equal to `expected` by construction; checked apart so the two
  // can never again disagree unnoticed (they did for 1-bit YBR_FULL_422: 3 samples read, 2 counted).
  uint64_t read_bits = is_ybr_422(spec) ? stored_bits_per_frame(spec) * spec.frames
                                        : spec.samples_per_frame() * spec.frames * spec.bits_allocated;
  if (read_bits > value_size * 8)
    throw DicomFormatError("Pixel Data has " + std::to_string(value_size) + " bytes, the decoder would read " +
                           std::to_string((read_bits + 7) / 8));
}

uint64_t native_scratch_bytes(const PixelSpec& spec, bool swap_ow_pairs) {
  uint64_t bytes = swap_ow_pairs ? stored_bytes(spec) + 1 : 0;
  if (spec.bits_allocated > 1 && (is_ybr_422(spec) || (spec.samples > 1 && spec.planar_configuration == 1)))
    bytes += spec.output_bytes();
  return bytes;
}

std::string decode_native(const PixelSpec& spec, ByteSpan value, bool little_endian,
                          bool swap_ow_pairs, uint8_t* out) {
  check_native_length(spec, value.size);
  const uint8_t* src = value.data;
  std::vector<uint8_t> unswapped;
  if (swap_ow_pairs) {
    uint64_t even = (stored_bytes(spec) + 1) & ~uint64_t(1);
    if (value.size < even) throw DicomFormatError("OW Pixel Data of odd length " + std::to_string(value.size));
    unswapped.resize(even);
    for (uint64_t i = 0; i < even; ++i) unswapped[i] = src[i ^ 1];
    src = unswapped.data();
  }
  bool swap = !little_endian;
  switch (spec.bits_allocated) {
    case 1: unpack_bits(src, spec.samples_per_frame() * spec.frames, out); break;
    case 8: decode_words<uint8_t>(spec, src, false, out); break;
    case 16: decode_words<uint16_t>(spec, src, swap, out); break;
    case 32: decode_words<uint32_t>(spec, src, swap, out); break;
    default: decode_words<uint64_t>(spec, src, swap, out); break;
  }
  return is_ybr_422(spec) ? "YBR_FULL" : spec.photometric;
}

}  // namespace megamed
