// Reconstruction: recipe + uncompressed tar stream -> the compressed layer as
// pushed. Streaming; memory is one encoder state plus one block of output.
//
// VerifyingReconstructor is the only form a server should use: it hashes what
// it emits and its Finish fails with Corruption naming the layer digest when
// the bytes are not the layer. Bytes reach the sink before the digest can be
// known, so a caller that forwards them (an HTTP response) must treat a
// failed Finish as "abort the transfer", never as a complete body; a caller
// that must not expose unverified bytes at all runs it once into a discarding
// sink first (as ingestion does before dropping the compressed copy).
#ifndef COFFERLAYER_RECONSTRUCT_H_
#define COFFERLAYER_RECONSTRUCT_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "recipe.h"

namespace cofferlayer {

// Receives the reconstructed bytes in order (not goflate.h's ByteSink).
using LayerSink = std::function<Status(std::string_view)>;

class Reconstructor {
 public:
  // REQUIRES: recipe and sink outlive the reconstructor.
  Reconstructor(const LayerRecipe& recipe, LayerSink sink);
  ~Reconstructor();
  Reconstructor(const Reconstructor&) = delete;
  Reconstructor& operator=(const Reconstructor&) = delete;

  // The uncompressed stream, in pieces of any size. InvalidArgument when it
  // is longer than the recipe says; Corruption when a gzip member's CRC-32 or
  // size does not match the recipe's trailer (a wrong tar is caught early).
  Status Feed(std::string_view plain);
  // InvalidArgument when the stream was shorter than the recipe says.
  Status Finish();
  uint64_t bytes_out() const { return out_bytes_; }

 private:
  Status BeginMember();
  Status EndMember();
  Status Emit(std::string_view b);

  const LayerRecipe& recipe_;
  LayerSink sink_;
  size_t member_ = 0;
  bool in_member_ = false;
  uint64_t member_in_ = 0, total_in_ = 0, out_bytes_ = 0;
  uint32_t crc_ = 0;
  std::unique_ptr<Encoder> enc_;
  std::string buf_;
  Status error_;
};

// expected_digest: "sha256:<64 hex>", the layer's digest in the manifest.
class VerifyingReconstructor {
 public:
  VerifyingReconstructor(const LayerRecipe& recipe, std::string expected_digest, LayerSink sink);
  ~VerifyingReconstructor();
  Status Feed(std::string_view plain);
  // OK only if the emitted bytes have the expected digest.
  Status Finish();

 private:
  std::string expected_;
  struct Hash;
  std::unique_ptr<Hash> hash_;
  LayerSink downstream_;
  Reconstructor inner_;
};

// "sha256:<hex>" of data (tests, tools).
std::string Sha256Digest(std::string_view data);

}  // namespace cofferlayer

#endif  // COFFERLAYER_RECONSTRUCT_H_
