// Bearer token auth in the handler: checking tokens on /v2/ requests, and the
// built-in token server at /token (docs/registry.md, "Token authentication").
#include <strings.h>

#include <boost/json.hpp>
#include <chrono>
#include <ctime>

#include "handler.h"
#include "names.h"

namespace cofferregistry {
namespace json = boost::json;

namespace {

int64_t NowS() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Rfc3339(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  struct tm tm;
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::optional<Response> Handler::CheckToken(const Request& req, const TokenAccess& need,
                                            std::string* user) {
  std::string realm = opts_.token_realm;
  if (realm.empty()) {
    const std::string* host = req.Header("host");
    realm =
        std::string(opts_.tls ? "https://" : "http://") + (host ? *host : "127.0.0.1") + "/token";
  }
  auto challenge = [&](const std::string& error, const std::string& msg) {
    Response e = ErrorResponse(401, "UNAUTHORIZED", msg);
    std::string v = "Bearer realm=\"" + realm + "\",service=\"" + opts_.token->service() + "\"";
    if (!need.type.empty()) v += ",scope=\"" + FormatScope(need) + "\"";
    if (!error.empty()) v += ",error=\"" + error + "\"";
    e.Set("WWW-Authenticate", v);
    return e;
  };
  const std::string* h = req.Header("authorization");
  if (!h || h->size() < 7 || strncasecmp(h->c_str(), "Bearer ", 7) != 0)
    return challenge("", "authentication required");
  auto claims = opts_.token->Verify(h->substr(7), NowS());
  if (!claims.ok()) return challenge("invalid_token", claims.status().message());
  *user = claims->subject;
  if (need.type.empty()) return std::nullopt;
  unsigned granted = claims->Granted(need.type, need.name);
  if ((granted & need.actions) == need.actions) return std::nullopt;
  return challenge("insufficient_scope", "the token does not grant " + FormatScope(need));
}

Response Handler::IssueToken(const Request& req, const std::string& query) {
  auto params = ParseQueryAll(query);
  if (!params) return ErrorResponse(400, "UNSUPPORTED", "malformed query string");
  std::string user;
  if (auth_) {
    auto who = auth_->Authenticate(req.Header("authorization"));
    if (!who) {
      Response e = ErrorResponse(401, "UNAUTHORIZED", "wrong user name or password");
      e.Set("WWW-Authenticate", "Basic realm=\"" + opts_.realm + "\"");
      return e;
    }
    user = *who;
  }
  std::vector<TokenAccess> granted;
  for (const auto& [k, v] : *params) {
    if (k == "service" && v != opts_.token->service())
      return ErrorResponse(400, "UNSUPPORTED", "unknown service", v);
    if (k != "scope") continue;
    // A scope parameter may hold several scopes separated by spaces.
    size_t start = 0;
    while (start < v.size()) {
      size_t sp = v.find(' ', start);
      std::string one = v.substr(start, sp == std::string::npos ? v.npos : sp - start);
      start = sp == std::string::npos ? v.size() : sp + 1;
      auto want = ParseScope(one);
      if (!want) return ErrorResponse(400, "UNSUPPORTED", "malformed scope", one);
      TokenAccess got{want->type, want->name, 0};
      if (want->type == "repository" && ValidRepoName(want->name)) {
        for (unsigned a : {kPull, kPush, kDelete})
          if ((want->actions & a) && (!auth_ || auth_->Allowed(user, want->name, a)))
            got.actions |= a;
      } else if (want->type == "registry" && want->name == "catalog") {
        if (!auth_ || !auth_->enabled() || !user.empty()) got.actions = want->actions;
      }
      if (got.actions) granted.push_back(std::move(got));
    }
  }
  int64_t now = NowS();
  auto token = opts_.token->Issue(user, granted, now, opts_.token_ttl_s);
  if (!token.ok()) return ErrorResponse(500, "UNKNOWN", token.status().message());
  json::object body{{"token", *token},
                    {"access_token", *token},
                    {"expires_in", opts_.token_ttl_s},
                    {"issued_at", Rfc3339(now)}};
  Response r;
  r.Set("Content-Type", "application/json");
  r.Set("Cache-Control", "no-store");
  r.body = json::serialize(body);
  return r;
}

}  // namespace cofferregistry
