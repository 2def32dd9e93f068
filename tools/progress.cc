#include "progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>

namespace coffer {

std::string HumanBytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

ProgressBar::ProgressBar(bool enabled)
    : enabled_(enabled && isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(const chunkstore::Progress& p) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  drawn_ = true;
  double secs = std::chrono::duration<double>(now - start_).count();
  std::string rate = secs > 0 ? HumanBytes(static_cast<uint64_t>(p.bytes_done / secs)) + "/s" : "";
  char head[160];
  if (p.items_total)
    std::snprintf(head, sizeof head, "%s %llu/%llu, %s, %s ", p.phase.c_str(),
                  (unsigned long long)p.items_done, (unsigned long long)p.items_total,
                  HumanBytes(p.bytes_done).c_str(), rate.c_str());
  else
    std::snprintf(head, sizeof head, "%s %llu, %s, %s ", p.phase.c_str(),
                  (unsigned long long)p.items_done, HumanBytes(p.bytes_done).c_str(), rate.c_str());
  struct winsize ws {};
  int width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 80;
  std::string line = head;
  uint64_t total = p.bytes_total ? p.bytes_total : p.items_total;
  uint64_t done = p.bytes_total ? p.bytes_done : p.items_done;
  int bar = width - static_cast<int>(line.size()) - 3;
  if (total && bar >= 10) {
    int fill = static_cast<int>(bar * std::min<double>(1.0, double(done) / double(total)));
    line += "[" + std::string(fill, '#') + std::string(bar - fill, '.') + "]";
  } else if (!p.current.empty() && bar > 10) {
    std::string c = p.current;
    if (static_cast<int>(c.size()) > bar) c = "…" + c.substr(c.size() - bar + 1);
    line += c;
  }
  if (static_cast<int>(line.size()) > width - 1) line.resize(width - 1);
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
}

void ProgressBar::Finish() {
  if (enabled_ && drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

}  // namespace coffer
