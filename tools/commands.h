// Registration of the coffer subcommands on the CLI11 app. Each subcommand parses
// its arguments and calls one chunkstore function.
#ifndef COFFER_TOOLS_COMMANDS_H_
#define COFFER_TOOLS_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <optional>

#include "cli_util.h"

namespace coffer {

// Each Add* registers subcommands whose callbacks store their exit code in *rc.
void AddRepoCommands(CLI::App& app, Globals& g, int* rc);  // init key stats check repair gc
void AddDataCommands(CLI::App& app, Globals& g,
                     int* rc);  // put cat blobs backup snapshots restore forget
void AddFsCommands(CLI::App& app, Globals& g, int* rc);    // mount umount snapshot audit
void AddServeCommand(CLI::App& app, Globals& g, int* rc);  // serve

// --layer-cache SIZE (mount and serve): memory for re-created layer segments.
void AddLayerCacheOption(CLI::App* cmd, uint64_t* bytes);

// `coffer init` with default parameters on g.repo (used by serve's embedded default).
int RunInitDefault(Globals& g);

// The reply of the daemon holding the repository to a control verb, or nullopt
// when no daemon listens (the caller then works offline).
std::optional<nlohmann::json> AskDaemon(const Globals& g, const nlohmann::json& req);

}  // namespace coffer

#endif  // COFFER_TOOLS_COMMANDS_H_
