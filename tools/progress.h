// A one-line progress display on stderr for long terminal work: redrawn at most
// ten times a second, sized to the terminal, silent when stderr is not a tty or
// when --json/--quiet asked for machine output.
#ifndef COFFER_TOOLS_PROGRESS_H_
#define COFFER_TOOLS_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "chunkstore/store.h"

namespace coffer {

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void Update(const chunkstore::Progress& p);
  void Finish();  // clears the line
  chunkstore::ProgressFn Fn() {
    return [this](const chunkstore::Progress& p) { Update(p); };
  }

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

std::string HumanBytes(uint64_t n);

}  // namespace coffer

#endif  // COFFER_TOOLS_PROGRESS_H_
