// The top-level attributes the data pipeline needs, by tag (PS3.6 data dictionary), and how
// each value is converted for Python.
#pragma once

#include <cstdint>
#include <vector>

namespace megamed {

enum class AttributeKind {
  kUnsignedShort,  // US: an int
  kInteger,        // IS: an int
  kDecimal,        // DS, VM 1: a float
  kDecimals,       // DS, VM 1-n: a list of floats
  kText,           // CS, UI: a str
};

struct WantedAttribute {
  uint32_t tag;
  const char* keyword;  // the PS3.6 keyword, also the key of the Python dict
  AttributeKind kind;
};

// Sorted by tag.
const std::vector<WantedAttribute>& wanted_attributes();

bool is_wanted(uint32_t tag);

namespace tags {
constexpr uint32_t kTransferSyntaxUID = 0x00020010;
constexpr uint32_t kSamplesPerPixel = 0x00280002;
constexpr uint32_t kPhotometricInterpretation = 0x00280004;
constexpr uint32_t kPlanarConfiguration = 0x00280006;
constexpr uint32_t kNumberOfFrames = 0x00280008;
constexpr uint32_t kRows = 0x00280010;
constexpr uint32_t kColumns = 0x00280011;
constexpr uint32_t kBitsAllocated = 0x00280100;
constexpr uint32_t kBitsStored = 0x00280101;
constexpr uint32_t kPixelRepresentation = 0x00280103;
constexpr uint32_t kExtendedOffsetTable = 0x7FE00001;
constexpr uint32_t kExtendedOffsetTableLengths = 0x7FE00002;
constexpr uint32_t kPixelData = 0x7FE00010;
}  // namespace tags

}  // namespace megamed
