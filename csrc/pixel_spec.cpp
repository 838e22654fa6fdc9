#include "pixel_spec.h"

#include "attributes.h"
#include "dicom_values.h"

namespace megamed {

namespace {

const ByteSpan* find(const ParsedDicom& parsed, uint32_t tag) {
  auto it = parsed.attributes.find(tag);
  return it == parsed.attributes.end() || it->second.size == 0 ? nullptr : &it->second;
}

uint32_t required_us(const ParsedDicom& parsed, uint32_t tag, const char* keyword) {
  const ByteSpan* value = find(parsed, tag);
  if (!value) throw DicomFormatError(std::string("missing ") + keyword + " (required by PS3.3 C.7.6.3)");
  return unsigned_short_value(*value, parsed.syntax.little_endian, keyword);
}

[[noreturn]] void invalid(const char* keyword, long long value, const char* rule) {
  throw DicomFormatError(std::string(keyword) + " is " + std::to_string(value) + ", " + rule);
}

template <typename U>
void apply_unused_bits(const PixelSpec& spec, uint8_t* data, uint64_t count) {
  UnusedBits<U> bits = unused_bits<U>(spec);
  if (bits.identity()) return;
  U* p = reinterpret_cast<U*>(data);
  for (uint64_t i = 0; i < count; ++i) p[i] = bits(p[i]);
}

}  // namespace

std::vector<int64_t> PixelSpec::shape() const {
  std::vector<int64_t> s;
  if (frames > 1) s.push_back(frames);
  s.push_back(rows);
  s.push_back(columns);
  if (samples > 1) s.push_back(samples);
  return s;
}

PixelSpec pixel_spec_from(const ParsedDicom& parsed) {
  PixelSpec s;
  s.rows = required_us(parsed, tags::kRows, "Rows");
  s.columns = required_us(parsed, tags::kColumns, "Columns");
  s.samples = required_us(parsed, tags::kSamplesPerPixel, "SamplesPerPixel");
  s.bits_allocated = required_us(parsed, tags::kBitsAllocated, "BitsAllocated");
  s.bits_stored = required_us(parsed, tags::kBitsStored, "BitsStored");
  s.pixel_representation = required_us(parsed, tags::kPixelRepresentation, "PixelRepresentation");
  const ByteSpan* photometric = find(parsed, tags::kPhotometricInterpretation);
  if (!photometric) throw DicomFormatError("missing PhotometricInterpretation (required by PS3.3 C.7.6.3)");
  s.photometric = text_value(*photometric);
  // Number of Frames is Type 1 only in multi-frame IODs; absent or 0 means one frame.
  if (const ByteSpan* frames = find(parsed, tags::kNumberOfFrames)) {
    long long n = integer_value(*frames, "NumberOfFrames");
    if (n < 0 || n > 0x7FFFFFFF) invalid("NumberOfFrames", n, "expected 1 or more");
    s.frames = n == 0 ? 1 : uint32_t(n);
  }
  if (s.rows == 0) invalid("Rows", 0, "expected 1 or more");
  if (s.columns == 0) invalid("Columns", 0, "expected 1 or more");
  if (s.samples != 1 && s.samples != 3) invalid("SamplesPerPixel", s.samples, "expected 1 or 3");
  // PS3.5 8.1.1: Bits Allocated is 1 or a multiple of 8.
  uint32_t ba = s.bits_allocated;
  if (ba != 1 && ba != 8 && ba != 16 && ba != 32 && ba != 64)
    invalid("BitsAllocated", s.bits_allocated, "expected 1, 8, 16, 32 or 64");
  if (s.bits_stored < 1 || s.bits_stored > s.bits_allocated)
    invalid("BitsStored", s.bits_stored, "expected 1 to BitsAllocated");
  if (s.pixel_representation > 1) invalid("PixelRepresentation", s.pixel_representation, "expected 0 or 1");
  // PS3.3 C.7.6.3.1.2: every YBR model has three samples; YBR_FULL_422 shares chroma between
  // pixel pairs, which needs whole-byte samples (pydicom refuses 1-bit YBR too).
  if (s.photometric.rfind("YBR_", 0) == 0 && s.samples != 3)
    invalid("SamplesPerPixel", s.samples, ("expected 3 for " + printable(s.photometric)).c_str());
  if (s.photometric == "YBR_FULL_422" && s.bits_allocated == 1)
    invalid("BitsAllocated", 1, "expected 8 or more for YBR_FULL_422");
  // Sizes are computed in 64 bits: keep every product of the attributes far below 2^64.
  if (s.samples_per_frame() * s.item_size() > (uint64_t(1) << 62) / s.frames)
    throw DicomFormatError(std::to_string(s.frames) + " frames of " + std::to_string(s.rows) + " x " +
                           std::to_string(s.columns) + " x " + std::to_string(s.samples) +
                           " samples describe more than 2^62 bytes");
  if (s.samples == 3) {
    if (const ByteSpan* planar = find(parsed, tags::kPlanarConfiguration))
      s.planar_configuration = unsigned_short_value(*planar, parsed.syntax.little_endian, "PlanarConfiguration");
    else if (!parsed.syntax.encapsulated)
      throw DicomFormatError("missing PlanarConfiguration (Type 1 when SamplesPerPixel is 3, PS3.3 C.7.6.3)");
    if (s.planar_configuration > 1) invalid("PlanarConfiguration", s.planar_configuration, "expected 0 or 1");
  }
  return s;
}

void correct_unused_bits(const PixelSpec& spec, uint8_t* samples, uint64_t count) {
  switch (spec.bits_allocated) {
    case 1: break;  // one bit stored in one bit allocated
    case 8: apply_unused_bits<uint8_t>(spec, samples, count); break;
    case 16: apply_unused_bits<uint16_t>(spec, samples, count); break;
    case 32: apply_unused_bits<uint32_t>(spec, samples, count); break;
    default: apply_unused_bits<uint64_t>(spec, samples, count); break;
  }
}

}  // namespace megamed
