// Raw deflate (RFC 1951) for the Deflated Explicit VR Little Endian syntax (PS3.5 A.5).
#pragma once

#include <cstdint>
#include <vector>

#include "byte_reader.h"

namespace megamed {

// Inflates a raw deflate stream (no zlib or gzip wrapper, PS3.5 A.5). Throws
// DicomFormatError for a corrupt or truncated stream.
std::vector<uint8_t> inflate_raw(ByteSpan compressed);

}  // namespace megamed
