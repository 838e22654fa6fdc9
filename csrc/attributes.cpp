#include "attributes.h"

#include <algorithm>

namespace megamed {

const std::vector<WantedAttribute>& wanted_attributes() {
  using K = AttributeKind;
  static const std::vector<WantedAttribute> table = {
      {0x00020010, "TransferSyntaxUID", K::kText},
      {0x00080016, "SOPClassUID", K::kText},
      {0x00080018, "SOPInstanceUID", K::kText},
      {0x00080060, "Modality", K::kText},
      {0x00180050, "SliceThickness", K::kDecimal},
      {0x0020000D, "StudyInstanceUID", K::kText},
      {0x0020000E, "SeriesInstanceUID", K::kText},
      {0x00200032, "ImagePositionPatient", K::kDecimals},
      {0x00200037, "ImageOrientationPatient", K::kDecimals},
      {0x00200052, "FrameOfReferenceUID", K::kText},
      {0x00280002, "SamplesPerPixel", K::kUnsignedShort},
      {0x00280004, "PhotometricInterpretation", K::kText},
      {0x00280006, "PlanarConfiguration", K::kUnsignedShort},
      {0x00280008, "NumberOfFrames", K::kInteger},
      {0x00280010, "Rows", K::kUnsignedShort},
      {0x00280011, "Columns", K::kUnsignedShort},
      {0x00280030, "PixelSpacing", K::kDecimals},
      {0x00280100, "BitsAllocated", K::kUnsignedShort},
      {0x00280101, "BitsStored", K::kUnsignedShort},
      {0x00280102, "HighBit", K::kUnsignedShort},
      {0x00280103, "PixelRepresentation", K::kUnsignedShort},
      {0x00280301, "BurnedInAnnotation", K::kText},
      {0x00281050, "WindowCenter", K::kDecimals},
      {0x00281051, "WindowWidth", K::kDecimals},
      {0x00281052, "RescaleIntercept", K::kDecimal},
      {0x00281053, "RescaleSlope", K::kDecimal},
      // Not returned to Python: they only locate RLE frames (PS3.5 A.4, Table A.4-1).
      {0x7FE00001, nullptr, K::kText},
      {0x7FE00002, nullptr, K::kText},
  };
  return table;
}

bool is_wanted(uint32_t tag) {
  uint16_t group = uint16_t(tag >> 16);
  if (group != 0x0002 && group != 0x0008 && group != 0x0018 && group != 0x0020 &&
      group != 0x0028 && group != 0x7FE0)
    return false;  // most elements: no search
  const auto& table = wanted_attributes();
  auto it = std::lower_bound(table.begin(), table.end(), tag,
                             [](const WantedAttribute& a, uint32_t t) { return a.tag < t; });
  return it != table.end() && it->tag == tag;
}

}  // namespace megamed
