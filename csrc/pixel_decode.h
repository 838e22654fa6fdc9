// Pixel decoding in two steps, so the caller can allocate the output between them: plan
// (checks everything against the attributes, allocates nothing large) and run (writes the
// output, touches no Python object, so it runs with the GIL released).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "dicom_parse.h"
#include "pixel_spec.h"

namespace megamed {

struct DecodePlan {
  PixelSpec spec;
  bool jpeg_lossless = false;                  // else RLE, for encapsulated Pixel Data
  std::vector<ByteSpan> frames;                // RLE / JPEG Lossless: one encoded frame each
  std::vector<std::vector<uint8_t>> joined;    // RLE frames that spanned several fragments
};

// Checks that there is Pixel Data to decode; returns no plan for encapsulated syntaxes other
// than RLE Lossless and JPEG Lossless (JPEG-LS, JPEG 2000, JPEG baseline, ...), which are
// not decoded here.
std::optional<DecodePlan> plan_decode(const ParsedDicom& parsed);

// Fills `out` (plan.spec.output_bytes()); returns the output's photometric interpretation.
std::string run_decode(const ParsedDicom& parsed, const DecodePlan& plan, uint8_t* out);

}  // namespace megamed
