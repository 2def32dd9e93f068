// Shared by the coffer subcommands: global options, unlocking, exit codes, output.
//
// Exit codes (docs/cli.md): 0 success; 1 failure (including damage found by
// check); 2 wrong passphrase or key file; 3 repository busy; 64 usage error.
#ifndef COFFER_TOOLS_CLI_UTIL_H_
#define COFFER_TOOLS_CLI_UTIL_H_

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "chunkstore/store.h"

namespace coffer {

enum ExitCode { kExitOk = 0, kExitFail = 1, kExitBadKey = 2, kExitBusy = 3, kExitUsage = 64 };

struct Globals {
  std::string repo;             // --repo, else $COFFER_REPO
  std::string passphrase_file;  // --passphrase-file
  std::string key_file;         // --key-file
  bool json = false;
  bool quiet = false;
  double lock_wait = 0;   // seconds
  std::string audit_log;  // --audit-log, else $COFFER_AUDIT_LOG; empty: none
};

// Appends an event to the audit log, if one is configured; a failure is reported
// on stderr and does not fail the command it describes.
void Audit(const Globals& g, const std::string& event,
           const std::map<std::string, std::string>& fields);

// Prints "coffer: <message>" (and a JSON error object on stdout with --json);
// returns the exit code for the status.
int Fail(const Globals& g, const chunkstore::Status& st);
int FailMsg(const Globals& g, const std::string& msg, int code = kExitFail);

// The secret from --key-file, --passphrase-file, $COFFER_PASSPHRASE or a tty
// prompt (twice when `confirm`), in that order. *label says which.
chunkstore::Result<std::string> ReadSecret(const Globals& g, bool confirm, std::string* label);
// Reads a secret for a new key: from `file`, else a prompt.
chunkstore::Result<std::string> ReadSecretFile(const std::string& path, bool strip_newline);

chunkstore::Result<std::string> RepoDir(const Globals& g);
chunkstore::Result<std::unique_ptr<chunkstore::Repository>> OpenRepo(const Globals& g,
                                                                     bool read_only);
// Prints a JSON value on stdout (one line).
void PrintJson(const nlohmann::json& j);

// "90", "90s", "500ms", "10m", "2h" -> milliseconds.
chunkstore::Result<uint64_t> ParseDuration(const std::string& s);

}  // namespace coffer

#endif  // COFFER_TOOLS_CLI_UTIL_H_
