#include "reconstruct.h"

#include <openssl/evp.h>
#include <zlib.h>

#include "encoders.h"

namespace cofferlayer {
namespace {

std::string Hex(const unsigned char* d, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += kHex[d[i] >> 4];
    s += kHex[d[i] & 15];
  }
  return s;
}

uint32_t Le32(std::string_view b, size_t off) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<uint8_t>(b[off + i])) << (8 * i);
  return v;
}

}  // namespace

Reconstructor::Reconstructor(const LayerRecipe& recipe, LayerSink sink)
    : recipe_(recipe), sink_(std::move(sink)) {}
Reconstructor::~Reconstructor() = default;

Status Reconstructor::Emit(std::string_view b) {
  if (b.empty()) return Status::OK();
  out_bytes_ += b.size();
  return sink_(b);
}

Status Reconstructor::BeginMember() {
  const MemberRecipe& m = recipe_.members[member_];
  ASSIGN_OR_RETURN(enc_, NewEncoder(m.encoder));
  in_member_ = true;
  member_in_ = 0;
  crc_ = crc32(0, nullptr, 0);
  return Emit(m.header);
}

// Ends the current member; a gzip trailer is checked against what was fed.
Status Reconstructor::EndMember() {
  const MemberRecipe& m = recipe_.members[member_];
  buf_.clear();
  RETURN_IF_ERROR(enc_->Finish(&buf_));
  RETURN_IF_ERROR(Emit(buf_));
  if (recipe_.compression == LayerCompression::kGzip) {
    if (m.trailer.size() != 8 || Le32(m.trailer, 0) != crc_ ||
        Le32(m.trailer, 4) != static_cast<uint32_t>(m.plain_size)) {
      return Status::Corruption("reconstruct gzip member " + std::to_string(member_) +
                                ": CRC-32 of the uncompressed input differs from the recipe");
    }
  }
  RETURN_IF_ERROR(Emit(m.trailer));
  enc_.reset();
  in_member_ = false;
  ++member_;
  return Status::OK();
}

Status Reconstructor::Feed(std::string_view plain) {
  if (!error_.ok()) return error_;
  auto fail = [&](Status s) { return error_ = std::move(s); };
  while (!plain.empty()) {
    if (!in_member_) {
      if (member_ >= recipe_.members.size()) {
        return fail(Status::InvalidArgument("reconstruct: uncompressed input longer than the " +
                                            std::to_string(recipe_.PlainSize()) +
                                            " bytes the recipe describes"));
      }
      if (Status s = BeginMember(); !s.ok()) return fail(s);
    }
    const MemberRecipe& m = recipe_.members[member_];
    size_t take = static_cast<size_t>(std::min<uint64_t>(plain.size(), m.plain_size - member_in_));
    std::string_view piece = plain.substr(0, take);
    plain.remove_prefix(take);
    member_in_ += take;
    total_in_ += take;
    crc_ =
        crc32(crc_, reinterpret_cast<const Bytef*>(piece.data()), static_cast<uInt>(piece.size()));
    buf_.clear();
    if (Status s = enc_->Write(piece, &buf_); !s.ok()) return fail(s);
    if (Status s = Emit(buf_); !s.ok()) return fail(s);
    if (member_in_ == m.plain_size) {
      if (Status s = EndMember(); !s.ok()) return fail(s);
    }
  }
  return Status::OK();
}

Status Reconstructor::Finish() {
  if (!error_.ok()) return error_;
  // Members that hold no plain bytes are only complete once the input ends.
  while (!in_member_ && member_ < recipe_.members.size() &&
         recipe_.members[member_].plain_size == 0) {
    RETURN_IF_ERROR(error_ = BeginMember());
    RETURN_IF_ERROR(error_ = EndMember());
  }
  if (member_ < recipe_.members.size()) {
    return error_ = Status::InvalidArgument("reconstruct: uncompressed input ended after " +
                                            std::to_string(total_in_) + " of " +
                                            std::to_string(recipe_.PlainSize()) + " bytes");
  }
  return error_ = Emit(recipe_.tail);
}

struct VerifyingReconstructor::Hash {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  uint64_t bytes = 0;
  ~Hash() { EVP_MD_CTX_free(ctx); }
};

VerifyingReconstructor::VerifyingReconstructor(const LayerRecipe& recipe, std::string expected,
                                               LayerSink sink)
    : expected_(std::move(expected)),
      hash_(std::make_unique<Hash>()),
      downstream_(std::move(sink)),
      inner_(recipe, [this](std::string_view b) {
        EVP_DigestUpdate(hash_->ctx, b.data(), b.size());
        hash_->bytes += b.size();
        return downstream_ ? downstream_(b) : Status::OK();
      }) {
  EVP_DigestInit_ex(hash_->ctx, EVP_sha256(), nullptr);
}

VerifyingReconstructor::~VerifyingReconstructor() = default;

Status VerifyingReconstructor::Feed(std::string_view plain) {
  Status s = inner_.Feed(plain);
  return s.ok() ? s : s.Annotate("reconstruct layer " + expected_);
}

Status VerifyingReconstructor::Finish() {
  Status s = inner_.Finish();
  if (!s.ok()) return s.Annotate("reconstruct layer " + expected_);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(hash_->ctx, md, &n);
  std::string got = "sha256:" + Hex(md, n);
  if (got != expected_) {
    return Status::Corruption("reconstruct layer " + expected_ + ": the " +
                              std::to_string(hash_->bytes) + " bytes produced have digest " + got +
                              "; recipe or uncompressed data is wrong");
  }
  return Status::OK();
}

std::string Sha256Digest(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return "sha256:" + Hex(md, n);
}

}  // namespace cofferlayer
