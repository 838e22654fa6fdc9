// Conversions of element values (PS3.5 6.2 value representations) used by the decoder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "byte_reader.h"

namespace megamed {

// `text` with every byte outside printable ASCII replaced by '?', for error messages that
// quote the file (they become Python str, which must not fail to decode).
std::string printable(const std::string& text);

// PS3.5 6.2: text values are padded to even length with a trailing space (UI: a NUL);
// leading spaces are insignificant for CS, DS, IS.
std::string text_value(ByteSpan value);

// DS (PS3.5 6.2, Table 6.2-1): backslash-separated decimal strings (PS3.5 6.4 multiplicity).
std::vector<double> decimal_values(ByteSpan value, const char* keyword);

// IS: a decimal integer string.
long long integer_value(ByteSpan value, const char* keyword);

// US: an unsigned 16-bit binary value in the syntax's byte order (first value of a VM > 1).
uint16_t unsigned_short_value(ByteSpan value, bool little_endian, const char* keyword);

}  // namespace megamed
