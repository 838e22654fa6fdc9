// RLE Lossless (PS3.5 Annex G).
#pragma once

#include <cstdint>

#include "byte_reader.h"
#include "pixel_spec.h"

namespace megamed {

// Checks the RLE header of a frame (G.5) against the attributes before any output is
// allocated: segment count, offsets in order and inside the frame, and enough encoded bytes
// to possibly fill Rows x Columns (a two-byte replicate run yields at most 128 bytes).
void check_rle_frame(const PixelSpec& spec, ByteSpan frame, uint32_t index);

// Decodes one frame into `out` (spec.samples_per_frame() samples, interleaved, native byte
// order), applying the unused-bits rule of PS3.5 8.1.1.
void decode_rle_frame(const PixelSpec& spec, ByteSpan frame, uint32_t index, uint8_t* out);

}  // namespace megamed
