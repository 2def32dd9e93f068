// Internal to identify.cc: a set of candidate encoders re-encoding one member
// and compared with its compressed bytes (identify.h describes the method).
#ifndef COFFERLAYER_CANDIDATES_H_
#define COFFERLAYER_CANDIDATES_H_

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "encoders.h"
#include "identify.h"  // RecordedSegments

namespace cofferlayer::internal {

class MemberMatcher {
 public:
  // queue: the specs to try, best first; wave: how many run at once;
  // replay_limit: plain bytes kept so that a later wave can start from byte 0.
  // cp_interval > 0: go-flate candidates at levels with checkpoints record
  // them (and search hints) as they encode; the winner's come with Finish.
  MemberMatcher(std::vector<EncoderSpec> queue, size_t wave, size_t replay_limit,
                uint64_t cp_interval = 0);

  void AddCompressed(std::string_view bytes);
  void AddPlain(std::string_view bytes);
  struct Winner {
    EncoderSpec spec;
    RecordedSegments segments;  // empty unless recorded
  };
  // End of the member: the first candidate that reproduced it, if any.
  std::optional<Winner> Finish();
  // True when no candidate is left and none can start: Finish will fail.
  bool exhausted() const { return !AnyAlive() && (queue_.empty() || !replay_ok_); }
  // For a failure report: the tried candidates and where each diverged.
  const std::string& report() const { return report_; }

 private:
  struct Candidate {
    EncoderSpec spec;
    std::unique_ptr<Encoder> enc;
    // Heap-held: the encoder appends to it and the Candidate moves.
    std::unique_ptr<RecordedSegments> recorded;
    uint64_t matched = 0;  // compressed bytes confirmed equal
    std::string pending;   // output not yet compared
    bool dead = false;
  };

  void StartWaves();
  void Feed(Candidate& c, std::string_view plain);
  void Compare(Candidate& c, std::string out);
  void Kill(Candidate& c, const std::string& why);
  bool AnyAlive() const;
  void Trim();

  std::deque<EncoderSpec> queue_;
  size_t wave_size_, replay_limit_;
  uint64_t cp_interval_;
  std::vector<Candidate> wave_;
  std::string comp_;  // compressed bytes [comp_base_, comp_base_ + size)
  uint64_t comp_base_ = 0, comp_total_ = 0;
  std::string plain_;  // the member's plain prefix, while replay_ok_
  uint64_t plain_total_ = 0;
  bool replay_ok_ = true;
  std::string report_;
};

}  // namespace cofferlayer::internal

#endif  // COFFERLAYER_CANDIDATES_H_
