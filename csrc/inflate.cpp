#include "inflate.h"

#include <zlib.h>

#include <algorithm>
#include <string>

namespace megamed {

std::vector<uint8_t> inflate_raw(ByteSpan compressed) {
  z_stream stream{};
  // Negative window bits: a raw stream, as PS3.5 A.5 specifies (no zlib header).
  if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) throw DicomFormatError("zlib: inflateInit2 failed");
  std::vector<uint8_t> out(compressed.size * 4 + 4096);
  size_t produced = 0, consumed = 0;
  int status = Z_OK;
  while (true) {
    if (produced == out.size()) out.resize(out.size() * 2);
    // zlib counts in uInt; feed and drain in chunks that fit.
    size_t in_chunk = std::min<size_t>(compressed.size - consumed, 1u << 30);
    size_t out_chunk = std::min<size_t>(out.size() - produced, 1u << 30);
    stream.next_in = const_cast<Bytef*>(compressed.data + consumed);
    stream.avail_in = uInt(in_chunk);
    stream.next_out = out.data() + produced;
    stream.avail_out = uInt(out_chunk);
    status = inflate(&stream, Z_NO_FLUSH);
    consumed += in_chunk - stream.avail_in;
    produced += out_chunk - stream.avail_out;
    if (status == Z_STREAM_END) break;
    if (status == Z_OK || (status == Z_BUF_ERROR && stream.avail_out == 0)) continue;
    break;  // corrupt data, or the input ended before the stream did
  }
  std::string message = stream.msg ? stream.msg : "";
  inflateEnd(&stream);
  if (status != Z_STREAM_END)
    throw DicomFormatError("deflated dataset is corrupt or truncated (zlib status " +
                           std::to_string(status) + (message.empty() ? "" : ": " + message) +
                           ") after " + std::to_string(consumed) + " of " +
                           std::to_string(compressed.size) + " bytes");
  out.resize(produced);
  return out;
}

}  // namespace megamed
