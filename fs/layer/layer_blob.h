// Layers in the repository: re-storing a committed layer blob as its
// uncompressed tar (chunked file by file, so a file's chunks are the same in
// every layer and every backup) plus the recipe that re-creates the pushed
// compressed bytes; and the decoder that turns that form back into the blob.
//
// The blob keeps its digest throughout: chunkstore swaps the stored form
// atomically (Repository::ReplaceBlob), only after the new form was read back
// and re-encoded to exactly the pushed digest. A layer no encoder reproduces
// keeps its pushed bytes. docs/layers.md, "Storing a layer".
#ifndef COFFERLAYER_LAYER_BLOB_H_
#define COFFERLAYER_LAYER_BLOB_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chunkstore/store.h"
#include "decode.h"

namespace cofferlayer {

struct IngestReport {
  enum class Outcome {
    kReplaced,      // stored as tar + recipe (or, for a plain tar, re-chunked by file)
    kKeptAsPushed,  // a layer, but no known encoder reproduces its bytes
    kNotALayer,     // not a tar in any supported compression
    kAlreadyDone,   // already stored in layer form
  } outcome = Outcome::kNotALayer;
  LayerCompression compression = LayerCompression::kTar;
  std::string why;  // for kKeptAsPushed / kNotALayer
  uint64_t blob_bytes = 0, plain_bytes = 0, members = 0;
  // kReplaced: the layer's files as a tree, for /layers/sha256/<diff_id>/ (each
  // file's chunks are the ones its tar member was stored as). In tar order, last
  // member of a path wins; overlayfs whiteouts: `.wh.NAME` becomes a character
  // device 0/0 NAME, `.wh..wh..opq` the xattr trusted.overlay.opaque=y on its
  // directory. Unsafe names and sparse members are left out (`entries_skipped`).
  std::string diff_id;  // "sha256:<hex>" of the uncompressed tar
  std::vector<chunkstore::TreeEntry> entries;
  uint64_t entries_skipped = 0;
};

const char* OutcomeName(IngestReport::Outcome o);

// Re-stores blob `digest` of `repo` in layer form when it is a layer that can be
// reproduced. Errors (I/O, a full disk, `stop` set) leave the blob as it was;
// the chunks written meanwhile are garbage for the next gc. The caller keeps
// those chunks from a concurrent gc (fs: the world-stop lock). `stop` is polled
// between pieces; when it returns true the job ends with Unavailable.
chunkstore::Result<IngestReport> IngestLayer(chunkstore::Repository* repo, std::string_view digest,
                                             const std::function<bool()>& stop = {});

// The chunkstore::BlobDecoderFn for blobs IngestLayer stored: reads re-create
// the compressed bytes from the tar as they are asked for. Sequential reads
// stream (one encoder, a window of recent output); a read before the window
// starts over from the first byte. The last read fails (Corruption naming the
// digest) if the bytes made were not the blob.
// The method behind a stored layer's recipe, for `coffer stats`: "tar" (a plain
// tar, re-chunked), "go-flate", "zlib", "pigz", "gzip(1)", "zstd" (an encoder
// reproduced it), "deflate tokens" (no encoder did; some member is tokens).
std::string LayerEncodingKind(std::string_view encoding);

// How many re-creations DecodeLayerBlob's readers have started (from the first
// byte or a checkpoint) in this process: the cost of pulls of re-stored layers.
uint64_t LayerRebuildsStarted();
// The compressed bytes those re-creations have made.
uint64_t LayerBytesRebuilt();

chunkstore::Result<std::unique_ptr<chunkstore::BlobReader>> DecodeLayerBlob(
    std::string_view digest, uint64_t size, std::string_view encoding,
    std::unique_ptr<chunkstore::BlobReader> stored);

}  // namespace cofferlayer

#endif  // COFFERLAYER_LAYER_BLOB_H_
