// libFuzzer target: token recipes (fs/layer/tokens.h) on hostile input.
// Byte 0 picks the mode:
//  even: the rest is a raw DEFLATE stream, fed in pieces of 1 + byte 1 bytes.
//        If the analyzer accepts it and zlib inflates it, the writer, given
//        the frames and zlib's plain bytes, must re-create the stream exactly.
//  odd:  the rest is a token frame, written against fixed plain data: any
//        result but a crash, a hang or a non-Corruption error is a bug.
// Must never crash or hang.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tokens.h"

namespace {

using cofferlayer::Result;
using cofferlayer::Status;

// zlib's reading of a raw DEFLATE stream; false if it refuses it.
bool Inflate(std::string_view in, std::string* out) {
  z_stream z{};
  if (inflateInit2(&z, -15) != Z_OK) return false;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    char buf[65536];
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out->append(buf, sizeof buf - z.avail_out);
    if (out->size() > (64u << 20)) break;
  }
  const bool ok = rc == Z_STREAM_END && z.avail_in == 0;
  inflateEnd(&z);
  return ok;
}

Status Write(const std::vector<std::string>& frames, std::string_view plain, std::string* out) {
  auto enc = cofferlayer::NewTokenEncoder(
      frames.size(), [&](size_t i) -> Result<std::string> { return frames.at(i); });
  Status st = enc->Write(plain, out);
  return st.ok() ? enc->Finish(out) : st;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  if (data[0] & 1) {
    std::string plain(70000, 'a');
    for (size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<char>("abcab\n"[i % 6]);
    std::string out;
    Status st = Write({std::string(in)}, plain, &out);
    if (!st.ok() && st.code() != chunkstore::Code::kCorruption) abort();
    return 0;
  }
  const size_t piece = 1 + data[1];
  cofferlayer::TokenAnalyzer a;
  std::vector<std::string> frames;
  Status st;
  for (size_t i = 0; i < in.size() && st.ok(); i += piece) {
    st = a.Feed(in.substr(i, piece));
    for (std::string& f : a.TakeFrames()) frames.push_back(std::move(f));
  }
  if (st.ok()) st = a.Finish();
  for (std::string& f : a.TakeFrames()) frames.push_back(std::move(f));
  if (!st.ok()) {
    if (st.code() != chunkstore::Code::kCorruption) abort();
    return 0;
  }
  std::string plain, out;
  // The analyzer may accept what zlib refuses (an incomplete Huffman code):
  // then there is no plain data to check against.
  if (!Inflate(in, &plain)) return 0;
  if (plain.size() != a.plain_size()) abort();
  if (!Write(frames, plain, &out).ok() || out != in) abort();
  return 0;
}
