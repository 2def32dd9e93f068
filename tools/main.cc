// coffer: the command-line entry point. See docs/cli.md.
#include <CLI/CLI.hpp>

#include "commands.h"
#include "fs/mount.h"

int main(int argc, char** argv) {
  cofferfs::EnableLayerBlobs();  // `cat`, `restore`... read blobs stored as layers too
  coffer::Globals g;
  int rc = coffer::kExitOk;
  CLI::App app{"coffer: a deduplicating, encrypted store for container hosts"};
  app.set_version_flag("--version", "coffer 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--repo", g.repo, "repository directory (default: $COFFER_REPO)");
  app.add_option("--passphrase-file", g.passphrase_file, "read the passphrase from this file");
  app.add_option("--key-file", g.key_file, "unlock with this key file's contents");
  app.add_flag("--json", g.json, "machine-readable output on stdout");
  app.add_flag("-q,--quiet", g.quiet, "no progress display");
  app.add_option("--audit-log", g.audit_log,
                 "append audit events here (default: $COFFER_AUDIT_LOG)");
  app.add_option("--lock-wait", g.lock_wait,
                 "seconds to wait for another writer to finish (default 0: fail at once)");
  coffer::AddRepoCommands(app, g, &rc);
  coffer::AddDataCommands(app, g, &rc);
  coffer::AddFsCommands(app, g, &rc);
  coffer::AddServeCommand(app, g, &rc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return coffer::kExitUsage;
  }
  return rc;
}
