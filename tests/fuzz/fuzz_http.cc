// libFuzzer target: raw bytes from a client through Boost.Beast's request parser
// (as the registry's session configures it) into Handler::Handle, the protocol's
// routing and validation, over a plain temporary directory. One input may hold
// several pipelined requests, so a push followed by a pull is reachable.
//
// The session's own glue (server.cc) sits in an anonymous namespace and cannot
// be linked; ToRequest below repeats what Session::OnHead does with a head.
//
// Properties besides "never crash": the handler answers every request with a
// status in 200..599 and never 500 (bad input gets the spec's 4xx; a plain
// directory does not fail), and a file-backed body lies inside its file.
#include <sys/stat.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "handler.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using namespace cofferregistry;

constexpr uint32_t kMaxHeader = 64 << 10;  // RegistryOptions::max_header_bytes
constexpr uint64_t kMaxBody = 1 << 20;     // keeps one input's work small

Request ToRequest(const http::request_parser<http::string_body>& p) {
  const auto& h = p.get();
  Request req;
  req.method = std::string(h.method_string());
  req.target = std::string(h.target());
  for (const auto& f : h) {
    std::string name(f.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto [it, fresh] = req.headers.emplace(name, std::string(f.value()));
    if (!fresh) it->second += ", " + std::string(f.value());
  }
  if (p.content_length()) req.content_length = *p.content_length();
  req.remote = "127.0.0.1";
  return req;
}

void CheckResponse(const Response& r, const Request& req) {
  if (r.status < 200 || r.status > 599 || r.status == 500) {
    std::fprintf(stderr, "%s %s -> %d %s\n", req.method.c_str(), req.target.c_str(), r.status,
                 r.body.c_str());
    std::abort();
  }
  if (r.file) {
    struct stat st;
    if (::fstat(r.file->fd(), &st) != 0) std::abort();
    if (r.file->offset() + r.file->length() > static_cast<uint64_t>(st.st_size)) std::abort();
  }
}

// Feeds the body of a parsed request to the handler's sink (in pieces, as the
// session does) and returns the response.
Response Serve(Handler* h, const Request& req, const std::string& body) {
  Dispatch d = h->Handle(req);
  if (d.response) return std::move(*d.response);
  if (!d.sink) std::abort();  // neither a response nor a sink
  for (size_t i = 0; i < body.size(); i += 4096) {
    Status st = d.sink->Write(body.data() + i, std::min<size_t>(4096, body.size() - i));
    if (!st.ok()) return d.sink->Abort(st);
  }
  return d.sink->Finish();
}

// A fresh store root per input, on tmpfs when there is one: the storage
// fsyncs every write, which on a disk would leave a few runs a second.
class Root {
 public:
  Root() {
    std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/coffer-fuzz-http-XXXXXX";
    if (!::mkdtemp(tmpl.data())) std::abort();
    path_ = tmpl;
  }
  ~Root() { std::filesystem::remove_all(path_); }
  // Empties the store: blobs/sha256, uploads and repos, nothing in them.
  const std::string& Reset() {
    for (const char* d : {"blobs", "uploads", "repos"})
      std::filesystem::remove_all(path_ + "/" + d);
    for (const char* d : {"blobs/sha256", "uploads", "repos"})
      std::filesystem::create_directories(path_ + "/" + d);
    return path_;
  }

 private:
  std::string path_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte: handler options, so read-only and no-delete routing are reached too.
  HandlerOptions opts;
  opts.read_only = data[0] & 1;
  opts.delete_enabled = !(data[0] & 2);
  if (data[0] & 4) opts.max_manifest_bytes = 64;
  static Root root;
  auto storage = NewPosixStorage(root.Reset(), /*verify=*/true);
  Handler handler(storage.get(), nullptr, opts);

  beast::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  while (!in.empty()) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHeader);
    parser.body_limit(kMaxBody);
    parser.eager(true);
    beast::error_code ec;
    size_t used = parser.put(boost::asio::buffer(in.data(), in.size()), ec);
    if (!ec && parser.is_header_done() && !parser.is_done()) {
      // put() stops after the head; feed the rest for the body.
      size_t more = parser.put(boost::asio::buffer(in.data() + used, in.size() - used), ec);
      used += more;
    }
    if (!ec && !parser.is_done() && parser.need_eof()) parser.put_eof(ec);
    if (ec || !parser.is_done() || used == 0) break;  // the session answers 400 and closes
    in.remove_prefix(used);
    Request req = ToRequest(parser);
    Response r = Serve(&handler, req, parser.get().body());
    CheckResponse(r, req);
  }
  return 0;
}
