// Frames of encapsulated Pixel Data (PS3.5 A.4): which fragments make up each frame.
#pragma once

#include <cstdint>
#include <vector>

#include "dicom_parse.h"

namespace megamed {

// Returns `frames` lists of fragments, using the Extended Offset Table, else the Basic
// Offset Table, else the fragment count (one fragment per frame, or all fragments for a
// single frame). Throws DicomFormatError when the frame boundaries cannot be told.
std::vector<std::vector<ByteSpan>> split_frames(const ParsedDicom& parsed, uint32_t frames);

// One frame's bytes: the fragment itself, or the fragments joined into `storage`.
ByteSpan join_fragments(const std::vector<ByteSpan>& fragments, std::vector<uint8_t>& storage);

}  // namespace megamed
