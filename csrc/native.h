// Native (uncompressed) pixel data: PS3.5 8.1.1 (bit packing, Bits Stored), 8.2 (native
// format), PS3.3 C.7.6.3.1.3 (Planar Configuration), C.7.6.3.1.2 (YBR_FULL_422).
#pragma once

#include <cstdint>

#include "byte_reader.h"
#include "pixel_spec.h"

namespace megamed {

// Checks that `value_size` bytes hold exactly the frames the attributes describe (a
// trailing pad of less than one frame is allowed, PS3.5 8.1.1 / 7.1.1 even length).
void check_native_length(const PixelSpec& spec, uint64_t value_size);

// Bytes decode_native allocates besides `out`: a byte-swapped copy for OW pairs, the
// stored samples of YBR_FULL_422 or the planes of Planar Configuration 1.
uint64_t native_scratch_bytes(const PixelSpec& spec, bool swap_ow_pairs);

// Decodes into `out` (spec.output_bytes(), samples interleaved, native byte order).
// `swap_ow_pairs`: 8-bit data written as OW in big endian has each byte pair swapped
// (PS3.5 8.1.1: OW is a stream of 16-bit words). Returns the photometric interpretation of
// the output: "YBR_FULL" once YBR_FULL_422 is upsampled, else the input's.
std::string decode_native(const PixelSpec& spec, ByteSpan value, bool little_endian,
                          bool swap_ow_pairs, uint8_t* out);

}  // namespace megamed
