#include "pixel_decode.h"

#include <cstring>

#include "encapsulation.h"
#include "jpeg_lossless.h"
#include "native.h"
#include "rle.h"

namespace megamed {

namespace {

// PS3.5 A.4.1: JPEG Lossless, Non-Hierarchical (Process 14), and its selection value 1 form.
bool is_jpeg_lossless(const std::string& uid) {
  return uid == "1.2.840.10008.1.2.4.57" || uid == "1.2.840.10008.1.2.4.70";
}

// PS3.5 A.3 (Explicit VR Big Endian): an OW value is a stream of 16-bit words, so 8-bit
// samples written as OW arrive with each byte pair swapped.
bool swapped_ow_pairs(const ParsedDicom& parsed, const PixelSpec& spec) {
  return !parsed.syntax.little_endian && spec.bits_allocated == 8 && std::strcmp(parsed.pixels.vr, "OW") == 0;
}

}  // namespace

std::optional<DecodePlan> plan_decode(const ParsedDicom& parsed) {
  const PixelDataLocation& px = parsed.pixels;
  if (!px.present) throw DicomFormatError("no Pixel Data element (7FE0,0010) in the dataset");
  bool jpeg_lossless = is_jpeg_lossless(parsed.syntax.uid);
  if (parsed.syntax.encapsulated && !parsed.syntax.rle && !jpeg_lossless) return std::nullopt;
  if (px.encapsulated != parsed.syntax.encapsulated)
    throw DicomFormatError(std::string("Pixel Data is ") + (px.encapsulated ? "encapsulated" : "native") +
                           " but the transfer syntax " + parsed.syntax.uid + " is " +
                           (parsed.syntax.encapsulated ? "encapsulated" : "native") + " (PS3.5 A.4)");
  DecodePlan plan;
  plan.spec = pixel_spec_from(parsed);
  plan.jpeg_lossless = jpeg_lossless;
  parsed.memory.set_image_bytes(plan.spec.output_bytes());
  if (!px.encapsulated) {
    check_native_length(plan.spec, px.value.size);
    parsed.memory.charge(native_scratch_bytes(plan.spec, swapped_ow_pairs(parsed, plan.spec)), "decoding scratch");
    parsed.memory.charge(plan.spec.output_bytes(), "the decoded array");
    return plan;
  }
  std::vector<std::vector<ByteSpan>> frames = split_frames(parsed, plan.spec.frames);
  plan.joined.resize(frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    if (frames[i].size() > 1) {
      uint64_t bytes = 0;
      for (const ByteSpan& f : frames[i]) bytes += f.size;
      parsed.memory.charge(bytes, "joining a frame's fragments");
    }
    plan.frames.push_back(join_fragments(frames[i], plan.joined[i]));
    if (jpeg_lossless) check_jpeg_lossless_frame(plan.spec, plan.frames.back(), uint32_t(i));
    else check_rle_frame(plan.spec, plan.frames.back(), uint32_t(i));
  }
  // JPEG Lossless decodes a frame into 16-bit planes before writing the output.
  if (jpeg_lossless) parsed.memory.charge(plan.spec.samples_per_frame() * 2, "JPEG Lossless scratch");
  parsed.memory.charge(plan.spec.output_bytes(), "the decoded array");
  return plan;
}

std::string run_decode(const ParsedDicom& parsed, const DecodePlan& plan, uint8_t* out) {
  const PixelSpec& spec = plan.spec;
  if (!parsed.pixels.encapsulated) {
    return decode_native(spec, parsed.pixels.value, parsed.syntax.little_endian, swapped_ow_pairs(parsed, spec), out);
  }
  uint64_t frame_bytes = spec.samples_per_frame() * spec.item_size();
  for (size_t i = 0; i < plan.frames.size(); ++i) {
    if (plan.jpeg_lossless) decode_jpeg_lossless_frame(spec, plan.frames[i], uint32_t(i), out + i * frame_bytes);
    else decode_rle_frame(spec, plan.frames[i], uint32_t(i), out + i * frame_bytes);
  }
  return spec.photometric;
}

}  // namespace megamed
