#include "candidates.h"

#include <algorithm>

#include "identify.h"  // kMaxLagBytes

namespace cofferlayer::internal {
namespace {
constexpr size_t kReplayPiece = 256 * 1024;
}

MemberMatcher::MemberMatcher(std::vector<EncoderSpec> queue, size_t wave, size_t replay_limit,
                             uint64_t cp_interval)
    : queue_(queue.begin(), queue.end()),
      wave_size_(std::max<size_t>(1, wave)),
      replay_limit_(replay_limit),
      cp_interval_(cp_interval) {
  StartWaves();
}

bool MemberMatcher::AnyAlive() const {
  return std::any_of(wave_.begin(), wave_.end(), [](const Candidate& c) { return !c.dead; });
}

void MemberMatcher::Kill(Candidate& c, const std::string& why) {
  c.dead = true;
  c.enc.reset();
  c.recorded.reset();
  c.pending.clear();
  c.pending.shrink_to_fit();
  report_ += (report_.empty() ? "" : "; ") + c.spec.ToString() + ": " + why;
}

// Starts waves until one has a live candidate after replaying the buffered
// plain prefix (or nothing is left to try).
void MemberMatcher::StartWaves() {
  while (!AnyAlive() && !queue_.empty() && replay_ok_) {
    wave_.clear();
    while (wave_.size() < wave_size_ && !queue_.empty()) {
      Candidate c;
      c.spec = queue_.front();
      queue_.pop_front();
      if (cp_interval_ > 0 && c.spec.id == EncoderId::kGoFlate &&
          GoFlateWriter::SupportsCheckpoints(c.spec.level)) {
        c.recorded = std::make_unique<RecordedSegments>();
        c.enc = NewCheckpointingGoFlate(c.spec.level, cp_interval_, &c.recorded->checkpoints,
                                        &c.recorded->hints);
      } else {
        auto enc = NewEncoder(c.spec);
        if (!enc.ok()) {
          report_ += (report_.empty() ? "" : "; ") + enc.status().message();
          continue;
        }
        c.enc = std::move(enc).value();
      }
      wave_.push_back(std::move(c));
    }
    std::string_view p(plain_);
    while (!p.empty() && AnyAlive()) {
      std::string_view piece = p.substr(0, kReplayPiece);
      p.remove_prefix(piece.size());
      for (Candidate& c : wave_) {
        if (!c.dead) Feed(c, piece);
      }
    }
  }
}

void MemberMatcher::Feed(Candidate& c, std::string_view plain) {
  std::string out;
  Status s = c.enc->Write(plain, &out);
  if (!s.ok()) return Kill(c, s.message());
  Compare(c, std::move(out));
}

void MemberMatcher::Compare(Candidate& c, std::string out) {
  if (c.pending.empty()) {
    c.pending = std::move(out);
  } else {
    c.pending += out;
  }
  size_t n = static_cast<size_t>(std::min<uint64_t>(c.pending.size(), comp_total_ - c.matched));
  if (n == 0) return;
  const char* expect = comp_.data() + (c.matched - comp_base_);
  auto [a, b] = std::mismatch(c.pending.data(), c.pending.data() + n, expect);
  if (a != c.pending.data() + n) {
    return Kill(c, "differs at byte " + std::to_string(c.matched + (a - c.pending.data())));
  }
  c.matched += n;
  c.pending.erase(0, n);
  if (c.pending.size() > kMaxLagBytes) Kill(c, "runs too far ahead of the stream");
}

void MemberMatcher::AddCompressed(std::string_view bytes) {
  comp_.append(bytes);
  comp_total_ += bytes.size();
  for (Candidate& c : wave_) {
    if (!c.dead && !c.pending.empty()) Compare(c, {});
  }
  Trim();
}

void MemberMatcher::AddPlain(std::string_view bytes) {
  if (replay_ok_ && plain_.size() + bytes.size() > replay_limit_) {
    replay_ok_ = false;  // later waves can no longer start from byte 0
    plain_.clear();
    plain_.shrink_to_fit();
  }
  if (replay_ok_) plain_.append(bytes);
  plain_total_ += bytes.size();
  for (Candidate& c : wave_) {
    if (!c.dead) Feed(c, bytes);
  }
  if (!AnyAlive()) StartWaves();
  Trim();
}

// Drops compressed bytes every live candidate has confirmed, once no later
// wave can need them; a candidate trailing by more than kMaxLagBytes is dropped.
void MemberMatcher::Trim() {
  if (replay_ok_) return;
  uint64_t low = comp_total_;
  for (Candidate& c : wave_) {
    if (c.dead) continue;
    if (comp_total_ - c.matched > kMaxLagBytes) {
      Kill(c, "trails the stream by more than the lag limit");
      continue;
    }
    low = std::min(low, c.matched);
  }
  if (low - comp_base_ >= (1u << 20) || low == comp_total_) {
    comp_.erase(0, low - comp_base_);
    comp_base_ = low;
  }
}

std::optional<MemberMatcher::Winner> MemberMatcher::Finish() {
  for (;;) {
    for (Candidate& c : wave_) {
      if (c.dead) continue;
      std::string out;
      Status s = c.enc->Finish(&out);
      if (!s.ok()) {
        Kill(c, s.message());
        continue;
      }
      Compare(c, std::move(out));
      if (c.dead) continue;
      if (!c.pending.empty()) {
        Kill(c, "output longer than the original");
      } else if (c.matched != comp_total_) {
        Kill(c, "output ends at byte " + std::to_string(c.matched) + " of " +
                    std::to_string(comp_total_));
      } else {
        Winner w{c.spec, {}};
        if (c.recorded) w.segments = std::move(*c.recorded);
        return w;
      }
    }
    if (queue_.empty() || !replay_ok_) {
      if (!queue_.empty()) report_ += "; " + std::to_string(queue_.size()) + " more not tried";
      return std::nullopt;
    }
    StartWaves();
  }
}

}  // namespace cofferlayer::internal
