// JPEG Lossless, non-hierarchical, Huffman coded (ITU-T T.81 Annex H, process 14): the DICOM
// transfer syntaxes JPEG Lossless (1.2.840.10008.1.2.4.57) and JPEG Lossless SV1 (.70).
// Selection values 1-7, precision 2-16 bits, 1 or 3 components (interleaved in one scan or
// one scan each), point transform, restart intervals.
#pragma once

#include <cstdint>

#include "byte_reader.h"
#include "pixel_spec.h"

namespace megamed {

// Checks a frame's markers up to its first scan against the attributes before any output is
// allocated: SOI, a lossless SOF3 whose size, components and precision agree with Rows,
// Columns, Samples per Pixel and Bits Allocated, and enough entropy-coded bytes to hold
// Rows x Columns x Samples (each sample costs at least one Huffman-coded bit).
void check_jpeg_lossless_frame(const PixelSpec& spec, ByteSpan frame, uint32_t index);

// Decodes one frame into `out` (spec.samples_per_frame() samples of spec.item_size() bytes,
// interleaved, native byte order): the reconstructed values shifted left by the point
// transform, as T.81 H.2.1 defines the decoder's output.
void decode_jpeg_lossless_frame(const PixelSpec& spec, ByteSpan frame, uint32_t index, uint8_t* out);

}  // namespace megamed
