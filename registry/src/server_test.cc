// The HTTP server end to end over loopback TCP with a tiny raw client: framing,
// keep-alive, streaming of large bodies both ways, limits and timeouts.
#include "registry/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "test_util.h"

namespace cofferregistry {
namespace {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool closed = false;  // the server closed the connection after it
};

class Client {
 public:
  explicit Client(const std::string& addr) {
    size_t colon = addr.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
    inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr);
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  }
  ~Client() { close(fd_); }

  bool Send(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t w = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (w <= 0) return false;
      off += static_cast<size_t>(w);
    }
    return true;
  }

  // Reads one response; `head`: the request was HEAD (no body follows).
  HttpResponse Read(bool head = false) {
    HttpResponse r;
    size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos)
      if (!Fill()) return r;
    std::string head_text = in_.substr(0, end);
    in_.erase(0, end + 4);
    r.status = std::stoi(head_text.substr(9, 3));
    size_t pos = head_text.find("\r\n");
    while (pos != std::string::npos) {
      size_t next = head_text.find("\r\n", pos + 2);
      std::string line =
          head_text.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(tolower(c));
      r.headers[name] = line.substr(colon + 2);
      pos = next;
    }
    size_t len =
        head || r.status == 204 || r.status == 100 ? 0 : std::stoul(r.headers["content-length"]);
    while (in_.size() < len)
      if (!Fill()) return r;
    r.body = in_.substr(0, len);
    in_.erase(0, len);
    return r;
  }

  // True when the server has closed (EOF) within `ms`.
  bool ClosedWithin(int ms) {
    pollfd p{fd_, POLLIN, 0};
    while (poll(&p, 1, ms) > 0) {
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
    return false;
  }

 private:
  bool Fill() {
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }
  int fd_;
  std::string in_;
};

class ServerTest : public ::testing::Test {
 protected:
  void Start(RegistryOptions o = {}) {
    o.listen = "127.0.0.1:0";
    o.root = dir_.path();
    o.threads = 2;
    o.verify = RegistryOptions::Verify::kAlways;
    auto r = Registry::Start(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    reg_ = std::move(*r);
  }
  void TearDown() override {
    if (reg_) reg_->Stop();
  }
  TempDir dir_;
  std::unique_ptr<Registry> reg_;
};

TEST_F(ServerTest, BaseAndKeepAlive) {
  Start();
  Client c(reg_->address());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.Send("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"));
    HttpResponse r = c.Read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["docker-distribution-api-version"], "registry/2.0");
    EXPECT_EQ(r.body, "{}");
  }
  ASSERT_TRUE(c.Send("GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_EQ(c.Read().status, 200);
  EXPECT_TRUE(c.ClosedWithin(2000));
}

TEST_F(ServerTest, LargeBlobStreamsBothWays) {
  Start();
  std::string data(5 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + (i >> 13));
  std::string d = Digest(data);
  Client c(reg_->address());
  // Chunked transfer encoding, in odd-sized pieces.
  std::string req = "POST /v2/big/blobs/uploads/?digest=" + d +
                    " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  ASSERT_TRUE(c.Send(req));
  for (size_t off = 0; off < data.size(); off += 300001) {
    size_t n = std::min<size_t>(300001, data.size() - off);
    char hex[32];
    snprintf(hex, sizeof hex, "%zx\r\n", n);
    ASSERT_TRUE(c.Send(hex + data.substr(off, n) + "\r\n"));
  }
  ASSERT_TRUE(c.Send("0\r\n\r\n"));
  HttpResponse r = c.Read();
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.headers["docker-content-digest"], d);

  ASSERT_TRUE(c.Send("GET /v2/big/blobs/" + d + " HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), data.size());
  EXPECT_TRUE(r.body == data);

  ASSERT_TRUE(c.Send("HEAD /v2/big/blobs/" + d + " HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = c.Read(/*head=*/true);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-length"], std::to_string(data.size()));

  ASSERT_TRUE(c.Send("GET /v2/big/blobs/" + d +
                     " HTTP/1.1\r\nHost: x\r\nRange: bytes=1000000-1000009\r\n\r\n"));
  r = c.Read();
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, data.substr(1000000, 10));
  // The connection is still usable after all that.
  ASSERT_TRUE(c.Send("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(c.Read().status, 200);
}

TEST_F(ServerTest, ChunkedUploadWithExpectContinue) {
  Start();
  Client c(reg_->address());
  ASSERT_TRUE(c.Send("POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
  HttpResponse r = c.Read();
  ASSERT_EQ(r.status, 202);
  std::string loc = r.headers["location"];
  ASSERT_TRUE(c.Send("PATCH " + loc +
                     " HTTP/1.1\r\nHost: x\r\nContent-Range: 0-4\r\nContent-Length: 5\r\n"
                     "Expect: 100-continue\r\n\r\n"));
  EXPECT_EQ(c.Read().status, 100);
  ASSERT_TRUE(c.Send("hello"));
  r = c.Read();
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(r.headers["range"], "0-4");
  // Out of order, with a body that must be drained so keep-alive survives.
  ASSERT_TRUE(
      c.Send("PATCH " + loc +
             " HTTP/1.1\r\nHost: x\r\nContent-Range: 0-4\r\nContent-Length: 5\r\n\r\nhello"));
  EXPECT_EQ(c.Read().status, 416);
  ASSERT_TRUE(c.Send("PUT " + loc + "?digest=" + Digest("hello") +
                     " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_EQ(c.Read().status, 201);
}

// Upload bodies are collected into large pieces before they reach the mount;
// a client that goes away mid-PATCH still leaves every byte that arrived, so
// the upload resumes from there (status GET answers the offset).
TEST_F(ServerTest, InterruptedPatchKeepsWhatArrived) {
  Start();
  std::string loc;
  {
    Client c(reg_->address());
    ASSERT_TRUE(
        c.Send("POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
    HttpResponse r = c.Read();
    ASSERT_EQ(r.status, 202);
    loc = r.headers["location"];
    ASSERT_TRUE(c.Send("PATCH " + loc + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" +
                       std::string(100000, 'p')));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }  // closed: 100000 of 1000000 bytes sent
  std::string range;
  for (int i = 0; i < 50 && range != "0-99999"; ++i) {
    Client c(reg_->address());
    ASSERT_TRUE(c.Send("GET " + loc + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    HttpResponse r = c.Read();
    ASSERT_EQ(r.status, 204);
    range = r.headers["range"];
    if (range != "0-99999") std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(range, "0-99999");
}

TEST_F(ServerTest, Limits) {
  RegistryOptions o;
  o.max_header_bytes = 4096;
  o.max_manifest_bytes = 1024;
  Start(o);
  {
    Client c(reg_->address());
    ASSERT_TRUE(
        c.Send("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n"));
    HttpResponse r = c.Read();
    EXPECT_EQ(r.status, 431);
    EXPECT_TRUE(c.ClosedWithin(2000));
  }
  {
    Client c(reg_->address());
    ASSERT_TRUE(
        c.Send("PUT /v2/a/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: 100000000\r\n\r\n"));
    HttpResponse r = c.Read();
    EXPECT_EQ(r.status, 413);
    EXPECT_TRUE(c.ClosedWithin(2000));
  }
  {
    Client c(reg_->address());
    ASSERT_TRUE(
        c.Send("PUT /v2/a/manifests/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
    std::string chunk(2000, ' ');
    ASSERT_TRUE(c.Send("7d0\r\n" + chunk + "\r\n"));
    EXPECT_EQ(c.Read().status, 413);
  }
  {
    Client c(reg_->address());
    ASSERT_TRUE(c.Send("this is not http\r\n\r\n"));
    EXPECT_EQ(c.Read().status, 400);
  }
}

TEST_F(ServerTest, SlowClientsTimeOutAndOthersProceed) {
  RegistryOptions o;
  o.read_timeout_ms = 300;
  o.idle_timeout_ms = 300;
  Start(o);
  std::vector<std::unique_ptr<Client>> stalled;
  for (int i = 0; i < 8; ++i) {
    stalled.push_back(std::make_unique<Client>(reg_->address()));
    stalled.back()->Send("GET /v2/ HTTP/1.1\r\nHost: x\r\n");  // head never finished
  }
  Client c(reg_->address());
  ASSERT_TRUE(c.Send("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(c.Read().status, 200);
  for (auto& s : stalled) EXPECT_TRUE(s->ClosedWithin(3000));
}

TEST_F(ServerTest, StartErrors) {
  RegistryOptions o;
  EXPECT_FALSE(Registry::Start(o).ok());  // no root
  o.root = dir_.path();
  o.listen = "nonsense";
  EXPECT_FALSE(Registry::Start(o).ok());
  o.listen = "127.0.0.1:99999";
  EXPECT_FALSE(Registry::Start(o).ok());
  Start();
  o.listen = reg_->address();  // taken
  EXPECT_FALSE(Registry::Start(o).ok());
  reg_->Stop();
  reg_->Stop();  // idempotent
}

}  // namespace
}  // namespace cofferregistry
