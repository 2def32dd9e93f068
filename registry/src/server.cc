// The network side: Boost.Beast sessions that move bytes between sockets and the
// Handler, and the Registry that owns the listener and the I/O threads.
//
// One Session per connection, all its work on one strand of one of the I/O
// threads' own io_contexts (Listener). A request head is read
// (header size limited), handed to the Handler; a body is then read into a
// 256 KiB buffer_body and passed to the BodySink piece by piece, or, for a
// Batched sink (uploads), each time the buffer fills: a blob is never held in
// memory. File-backed responses are pread and written 64 KiB at a time
// (see kFilePiece: not sendfile(2), measured). Timeouts: idle_timeout between
// requests, read_timeout per piece.
#include "registry/server.h"

#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <csignal>
#include <memory>
#include <thread>
#include <vector>

#include "handler.h"
#include "storage.h"

namespace cofferregistry {
namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using chunkstore::Status;

namespace {

constexpr size_t kBodyBuffer = 256 << 10;
// File bodies go out in pieces of this size. sendfile(2) costs this process
// less CPU, but it hands the socket pages the FUSE daemon filled long ago, and
// a client that digests what it receives (skopeo, dockerd, sha256sum) then reads
// them from DRAM: skopeo copy of a 92 MB layer took 0.58 s with sendfile, 0.54 s
// with 256 KiB pieces, 0.52 s with 64 KiB, as distribution (32 KiB pieces). 32 KiB
// pieces cost twice the CPU of 64 KiB for no gain (docs/benchmarks.md).
constexpr size_t kFilePiece = 64 << 10;
// A refused request's unread body is read and dropped up to this size, so the
// client sees the answer; beyond it the connection is closed instead.
constexpr uint64_t kMaxDrain = 1 << 20;

struct Limits {
  uint32_t max_header;
  std::chrono::milliseconds read_timeout, idle_timeout;
};

// Stream: beast::tcp_stream (plain HTTP) or ssl::stream<beast::tcp_stream> (TLS).
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

 public:
  template <class... Args>
  Session(Handler* handler, Limits limits, Args&&... stream_args)
      : stream_(std::forward<Args>(stream_args)...),
        handler_(handler),
        limits_(limits),
        buf_(kBodyBuffer) {
    // Beast reads max(512, capacity - size) bytes per call into the dynamic
    // buffer: without capacity an upload arrives 512 bytes at a time (a 230 MB
    // push became 450k FUSE writes).
    in_.reserve(kBodyBuffer);
  }

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        self->Lowest().expires_after(self->limits_.read_timeout);
        self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) return self->Close();  // not TLS, bad cert...
          self->ReadHead();
        });
      } else {
        self->ReadHead();
      }
    });
  }

 private:
  using std::enable_shared_from_this<Session<Stream>>::shared_from_this;
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void ReadHead() {
    parser_.emplace();
    parser_->header_limit(limits_.max_header);
    parser_->body_limit(boost::none);  // sinks enforce their own limits
    sink_.reset();
    draining_ = false;
    Lowest().expires_after(limits_.idle_timeout);
    http::async_read_header(stream_, in_, *parser_,
                            beast::bind_front_handler(&Session::OnHead, shared_from_this()));
  }

  void OnHead(beast::error_code ec, size_t) {
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == beast::error::timeout || ec == asio::error::connection_reset ||
        ec == asio::error::eof)
      return Close();
    if (ec == http::error::header_limit) {
      return Send(ErrorResponse(431, "UNSUPPORTED", "request header too large"), true);
    }
    if (ec)
      return Send(ErrorResponse(400, "UNSUPPORTED", "malformed HTTP request", ec.message()), true);
    const auto& h = parser_->get();
    Request req;
    req.method = std::string(h.method_string());
    req.target = std::string(h.target());
    for (const auto& f : h) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto [it, fresh] = req.headers.emplace(name, std::string(f.value()));
      if (!fresh) it->second += ", " + std::string(f.value());
    }
    if (parser_->content_length()) req.content_length = *parser_->content_length();
    keep_alive_ = h.keep_alive();
    version_ = h.version();
    head_ = req.method == "HEAD";
    Dispatch d = handler_->Handle(req);
    const std::string* expect = req.Header("expect");
    bool wants_continue = expect && strcasecmp(expect->c_str(), "100-continue") == 0;
    if (d.response) {
      Response r = std::move(*d.response);
      if (parser_->is_done()) return Send(std::move(r), false);
      // The client holds the body back until it hears from us: answer at once
      // (RFC 9110 10.1.1) and close, since we cannot know whether a body follows.
      if (wants_continue) return Send(std::move(r), true);
      // A body nobody wants: drop a small one, else close after answering.
      auto len = parser_->content_length();
      if (len && *len <= kMaxDrain) {
        pending_ = std::move(r);
        draining_ = true;
        return ReadBody();
      }
      return Send(std::move(r), true);
    }
    sink_ = std::move(d.sink);
    if (wants_continue && !parser_->is_done()) {
      auto cont =
          std::make_shared<http::response<http::empty_body>>(http::status::continue_, version_);
      return http::async_write(stream_, *cont,
                               [self = shared_from_this(), cont](beast::error_code ec, size_t) {
                                 if (ec) return self->Close();
                                 self->ReadBody();
                               });
    }
    ReadBody();
  }

  // Body bytes collect in buf_ until it is full (or the body ends) before they
  // go to the sink: a client that streams as it compresses (dockerd) sends ~30
  // KiB per read, and each write to the mount is a FUSE round trip.
  void ReadBody() {
    if (parser_->is_done()) return BodyDone();
    auto& body = parser_->get().body();
    body.data = buf_.data() + filled_;
    body.size = buf_.size() - filled_;
    Lowest().expires_after(limits_.read_timeout);
    http::async_read_some(stream_, in_, *parser_,
                          beast::bind_front_handler(&Session::OnBody, shared_from_this()));
  }

  void OnBody(beast::error_code ec, size_t) {
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      if (ec == http::error::body_limit || ec == http::error::bad_chunk ||
          ec == http::error::bad_content_length) {
        (void)Flush();  // what arrived before the bad piece, as before it was seen
        return Send(ErrorResponse(400, "SIZE_INVALID", "malformed request body", ec.message()),
                    true);
      }
      (void)Flush();  // client gone or too slow: an upload keeps what arrived
      return Close();
    }
    filled_ = buf_.size() - parser_->get().body().size;
    if (draining_) filled_ = 0;
    if (filled_ == buf_.size() || parser_->is_done() || !sink_ || !sink_->Batched()) {
      Status st = Flush();
      if (!st.ok()) {
        Response r = sink_->Abort(st);
        sink_.reset();
        return Send(std::move(r), true);
      }
    }
    if (parser_->is_done()) return BodyDone();
    ReadBody();
  }

  // Hands the collected body bytes to the sink.
  Status Flush() {
    size_t n = std::exchange(filled_, 0);
    if (n == 0 || draining_ || !sink_) return Status::OK();
    return sink_->Write(buf_.data(), n);
  }

  void BodyDone() {
    if (draining_) return Send(std::move(*pending_), false);
    Response r = sink_->Finish();
    sink_.reset();
    Send(std::move(r), false);
  }

  // Sends `r`; closes afterwards when `close` or the client asked for it.
  void Send(Response r, bool close) {
    resp_ = std::move(r);
    close_ = close || resp_.close || !keep_alive_;
    res_.emplace();
    res_->version(version_ ? version_ : 11);
    res_->result(static_cast<unsigned>(resp_.status));
    res_->set(http::field::server, "coffer");
    res_->set("Docker-Distribution-API-Version", "registry/2.0");
    for (const auto& [k, v] : resp_.headers) res_->insert(k, v);
    res_->keep_alive(!close_);
    res_->content_length(resp_.ContentLength());
    remaining_ = resp_.file && !head_ ? resp_.file->length() : 0;
    offset_ = resp_.file ? resp_.file->offset() : 0;
    auto& body = res_->body();
    if (head_ || resp_.head) {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
    } else if (resp_.file) {
      if (!Fill()) return Close();
    } else {
      body.data = resp_.body.data();
      body.size = resp_.body.size();
      body.more = false;
    }
    sr_.emplace(*res_);
    WriteSome();
  }

  // Reads the next piece of the file body into buf_. False on a read error
  // (the response is already promised: the connection must die).
  bool Fill() {
    size_t want = static_cast<size_t>(std::min<uint64_t>(remaining_, kFilePiece));
    size_t got = 0;
    while (got < want) {
      ssize_t r = ::pread(resp_.file->fd(), buf_.data() + got, want - got,
                          static_cast<off_t>(offset_ + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    offset_ += got;
    remaining_ -= got;
    auto& body = res_->body();
    body.data = buf_.data();
    body.size = got;
    body.more = remaining_ > 0;
    return true;
  }

  void WriteSome() {
    Lowest().expires_after(limits_.read_timeout);
    http::async_write(stream_, *sr_,
                      beast::bind_front_handler(&Session::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    if (ec == http::error::need_buffer) {
      if (!Fill()) return Close();
      return WriteSome();
    }
    if (ec) return Close();
    Sent();
  }

  // The response is out: next request, or close.
  void Sent() {
    sr_.reset();
    res_.reset();
    resp_ = Response();
    if (close_) return Close();
    ReadHead();
  }

  void Close() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    Lowest().close();
  }

  Stream stream_;
  beast::flat_buffer in_;
  Handler* handler_;
  Limits limits_;
  std::vector<char> buf_;  // body pieces in and out
  size_t filled_ = 0;      // request body bytes in buf_ not yet given to the sink
  std::optional<http::request_parser<http::buffer_body>> parser_;
  std::unique_ptr<BodySink> sink_;
  bool draining_ = false;
  std::optional<Response> pending_;
  bool keep_alive_ = true, head_ = false, close_ = false;
  unsigned version_ = 11;
  Response resp_;
  std::optional<http::response<http::buffer_body>> res_;
  std::optional<http::response_serializer<http::buffer_body>> sr_;
  uint64_t remaining_ = 0, offset_ = 0;
};

// Accepts on the first I/O context and gives each connection to the next
// context in turn: a connection's reads complete on the thread that waited
// for them, with no hand-off between threads (one shared io_context with four
// threads woke ~4 threads per arriving TCP segment: 30 000 context switches
// for a 92 MB docker push, a third of the registry's CPU).
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // `tls`: null for plain HTTP.
  Listener(std::vector<asio::io_context*> iocs, tcp::acceptor acceptor, Handler* handler,
           Limits limits, ssl::context* tls)
      : iocs_(std::move(iocs)),
        acceptor_(std::move(acceptor)),
        handler_(handler),
        limits_(limits),
        tls_(tls) {}
  void Accept() {
    asio::io_context& target = *iocs_[next_++ % iocs_.size()];
    acceptor_.async_accept(asio::make_strand(target),
                           beast::bind_front_handler(&Listener::OnAccept, shared_from_this()));
  }
  void Close() {
    beast::error_code ec;
    acceptor_.close(ec);
  }

 private:
  void OnAccept(beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (tls_)
        std::make_shared<Session<ssl::stream<beast::tcp_stream>>>(handler_, limits_,
                                                                  std::move(socket), *tls_)
            ->Start();
      else
        std::make_shared<Session<beast::tcp_stream>>(handler_, limits_, std::move(socket))->Start();
    }
    Accept();
  }
  std::vector<asio::io_context*> iocs_;
  size_t next_ = 0;  // only the accepting context's thread touches it
  tcp::acceptor acceptor_;
  Handler* handler_;
  Limits limits_;
  ssl::context* tls_;
};

chunkstore::Result<tcp::endpoint> ParseListen(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos)
    return Status::InvalidArgument("listen address `" + s + "`: expected host:port");
  std::string host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "localhost") host = host.empty() ? "0.0.0.0" : "127.0.0.1";
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return Status::InvalidArgument("listen address `" + s + "`: " + ec.message());
  char* end = nullptr;
  unsigned long p = std::strtoul(port.c_str(), &end, 10);
  if (port.empty() || *end || p > 65535)
    return Status::InvalidArgument("listen address `" + s + "`: bad port");
  return tcp::endpoint(addr, static_cast<unsigned short>(p));
}

chunkstore::Result<std::string> ReadSmallFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Status::FromErrno("open `" + path + "`", errno);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && out.size() < (1 << 20)) out.append(buf, n);
  std::fclose(f);
  return out;
}

// TLS 1.2+ with the certificate chain and key given (PEM files).
chunkstore::Result<std::unique_ptr<ssl::context>> TlsContext(const std::string& cert,
                                                             const std::string& key) {
  if (cert.empty() || key.empty())
    return Status::InvalidArgument("registry TLS: give both a certificate and a key");
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  beast::error_code ec;
  ctx->use_certificate_chain_file(cert, ec);
  if (ec)
    return Status::InvalidArgument("registry TLS certificate `" + cert + "`: " + ec.message());
  ctx->use_private_key_file(key, ssl::context::pem, ec);
  if (ec) return Status::InvalidArgument("registry TLS key `" + key + "`: " + ec.message());
  return ctx;
}

class RegistryImpl : public Registry {
 public:
  RegistryImpl(std::unique_ptr<Storage> storage, std::unique_ptr<Auth> auth,
               std::unique_ptr<TokenAuthority> token, std::unique_ptr<ssl::context> tls,
               HandlerOptions hopts, int threads)
      : storage_(std::move(storage)),
        auth_(std::move(auth)),
        token_(std::move(token)),
        tls_(std::move(tls)),
        handler_(storage_.get(), auth_.get(), WithToken(hopts, token_.get(), tls_ != nullptr)) {
    for (int i = 0; i < threads; ++i) {
      iocs_.push_back(std::make_unique<asio::io_context>(1));
      guards_.emplace_back(asio::make_work_guard(*iocs_.back()));
    }
  }
  ~RegistryImpl() override { Stop(); }

  Status Listen(const tcp::endpoint& ep, Limits limits) {
    beast::error_code ec;
    tcp::acceptor a(*iocs_[0]);
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return Status::Unavailable("listen on " + ep.address().to_string() + ":" +
                                 std::to_string(ep.port()) + ": " + ec.message());
    auto local = a.local_endpoint();
    address_ = (local.address().is_v6() ? "[" + local.address().to_string() + "]"
                                        : local.address().to_string()) +
               ":" + std::to_string(local.port());
    std::vector<asio::io_context*> iocs;
    for (auto& c : iocs_) iocs.push_back(c.get());
    listener_ =
        std::make_shared<Listener>(std::move(iocs), std::move(a), &handler_, limits, tls_.get());
    asio::post(*iocs_[0], [l = listener_] { l->Accept(); });
    for (auto& c : iocs_) threads_.emplace_back([c = c.get()] { c->run(); });
    return Status::OK();
  }

  void Stop() override {
    std::lock_guard<std::mutex> l(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    if (listener_) asio::post(*iocs_[0], [l = listener_] { l->Close(); });
    for (auto& c : iocs_) c->stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  std::string address() const override { return address_; }

  chunkstore::Result<RegistryGcReport> CollectGarbage(int64_t grace_s) override {
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    return handler_.CollectGarbage(grace_s, now);
  }

 private:
  static HandlerOptions WithToken(HandlerOptions h, const TokenAuthority* t, bool tls) {
    h.token = t;
    h.tls = tls;
    return h;
  }

  std::unique_ptr<Storage> storage_;
  std::unique_ptr<Auth> auth_;
  std::unique_ptr<TokenAuthority> token_;
  std::unique_ptr<ssl::context> tls_;
  Handler handler_;
  // One context per I/O thread (concurrency hint 1); the guards keep a
  // context with no connection yet from returning from run().
  std::vector<std::unique_ptr<asio::io_context>> iocs_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::shared_ptr<Listener> listener_;
  std::vector<std::thread> threads_;
  std::string address_;
  std::mutex stop_mu_;
  bool stopped_ = false;
};

}  // namespace

chunkstore::Result<std::unique_ptr<Registry>> Registry::Start(const RegistryOptions& opts) {
  if (opts.root.empty())
    return Status::InvalidArgument("registry: no root (the coffer mount point)");
  if (opts.threads < 1) return Status::InvalidArgument("registry: threads must be at least 1");
  ASSIGN_OR_RETURN(tcp::endpoint ep, ParseListen(opts.listen));
  // A client that goes away mid-body must fail that one write with EPIPE, never
  // kill the process (Asio sends with MSG_NOSIGNAL; this covers everything else).
  std::signal(SIGPIPE, SIG_IGN);
  bool verify = opts.verify == RegistryOptions::Verify::kAlways ||
                (opts.verify == RegistryOptions::Verify::kAuto && !IsCofferMount(opts.root));
  std::unique_ptr<Auth> auth;
  if (!opts.htpasswd.empty() || !opts.access.empty()) {
    ASSIGN_OR_RETURN(auth, Auth::Load(opts.htpasswd, opts.access));
  }
  HandlerOptions h;
  h.read_only = opts.read_only;
  h.delete_enabled = opts.delete_enabled;
  h.max_manifest_bytes = opts.max_manifest_bytes;
  h.realm = opts.realm;
  std::unique_ptr<TokenAuthority> token;
  if (!opts.token_certs.empty()) {
    if (opts.token_realm.empty())
      return Status::InvalidArgument("registry: token certificates given without a token realm");
    ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(opts.token_certs));
    auto t = TokenAuthority::Trusting(pem, opts.token_issuer, opts.token_service);
    if (!t.ok()) return t.status().Annotate("load `" + opts.token_certs + "`");
    token = std::move(t).value();
  } else if (opts.token) {
    ASSIGN_OR_RETURN(token, TokenAuthority::Ephemeral(opts.token_issuer, opts.token_service));
  }
  h.token_realm = opts.token_realm;
  std::unique_ptr<ssl::context> tls;
  if (!opts.tls_cert.empty() || !opts.tls_key.empty()) {
    ASSIGN_OR_RETURN(tls, TlsContext(opts.tls_cert, opts.tls_key));
  }
  auto impl = std::make_unique<RegistryImpl>(NewPosixStorage(opts.root, verify), std::move(auth),
                                             std::move(token), std::move(tls), h, opts.threads);
  Limits limits{opts.max_header_bytes, std::chrono::milliseconds(opts.read_timeout_ms),
                std::chrono::milliseconds(opts.idle_timeout_ms)};
  RETURN_IF_ERROR(impl->Listen(ep, limits));
  return std::unique_ptr<Registry>(std::move(impl));
}

}  // namespace cofferregistry
