#include "inflate.h"

#include <zlib.h>

#include <algorithm>
#include <string>

namespace megamed {

struct RawInflater::Stream {
  z_stream z{};
};

RawInflater::RawInflater(ByteSpan compressed, MemoryBudget& memory)
    : stream_(new Stream), in_(compressed), memory_(memory) {
  // Negative window bits: a raw stream, as PS3.5 A.5 specifies (no zlib header).
  if (inflateInit2(&stream_->z, -MAX_WBITS) != Z_OK) throw DicomFormatError("zlib: inflateInit2 failed");
}

RawInflater::~RawInflater() { inflateEnd(&stream_->z); }

// Doubles the buffer, at most to `size`: a short stream with a large allowance stays small.
void RawInflater::grow(size_t size) {
  size_t next = std::min(size, std::max<size_t>({out_.size() * 2, in_.size * 2, 1 << 16}));
  memory_.charge(next - out_.size(), "the inflated dataset");
  out_.resize(next);
}

void RawInflater::inflate_to(size_t size) {
  z_stream& z = stream_->z;
  int status = Z_OK;
  while (!finished_ && produced_ < size) {
    if (produced_ == out_.size()) grow(size);
    // zlib counts in uInt; feed and drain in chunks that fit.
    size_t in_chunk = std::min<size_t>(in_.size - consumed_, 1u << 30);
    size_t out_chunk = std::min<size_t>(out_.size() - produced_, 1u << 30);
    z.next_in = const_cast<Bytef*>(in_.data + consumed_);
    z.avail_in = uInt(in_chunk);
    z.next_out = out_.data() + produced_;
    z.avail_out = uInt(out_chunk);
    status = inflate(&z, Z_NO_FLUSH);
    consumed_ += in_chunk - z.avail_in;
    produced_ += out_chunk - z.avail_out;
    if (status == Z_STREAM_END) finished_ = true;
    else if (status != Z_OK && !(status == Z_BUF_ERROR && z.avail_out == 0)) break;
  }
  if (finished_ || produced_ >= size) return;
  // Corrupt data, or the input ended before the stream did.
  std::string message = z.msg ? z.msg : "";
  throw DicomFormatError("deflated dataset is corrupt or truncated (zlib status " + std::to_string(status) +
                         (message.empty() ? "" : ": " + message) + ") after " + std::to_string(consumed_) +
                         " of " + std::to_string(in_.size) + " bytes");
}

InflatedBytes RawInflater::take_output() {
  out_.resize(produced_);
  return std::move(out_);
}

}  // namespace megamed
