// Protocol tests of the pure handler, written from the OCI Distribution spec
// v1.1: every endpoint, status and error code, over a plain temporary directory.
#include "handler.h"

#include <crypt.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "names.h"
#include "test_util.h"

namespace cofferregistry {
namespace {
namespace json = boost::json;

class HandlerTest : public ::testing::Test {
 protected:
  void SetUp() override { Reset(HandlerOptions()); }
  void Reset(HandlerOptions opts, Auth* auth = nullptr) {
    storage_ = NewPosixStorage(dir_.path(), /*verify=*/true);
    handler_ = std::make_unique<Handler>(storage_.get(), auth, opts);
  }

  // Runs one request; the body is fed in small pieces to exercise streaming.
  Response Call(const std::string& method, const std::string& target, const std::string& body = "",
                std::map<std::string, std::string> headers = {}, bool send_length = true) {
    Request req;
    req.method = method;
    req.target = target;
    req.headers = std::move(headers);
    if (send_length && (!body.empty() || method == "PUT" || method == "PATCH" || method == "POST"))
      req.content_length = body.size();
    Dispatch d = handler_->Handle(req);
    if (d.response) return std::move(*d.response);
    for (size_t i = 0; i < body.size(); i += 7) {
      Status st = d.sink->Write(body.data() + i, std::min<size_t>(7, body.size() - i));
      if (!st.ok()) return d.sink->Abort(st);
    }
    return d.sink->Finish();
  }

  static std::string Code(const Response& r) {
    if (r.body.empty()) return "";
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    if (ec || !v.is_object() || !v.as_object().contains("errors")) return "";
    return std::string(v.at("errors").at(0).at("code").as_string().c_str());
  }
  static std::string H(const Response& r, const char* name) {
    const std::string* v = r.Get(name);
    return v ? *v : "<none>";
  }

  // Pushes a blob monolithically; returns its digest.
  std::string PushBlob(const std::string& repo, const std::string& data) {
    std::string d = Digest(data);
    Response r = Call("POST", "/v2/" + repo + "/blobs/uploads/?digest=" + d, data);
    EXPECT_EQ(r.status, 201) << r.body;
    return d;
  }

  std::string ImageManifest(const std::string& repo, const std::string& layer_data = "layer") {
    std::string cfg = PushBlob(repo, "{\"architecture\":\"amd64\"}");
    std::string layer = PushBlob(repo, layer_data);
    return std::string("{\"schemaVersion\":2,\"mediaType\":\"") + kOciManifest +
           "\",\"config\":{\"mediaType\":\"application/"
           "vnd.oci.image.config.v1+json\",\"digest\":\"" +
           cfg +
           "\",\"size\":24},\"layers\":[{\"mediaType\":\"application/"
           "vnd.oci.image.layer.v1.tar\",\"digest\":\"" +
           layer + "\",\"size\":" + std::to_string(layer_data.size()) + "}]}";
  }

  Response PutManifest(const std::string& repo, const std::string& ref, const std::string& body,
                       const std::string& type = kOciManifest) {
    return Call("PUT", "/v2/" + repo + "/manifests/" + ref, body, {{"content-type", type}});
  }

  size_t UploadsOnDisk() {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir_.path() + "/uploads"))
      ++n;
    return n;
  }

  TempDir dir_;
  std::unique_ptr<Storage> storage_;
  std::unique_ptr<Handler> handler_;
};

// ---- base, routing, names --------------------------------------------------------

TEST_F(HandlerTest, BaseEndpoint) {
  Response r = Call("GET", "/v2/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Call("GET", "/v2").status, 200);
  EXPECT_EQ(Call("HEAD", "/v2/").status, 200);
}

TEST_F(HandlerTest, UnknownEndpointsAndBadNames) {
  EXPECT_EQ(Call("GET", "/v1/").status, 404);
  EXPECT_EQ(Call("GET", "/v2/foo/bar").status, 404);
  Response r = Call("GET", "/v2/Upper/tags/list");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "NAME_INVALID");
  EXPECT_EQ(Code(Call("GET", "/v2/a/../b/manifests/latest")), "NAME_INVALID");
  EXPECT_EQ(Code(Call("GET", "/v2/../../etc/blobs/sha256:" + std::string(64, 'a'))),
            "NAME_INVALID");
  EXPECT_EQ(Code(Call("GET", "/v2/a%2Fb/tags/list")), "NAME_INVALID");
  EXPECT_EQ(Call("GET", "/v2/x/tags/list?n=%zz").status, 400);
  EXPECT_EQ(Call("POST", "/v2/x/tags/list").status, 405);
}

// ---- blob pull ------------------------------------------------------------------

TEST_F(HandlerTest, BlobGetHeadAndRanges) {
  std::string data = "0123456789abcdef";
  std::string d = PushBlob("lib/a", data);
  Response r = Call("GET", "/v2/lib/a/blobs/" + d);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(BodyOf(r), data);
  EXPECT_EQ(H(r, "Docker-Content-Digest"), d);
  EXPECT_EQ(r.ContentLength(), data.size());

  r = Call("HEAD", "/v2/lib/a/blobs/" + d);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.head);
  EXPECT_EQ(r.ContentLength(), data.size());
  EXPECT_EQ(r.file, nullptr);

  r = Call("GET", "/v2/lib/a/blobs/" + d, "", {{"range", "bytes=2-5"}});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(BodyOf(r), "2345");
  EXPECT_EQ(H(r, "Content-Range"), "bytes 2-5/16");
  r = Call("GET", "/v2/lib/a/blobs/" + d, "", {{"range", "bytes=-3"}});
  EXPECT_EQ(BodyOf(r), "def");
  r = Call("GET", "/v2/lib/a/blobs/" + d, "", {{"range", "bytes=16-"}});
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(H(r, "Content-Range"), "bytes */16");
  r = Call("GET", "/v2/lib/a/blobs/" + d, "", {{"range", "bytes=9-2"}});  // invalid: ignored
  EXPECT_EQ(r.status, 200);
  r = Call("GET", "/v2/lib/a/blobs/" + d.substr(0, 70) + "%30");  // escaped path component
  EXPECT_TRUE(r.status == 200 || r.status == 404);
}

TEST_F(HandlerTest, BlobUnknownAndBadDigests) {
  std::string d = PushBlob("a", "hello");
  Response r = Call("GET", "/v2/b/blobs/" + d);  // exists, but not linked into b
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Code(r), "BLOB_UNKNOWN");
  EXPECT_EQ(Call("HEAD", "/v2/a/blobs/sha256:" + std::string(64, '0')).status, 404);
  r = Call("GET", "/v2/a/blobs/sha256:xyz");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "DIGEST_INVALID");
  r = Call("GET", "/v2/a/blobs/sha512:" + std::string(128, 'a'));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "UNSUPPORTED");
  EXPECT_EQ(Code(Call("GET", "/v2/a/blobs/..")), "DIGEST_INVALID");
}

// ---- push: monolithic -------------------------------------------------------------

TEST_F(HandlerTest, MonolithicPostPush) {
  std::string data(100000, 'x');
  std::string d = Digest(data);
  Response r = Call("POST", "/v2/a/blobs/uploads/?digest=" + d, data);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(H(r, "Location"), "/v2/a/blobs/" + d);
  EXPECT_EQ(H(r, "Docker-Content-Digest"), d);
  EXPECT_EQ(BodyOf(Call("GET", "/v2/a/blobs/" + d)), data);
  EXPECT_EQ(UploadsOnDisk(), 0u);
}

TEST_F(HandlerTest, MonolithicWrongDigestPublishesNothing) {
  std::string wrong = Digest("other");
  Response r = Call("POST", "/v2/a/blobs/uploads/?digest=" + wrong, "data");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "DIGEST_INVALID");
  EXPECT_EQ(UploadsOnDisk(), 0u);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/blobs/sha256/" + DigestHex(wrong)));
  EXPECT_EQ(Call("GET", "/v2/a/blobs/" + wrong).status, 404);
  r = Call("POST", "/v2/a/blobs/uploads/?digest=sha256:bad", "data");
  EXPECT_EQ(Code(r), "DIGEST_INVALID");
}

TEST_F(HandlerTest, PostThenPutWithBody) {
  Response r = Call("POST", "/v2/a/blobs/uploads/");
  ASSERT_EQ(r.status, 202);
  EXPECT_EQ(H(r, "Range"), "0-0");
  std::string id = H(r, "Docker-Upload-UUID");
  EXPECT_EQ(H(r, "Location"), "/v2/a/blobs/uploads/" + id);
  std::string d = Digest("payload");
  r = Call("PUT", H(r, "Location") + "?digest=" + d, "payload");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(H(r, "Location"), "/v2/a/blobs/" + d);
  EXPECT_EQ(BodyOf(Call("GET", "/v2/a/blobs/" + d)), "payload");
  EXPECT_EQ(Call("GET", "/v2/a/blobs/uploads/" + id).status, 404);  // finished uploads are gone
}

TEST_F(HandlerTest, EmptyBlob) {
  std::string d = Digest("");
  EXPECT_EQ(Call("POST", "/v2/a/blobs/uploads/?digest=" + d, "").status, 201);
  Response r = Call("GET", "/v2/a/blobs/" + d);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.ContentLength(), 0u);
}

// ---- push: chunked ----------------------------------------------------------------

TEST_F(HandlerTest, ChunkedUpload) {
  Response r = Call("POST", "/v2/a/blobs/uploads/");
  std::string loc = H(r, "Location");
  r = Call("PATCH", loc, "01234", {{"content-range", "0-4"}});
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(H(r, "Range"), "0-4");
  EXPECT_EQ(H(r, "Location"), loc);
  // Out of order: the same range again, and a gap.
  r = Call("PATCH", loc, "01234", {{"content-range", "0-4"}});
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(H(r, "Range"), "0-4");
  EXPECT_EQ(Call("PATCH", loc, "x", {{"content-range", "7-7"}}).status, 416);
  EXPECT_EQ(Call("PATCH", loc, "x", {{"content-range", "garbage"}}).status, 416);
  // Length disagreeing with the range.
  r = Call("PATCH", loc, "567", {{"content-range", "5-6"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "SIZE_INVALID");
  // Status.
  r = Call("GET", loc);
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(H(r, "Range"), "0-4");
  EXPECT_EQ(H(r, "Location"), loc);
  // A streamed chunk without Content-Range or length.
  r = Call("PATCH", loc, "56789", {}, /*send_length=*/false);
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(H(r, "Range"), "0-9");
  // Finish with a last chunk in the PUT.
  std::string d = Digest("0123456789tail");
  r = Call("PUT", loc + "?digest=" + d, "tail", {{"content-range", "10-13"}});
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(BodyOf(Call("GET", "/v2/a/blobs/" + d)), "0123456789tail");
}

TEST_F(HandlerTest, ChunkedUploadResumesAfterHandlerRestart) {
  std::string loc = H(Call("POST", "/v2/a/blobs/uploads/"), "Location");
  EXPECT_EQ(Call("PATCH", loc, "abc", {{"content-range", "0-2"}}).status, 202);
  Reset(HandlerOptions());  // a new registry process: the upload lives in the tree
  EXPECT_EQ(H(Call("GET", loc), "Range"), "0-2");
  std::string d = Digest("abcdef");
  EXPECT_EQ(Call("PUT", loc + "?digest=" + d, "def").status, 201);
}

TEST_F(HandlerTest, FinishWithWrongDigestRemovesUpload) {
  std::string loc = H(Call("POST", "/v2/a/blobs/uploads/"), "Location");
  Call("PATCH", loc, "abc");
  Response r = Call("PUT", loc + "?digest=" + Digest("xyz"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "DIGEST_INVALID");
  EXPECT_EQ(Call("GET", loc).status, 404);
  EXPECT_EQ(UploadsOnDisk(), 0u);
}

TEST_F(HandlerTest, UploadErrors) {
  std::string loc = H(Call("POST", "/v2/a/blobs/uploads/"), "Location");
  Response r = Call("PUT", loc);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "DIGEST_INVALID");
  EXPECT_EQ(Code(Call("PUT", loc + "?digest=md5:abc")), "UNSUPPORTED");
  std::string unknown = "/v2/a/blobs/uploads/" + std::string(32, 'a');
  EXPECT_EQ(Code(Call("GET", unknown)), "BLOB_UPLOAD_UNKNOWN");
  EXPECT_EQ(Code(Call("PATCH", unknown, "x")), "BLOB_UPLOAD_UNKNOWN");
  EXPECT_EQ(Code(Call("PUT", unknown + "?digest=" + Digest("x"), "x")), "BLOB_UPLOAD_UNKNOWN");
  EXPECT_EQ(Code(Call("DELETE", unknown)), "BLOB_UPLOAD_UNKNOWN");
  EXPECT_EQ(Call("GET", "/v2/a/blobs/uploads/..%2F..%2Fblobs").status, 404);
  EXPECT_EQ(Call("GET", "/v2/a/blobs/uploads/NOTHEX").status, 404);
  // Cancel.
  EXPECT_EQ(Call("DELETE", loc).status, 204);
  EXPECT_EQ(Call("GET", loc).status, 404);
}

// ---- cross-repository mount --------------------------------------------------------

TEST_F(HandlerTest, CrossRepoMount) {
  std::string d = PushBlob("src", "shared layer");
  Response r = Call("POST", "/v2/dst/blobs/uploads/?mount=" + d + "&from=src");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(H(r, "Location"), "/v2/dst/blobs/" + d);
  EXPECT_EQ(H(r, "Docker-Content-Digest"), d);
  EXPECT_EQ(BodyOf(Call("GET", "/v2/dst/blobs/" + d)), "shared layer");
  // `from` lacks it: an upload session instead.
  r = Call("POST", "/v2/dst2/blobs/uploads/?mount=" + d + "&from=nothere");
  EXPECT_EQ(r.status, 202);
  EXPECT_NE(H(r, "Docker-Upload-UUID"), "<none>");
  // Unknown blob: upload session.
  r = Call("POST", "/v2/dst2/blobs/uploads/?mount=" + Digest("nope") + "&from=src");
  EXPECT_EQ(r.status, 202);
  // Automatic mount without `from`.
  r = Call("POST", "/v2/dst3/blobs/uploads/?mount=" + d);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(Call("HEAD", "/v2/dst3/blobs/" + d).status, 200);
  EXPECT_EQ(Code(Call("POST", "/v2/dst/blobs/uploads/?mount=sha256:zz&from=src")),
            "DIGEST_INVALID");
}

// ---- blob delete ----------------------------------------------------------------

TEST_F(HandlerTest, BlobDelete) {
  std::string d = PushBlob("a", "bye");
  EXPECT_EQ(Call("DELETE", "/v2/a/blobs/" + d).status, 202);
  EXPECT_EQ(Call("GET", "/v2/a/blobs/" + d).status, 404);
  EXPECT_EQ(Code(Call("DELETE", "/v2/a/blobs/" + d)), "BLOB_UNKNOWN");
  HandlerOptions o;
  o.delete_enabled = false;
  Reset(o);
  d = PushBlob("a", "stay");
  Response r = Call("DELETE", "/v2/a/blobs/" + d);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(Code(r), "UNSUPPORTED");
}

// ---- manifests ------------------------------------------------------------------

TEST_F(HandlerTest, ManifestPushPullByTagAndDigest) {
  // Odd whitespace: the bytes must come back exactly.
  std::string m = ImageManifest("lib/img") + "\n  ";
  std::string d = Digest(m);
  Response r = PutManifest("lib/img", "v1", m);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(H(r, "Docker-Content-Digest"), d);
  EXPECT_EQ(H(r, "Location"), "/v2/lib/img/manifests/" + d);
  EXPECT_EQ(H(r, "OCI-Subject"), "<none>");
  for (std::string ref : {std::string("v1"), d}) {
    r = Call("GET", "/v2/lib/img/manifests/" + ref);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(BodyOf(r), m);
    EXPECT_EQ(H(r, "Content-Type"), kOciManifest);
    EXPECT_EQ(H(r, "Docker-Content-Digest"), d);
    r = Call("HEAD", "/v2/lib/img/manifests/" + ref);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.ContentLength(), m.size());
  }
  // By digest only (no tag), then the blob endpoint serves it too.
  EXPECT_EQ(PutManifest("lib/img", d, m).status, 201);
  EXPECT_EQ(Call("GET", "/v2/lib/img/blobs/" + d).status, 200);
  // Retag.
  EXPECT_EQ(PutManifest("lib/img", "latest", m).status, 201);
  json::value tags = json::parse(Call("GET", "/v2/lib/img/tags/list").body);
  EXPECT_EQ(json::serialize(tags), "{\"name\":\"lib/img\",\"tags\":[\"latest\",\"v1\"]}");
}

TEST_F(HandlerTest, ManifestUnknown) {
  Response r = Call("GET", "/v2/a/manifests/latest");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Code(r), "MANIFEST_UNKNOWN");
  EXPECT_EQ(Code(Call("GET", "/v2/a/manifests/" + Digest("x"))), "MANIFEST_UNKNOWN");
  EXPECT_EQ(Code(Call("GET", "/v2/a/manifests/sha256:nothex")), "DIGEST_INVALID");
  EXPECT_EQ(Code(Call("GET", "/v2/a/manifests/-badtag")), "TAG_INVALID");
  EXPECT_EQ(Code(Call("GET", "/v2/a/manifests/..")), "TAG_INVALID");
}

TEST_F(HandlerTest, ManifestDockerSchema2AndTypes) {
  std::string cfg = PushBlob("d", "{}");
  std::string m = std::string("{\"schemaVersion\":2,\"mediaType\":\"") + kDockerManifest +
                  "\",\"config\":{\"mediaType\":\"application/"
                  "vnd.docker.container.image.v1+json\",\"digest\":\"" +
                  cfg + "\",\"size\":2},\"layers\":[]}";
  Response r = PutManifest("d", "t", m, kDockerManifest);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(H(Call("GET", "/v2/d/manifests/t"), "Content-Type"), kDockerManifest);
  // Content-Type disagreeing with mediaType.
  r = PutManifest("d", "t2", m, kOciManifest);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "MANIFEST_INVALID");
}

TEST_F(HandlerTest, ManifestValidation) {
  Response r = PutManifest("a", "t", "not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "MANIFEST_INVALID");
  EXPECT_EQ(Code(PutManifest("a", "t", "[1]")), "MANIFEST_INVALID");
  EXPECT_EQ(Code(PutManifest("a", "t", "{\"schemaVersion\":3}")), "MANIFEST_INVALID");
  // A Content-Type or mediaType that is not an RFC 6838 media type (found by
  // fuzz_manifest: a non-UTF-8 byte made the referrers index invalid JSON).
  std::string m0 = ImageManifest("a");
  EXPECT_EQ(Code(PutManifest("a", "t", m0, std::string(kOciManifest) + "\xff")),
            "MANIFEST_INVALID");
  EXPECT_EQ(Code(PutManifest("a", "t", m0, "no-slash")), "MANIFEST_INVALID");
  std::string odd = m0;
  odd.replace(odd.find(kOciManifest), strlen(kOciManifest), "x/y z");
  EXPECT_EQ(Code(PutManifest("a", "t", odd, "")), "MANIFEST_INVALID");
  // Schema 1, by Content-Type and by body.
  r = PutManifest("a", "t", "{\"schemaVersion\":1,\"name\":\"a\"}",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws");
  EXPECT_EQ(Code(r), "MANIFEST_INVALID");
  EXPECT_NE(r.body.find("schema1"), std::string::npos) << r.body;
  r = PutManifest("a", "t", "{\"schemaVersion\":1,\"name\":\"a\"}", "application/json");
  EXPECT_NE(r.body.find("schema1"), std::string::npos) << r.body;
  // Descriptor problems.
  std::string bad = std::string(
      "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:zz\",\"size\":1},\"layers\":[]}");
  EXPECT_EQ(Code(PutManifest("a", "t", bad)), "MANIFEST_INVALID");
  // Missing blobs.
  std::string missing = std::string("{\"schemaVersion\":2,\"mediaType\":\"") + kOciManifest +
                        "\",\"config\":{\"mediaType\":\"x\",\"digest\":\"" + Digest("cfg") +
                        "\",\"size\":3},\"layers\":[]}";
  r = PutManifest("a", "t", missing);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "MANIFEST_BLOB_UNKNOWN");
  // A blob that exists, but only in another repository, is unknown here.
  PushBlob("other", "cfg");
  EXPECT_EQ(Code(PutManifest("a", "t", missing)), "MANIFEST_BLOB_UNKNOWN");
  // Digest reference that does not match the body.
  std::string good = ImageManifest("a");
  r = PutManifest("a", Digest("something else"), good);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Code(r), "DIGEST_INVALID");
  EXPECT_EQ(Code(PutManifest("a", "bad/tag", good)),
            "NOT_FOUND");  // '/' is not part of a reference
  EXPECT_EQ(Code(PutManifest("a", ".tag", good)), "TAG_INVALID");
  // Nothing of the failed pushes is visible.
  EXPECT_EQ(Call("GET", "/v2/a/manifests/t").status, 404);
}

TEST_F(HandlerTest, ManifestTooLarge) {
  HandlerOptions o;
  o.max_manifest_bytes = 1000;
  Reset(o);
  std::string big(2000, ' ');
  Response r = PutManifest("a", "t", big);  // Content-Length says so: refused at once
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(Code(r), "SIZE_INVALID");
  Request req;  // no Content-Length (chunked): refused while streaming
  req.method = "PUT";
  req.target = "/v2/a/manifests/t";
  Dispatch d = handler_->Handle(req);
  ASSERT_TRUE(d.sink);
  Status st = d.sink->Write(big.data(), big.size());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(d.sink->Abort(st).status, 413);
}

TEST_F(HandlerTest, IndexRequiresItsManifests) {
  std::string m = ImageManifest("a");
  std::string md = Digest(m);
  std::string index = std::string("{\"schemaVersion\":2,\"mediaType\":\"") + kOciIndex +
                      "\",\"manifests\":[{\"mediaType\":\"" + kOciManifest + "\",\"digest\":\"" +
                      md + "\",\"size\":" + std::to_string(m.size()) +
                      ",\"platform\":{\"os\":\"linux\"}}]}";
  Response r = PutManifest("a", "multi", index, kOciIndex);
  EXPECT_EQ(Code(r), "MANIFEST_BLOB_UNKNOWN");
  ASSERT_EQ(PutManifest("a", md, m).status, 201);
  r = PutManifest("a", "multi", index, kOciIndex);
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(H(Call("GET", "/v2/a/manifests/multi"), "Content-Type"), kOciIndex);
  // Docker manifest list.
  std::string list = index;
  list.replace(list.find(kOciIndex), strlen(kOciIndex), kDockerList);
  EXPECT_EQ(PutManifest("a", "list", list, kDockerList).status, 201);
}

TEST_F(HandlerTest, ManifestDelete) {
  std::string m = ImageManifest("a");
  std::string d = Digest(m);
  PutManifest("a", "v1", m);
  PutManifest("a", "v2", m);
  EXPECT_EQ(Call("DELETE", "/v2/a/manifests/v1").status, 202);  // tag only
  EXPECT_EQ(Call("GET", "/v2/a/manifests/v1").status, 404);
  EXPECT_EQ(Call("GET", "/v2/a/manifests/v2").status, 200);
  EXPECT_EQ(Code(Call("DELETE", "/v2/a/manifests/v1")), "MANIFEST_UNKNOWN");
  EXPECT_EQ(Call("DELETE", "/v2/a/manifests/" + d).status, 202);  // revision and its tags
  EXPECT_EQ(Call("GET", "/v2/a/manifests/" + d).status, 404);
  EXPECT_EQ(Call("GET", "/v2/a/manifests/v2").status, 404);
  EXPECT_EQ(json::serialize(json::parse(Call("GET", "/v2/a/tags/list").body)),
            "{\"name\":\"a\",\"tags\":[]}");
  EXPECT_EQ(Code(Call("DELETE", "/v2/a/manifests/" + d)), "MANIFEST_UNKNOWN");
  HandlerOptions o;
  o.delete_enabled = false;
  Reset(o);
  EXPECT_EQ(Call("DELETE", "/v2/a/manifests/v1").status, 405);
}

// A storage whose removals fail after the first `budget` of them, as if the
// process died in the middle of a DELETE and the mount had saved what was done.
class CutShortStorage : public Storage {
 public:
  CutShortStorage(std::unique_ptr<Storage> s, int budget) : s_(std::move(s)), budget_(budget) {}
  Result<uint64_t> BlobSize(const std::string& h) override { return s_->BlobSize(h); }
  Result<std::pair<int, uint64_t>> OpenBlob(const std::string& h) override {
    return s_->OpenBlob(h);
  }
  Result<std::string> ReadBlob(const std::string& h, uint64_t max) override {
    return s_->ReadBlob(h, max);
  }
  Status RemoveBlob(const std::string& h) override { return s_->RemoveBlob(h); }
  Status CreateUpload(const std::string& id) override { return s_->CreateUpload(id); }
  Result<uint64_t> UploadSize(const std::string& id) override { return s_->UploadSize(id); }
  Result<std::unique_ptr<UploadWriter>> OpenUpload(const std::string& id,
                                                   uint64_t offset) override {
    return s_->OpenUpload(id, offset);
  }
  Status Publish(const std::string& id, const std::string& h) override {
    return s_->Publish(id, h);
  }
  Status RemoveUpload(const std::string& id) override { return s_->RemoveUpload(id); }
  Result<std::string> ReadFile(const std::string& rel, uint64_t max) override {
    return s_->ReadFile(rel, max);
  }
  bool Exists(const std::string& rel) override { return s_->Exists(rel); }
  Status WriteFile(const std::string& rel, const std::string& c) override {
    return s_->WriteFile(rel, c);
  }
  Status Sync() override { return s_->Sync(); }
  Status Remove(const std::string& rel) override {
    if (budget_-- <= 0) return Status::IOError("cut short before removing " + rel);
    return s_->Remove(rel);
  }
  Result<std::vector<std::string>> List(const std::string& rel) override { return s_->List(rel); }
  bool IsDir(const std::string& rel) override { return s_->IsDir(rel); }
  Result<int64_t> ModifiedAt(const std::string& rel) override { return s_->ModifiedAt(rel); }

 private:
  std::unique_ptr<Storage> s_;
  int budget_;
};

// A manifest DELETE cut short after any number of its removals leaves the
// manifest either deleted (by digest and by every tag) or whole: never alive
// but untagged (torture seed 870790752 found that state after a kill -9).
TEST_F(HandlerTest, ManifestDeleteCutShortIsAllOrNothing) {
  std::string m = ImageManifest("a");
  std::string d = Digest(m);
  for (int budget = 0; budget <= 3; ++budget) {
    Reset(HandlerOptions());
    ASSERT_EQ(PutManifest("a", "v1", m).status, 201);
    ASSERT_EQ(PutManifest("a", "v2", m).status, 201);
    storage_ = std::make_unique<CutShortStorage>(std::move(storage_), budget);
    handler_ = std::make_unique<Handler>(storage_.get(), nullptr, HandlerOptions());
    Call("DELETE", "/v2/a/manifests/" + d);
    int by_digest = Call("GET", "/v2/a/manifests/" + d).status;
    for (const char* tag : {"v1", "v2"})
      EXPECT_EQ(Call("GET", std::string("/v2/a/manifests/") + tag).status, by_digest)
          << "after " << budget << " removals: tag " << tag << " vs digest " << by_digest;
  }
}

// ---- garbage collection ------------------------------------------------------------

TEST_F(HandlerTest, GarbageCollection) {
  const int64_t now = ::time(nullptr);
  std::string m = ImageManifest("a", "layer-a");  // config + layer, referenced
  std::string md = Digest(m);
  ASSERT_EQ(PutManifest("a", "v1", m).status, 201);
  std::string loose = PushBlob("b", "pushed, never referenced");
  std::string shared = PushBlob("b", "layer-a");  // referenced through repository a
  auto blob_exists = [&](const std::string& d) {
    return std::filesystem::exists(dir_.path() + "/blobs/sha256/" + DigestHex(d));
  };

  // Everything was linked just now: the unreferenced blob is inside the grace period.
  auto r = handler_->CollectGarbage(3600, now);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->manifests, 1u);
  EXPECT_EQ(r->blobs_recent, 1u);
  EXPECT_EQ(r->blobs_deleted, 0u);
  EXPECT_TRUE(blob_exists(loose));

  // An hour later it goes, with its link; the referenced ones stay.
  r = handler_->CollectGarbage(3600, now + 3601);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blobs_deleted, 1u);
  EXPECT_EQ(r->bytes_deleted, std::string("pushed, never referenced").size());
  EXPECT_EQ(r->links_removed, 1u);
  EXPECT_FALSE(blob_exists(loose));
  EXPECT_TRUE(blob_exists(shared));
  EXPECT_EQ(Call("GET", "/v2/b/blobs/" + loose).status, 404);
  EXPECT_EQ(Call("GET", "/v2/b/blobs/" + shared).status, 200);
  EXPECT_EQ(Call("GET", "/v2/a/manifests/v1").status, 200);

  // A manifest that no longer parses stops the collection before anything goes.
  std::string mpath = dir_.path() + "/blobs/sha256/" + DigestHex(md);
  std::string saved = BodyOf(Call("GET", "/v2/a/manifests/v1"));
  { std::ofstream(mpath, std::ios::trunc) << "{not json"; }
  r = handler_->CollectGarbage(0, now + 7200);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(md), std::string::npos) << r.status().ToString();
  { std::ofstream(mpath, std::ios::trunc) << saved; }

  // Deleting the manifest frees its config and layers (the layer also through b).
  ASSERT_EQ(Call("DELETE", "/v2/a/manifests/" + md).status, 202);
  r = handler_->CollectGarbage(3600, now + 7200);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->manifests, 0u);
  EXPECT_EQ(r->blobs_deleted, 3u);  // config, layer and the manifest's own blob
  EXPECT_FALSE(blob_exists(md));
  EXPECT_FALSE(blob_exists(shared));
  // A manifest pushed now must not reference what the collector deleted.
  EXPECT_EQ(PutManifest("a", "v2", m).status, 400);
}

TEST_F(HandlerTest, GarbageCollectionKeepsIndexChildren) {
  std::string child = ImageManifest("a");
  ASSERT_EQ(PutManifest("a", Digest(child), child).status, 201);
  std::string index = std::string("{\"schemaVersion\":2,\"mediaType\":\"") + kOciIndex +
                      "\",\"manifests\":[{\"mediaType\":\"" + kOciManifest + "\",\"digest\":\"" +
                      Digest(child) + "\",\"size\":" + std::to_string(child.size()) + "}]}";
  ASSERT_EQ(PutManifest("a", "multi", index, kOciIndex).status, 201);
  auto r = handler_->CollectGarbage(0, ::time(nullptr) + 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->manifests, 2u);
  EXPECT_EQ(r->blobs_deleted, 0u);
  EXPECT_EQ(Call("GET", "/v2/a/manifests/multi").status, 200);
}

// ---- referrers ------------------------------------------------------------------

TEST_F(HandlerTest, ReferrersAndSubject) {
  std::string m = ImageManifest("a");
  std::string md = Digest(m);
  ASSERT_EQ(PutManifest("a", "v1", m).status, 201);
  std::string empty = PushBlob("a", "{}");
  std::string layer = PushBlob("a", "signature");
  auto artifact = [&](const std::string& type) {
    return std::string("{\"schemaVersion\":2,\"mediaType\":\"") + kOciManifest +
           "\",\"artifactType\":\"" + type +
           "\",\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"" +
           empty +
           "\",\"size\":2},\"layers\":[{\"mediaType\":\"application/octet-stream\",\"digest\":\"" +
           layer + "\",\"size\":9}],\"subject\":{\"mediaType\":\"" + kOciManifest +
           "\",\"digest\":\"" + md + "\",\"size\":" + std::to_string(m.size()) +
           "},\"annotations\":{\"k\":\"v\"}}";
  };
  std::string sig = artifact("application/vnd.example.sig"),
              sbom = artifact("application/vnd.example.sbom");
  Response r = PutManifest("a", Digest(sig), sig);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(H(r, "OCI-Subject"), md);
  ASSERT_EQ(PutManifest("a", Digest(sbom), sbom).status, 201);

  r = Call("GET", "/v2/a/referrers/" + md);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(H(r, "Content-Type"), kOciIndex);
  json::value idx = json::parse(r.body);
  EXPECT_EQ(idx.at("schemaVersion").as_int64(), 2);
  ASSERT_EQ(idx.at("manifests").as_array().size(), 2u);
  r = Call("GET", "/v2/a/referrers/" + md + "?artifactType=application%2Fvnd.example.sig");
  EXPECT_EQ(H(r, "OCI-Filters-Applied"), "artifactType");
  idx = json::parse(r.body);
  ASSERT_EQ(idx.at("manifests").as_array().size(), 1u);
  const json::value& desc = idx.at("manifests").at(0);
  EXPECT_EQ(desc.at("digest").as_string(), Digest(sig));
  EXPECT_EQ(desc.at("artifactType").as_string(), "application/vnd.example.sig");
  EXPECT_EQ(desc.at("size").to_number<uint64_t>(), sig.size());
  EXPECT_EQ(desc.at("annotations").at("k").as_string(), "v");
  // A subject that is unknown: still 200 and empty; the subject may come later.
  r = Call("GET", "/v2/a/referrers/" + Digest("nothing"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body).at("manifests").as_array().size(), 0u);
  EXPECT_EQ(Code(Call("GET", "/v2/a/referrers/sha256:zz")), "DIGEST_INVALID");
  // Deleting the referrer removes it from the list.
  EXPECT_EQ(Call("DELETE", "/v2/a/manifests/" + Digest(sig)).status, 202);
  EXPECT_EQ(
      json::parse(Call("GET", "/v2/a/referrers/" + md).body).at("manifests").as_array().size(), 1u);
}

// ---- discovery ------------------------------------------------------------------

TEST_F(HandlerTest, TagsListPagination) {
  std::string m = ImageManifest("a");
  for (const char* t : {"c", "a", "b", "d"}) ASSERT_EQ(PutManifest("a", t, m).status, 201);
  Response r = Call("GET", "/v2/a/tags/list?n=2");
  EXPECT_EQ(json::serialize(json::parse(r.body)), "{\"name\":\"a\",\"tags\":[\"a\",\"b\"]}");
  EXPECT_EQ(H(r, "Link"), "</v2/a/tags/list?n=2&last=b>; rel=\"next\"");
  r = Call("GET", "/v2/a/tags/list?n=2&last=b");
  EXPECT_EQ(json::serialize(json::parse(r.body)), "{\"name\":\"a\",\"tags\":[\"c\",\"d\"]}");
  EXPECT_EQ(H(r, "Link"), "<none>");
  r = Call("GET", "/v2/a/tags/list?n=0");
  EXPECT_EQ(json::serialize(json::parse(r.body)), "{\"name\":\"a\",\"tags\":[]}");
  EXPECT_EQ(Call("GET", "/v2/a/tags/list?n=x").status, 400);
  r = Call("GET", "/v2/nosuch/tags/list");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Code(r), "NAME_UNKNOWN");
}

TEST_F(HandlerTest, CatalogPagination) {
  for (const char* repo : {"b", "a/x", "a", "c/d/e"}) PushBlob(repo, "z");
  Response r = Call("GET", "/v2/_catalog");
  EXPECT_EQ(json::serialize(json::parse(r.body)),
            "{\"repositories\":[\"a\",\"a/x\",\"b\",\"c/d/e\"]}");
  r = Call("GET", "/v2/_catalog?n=3");
  EXPECT_EQ(json::serialize(json::parse(r.body)), "{\"repositories\":[\"a\",\"a/x\",\"b\"]}");
  EXPECT_EQ(H(r, "Link"), "</v2/_catalog?n=3&last=b>; rel=\"next\"");
  r = Call("GET", "/v2/_catalog?n=3&last=b");
  EXPECT_EQ(json::serialize(json::parse(r.body)), "{\"repositories\":[\"c/d/e\"]}");
}

// ---- read-only and auth -----------------------------------------------------------

TEST_F(HandlerTest, ReadOnly) {
  std::string d = PushBlob("a", "x");
  HandlerOptions o;
  o.read_only = true;
  Reset(o);
  for (auto [m, t] : {std::pair<const char*, std::string>{"POST", "/v2/a/blobs/uploads/"},
                      {"PUT", "/v2/a/manifests/t"},
                      {"DELETE", "/v2/a/blobs/" + d},
                      {"PATCH", "/v2/a/blobs/uploads/" + std::string(32, 'a')}}) {
    Response r = Call(m, t);
    EXPECT_EQ(r.status, 405) << m;
    EXPECT_EQ(Code(r), "UNSUPPORTED");
  }
  EXPECT_EQ(Call("GET", "/v2/a/blobs/" + d).status, 200);
}

std::string Bcrypt(const std::string& pass) {
  char salt[64];
  EXPECT_NE(crypt_gensalt_rn("$2y$", 5, nullptr, 0, salt, sizeof salt), nullptr);
  struct crypt_data data;
  memset(&data, 0, sizeof data);
  return crypt_r(pass.c_str(), salt, &data);
}

std::string Basic(const std::string& user_pass) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < user_pass.size(); i += 3) {
    unsigned v = (unsigned char)user_pass[i] << 16 | (unsigned char)user_pass[i + 1] << 8 |
                 (unsigned char)user_pass[i + 2];
    for (int s = 18; s >= 0; s -= 6) out.push_back(k[(v >> s) & 63]);
  }
  if (i < user_pass.size()) {
    unsigned v = (unsigned char)user_pass[i] << 16 |
                 (i + 1 < user_pass.size() ? (unsigned char)user_pass[i + 1] << 8 : 0);
    out.push_back(k[(v >> 18) & 63]);
    out.push_back(k[(v >> 12) & 63]);
    out.push_back(i + 1 < user_pass.size() ? k[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return "Basic " + out;
}

TEST(Base64, RoundTrip) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "alice:secret"})
    EXPECT_EQ(Base64Decode(Basic(s).substr(6)), s);
  EXPECT_FALSE(Base64Decode("a$b="));
  EXPECT_FALSE(Base64Decode("ab=c"));
}

TEST_F(HandlerTest, BasicAuthAndPermissions) {
  std::string htpasswd = "alice:" + Bcrypt("wonder") + "\nbob:" + Bcrypt("builder") + "\n";
  auto auth =
      Auth::FromStrings(htpasswd,
                        "# rules\nalice * pull,push,delete\nbob team/* pull,push\nbob * pull\n"
                        "anonymous public/* pull\n",
                        true);
  ASSERT_TRUE(auth.ok()) << auth.status().ToString();
  Reset(HandlerOptions(), auth->get());
  std::map<std::string, std::string> alice{{"authorization", Basic("alice:wonder")}};
  std::map<std::string, std::string> bob{{"authorization", Basic("bob:builder")}};

  Response r = Call("GET", "/v2/");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(Code(r), "UNAUTHORIZED");
  EXPECT_EQ(H(r, "WWW-Authenticate"), "Basic realm=\"coffer\"");
  EXPECT_EQ(Call("GET", "/v2/", "", {{"authorization", Basic("alice:wrong")}}).status, 401);
  EXPECT_EQ(Call("GET", "/v2/", "", {{"authorization", Basic("mallory:x")}}).status, 401);
  EXPECT_EQ(Call("GET", "/v2/", "", {{"authorization", "Basic !!!"}}).status, 401);
  EXPECT_EQ(Call("GET", "/v2/", "", {{"authorization", "Bearer abc"}}).status, 401);
  EXPECT_EQ(Call("GET", "/v2/", "", alice).status, 200);
  EXPECT_EQ(Call("GET", "/v2/", "", alice).status, 200);  // cached verification

  std::string d = Digest("blob");
  EXPECT_EQ(Call("POST", "/v2/team/x/blobs/uploads/?digest=" + d, "blob", bob).status, 201);
  r = Call("POST", "/v2/other/blobs/uploads/?digest=" + d, "blob", bob);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(Code(r), "DENIED");
  EXPECT_EQ(Call("GET", "/v2/team/x/blobs/" + d, "", bob).status, 200);
  EXPECT_EQ(Call("DELETE", "/v2/team/x/blobs/" + d, "", bob).status, 403);
  r = Call("GET", "/v2/team/x/blobs/" + d);  // anonymous, not public
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(
      Call("POST", "/v2/public/p/blobs/uploads/?mount=" + d + "&from=team/x", "", alice).status,
      201);
  EXPECT_EQ(Call("GET", "/v2/public/p/blobs/" + d).status, 200);  // anonymous pull of public/*
  EXPECT_EQ(Call("DELETE", "/v2/team/x/blobs/" + d, "", alice).status, 202);
  // The catalog lists only what the user may pull.
  r = Call("GET", "/v2/_catalog", "", bob);
  EXPECT_EQ(json::serialize(json::parse(r.body)), "{\"repositories\":[\"public/p\",\"team/x\"]}");
}

// Token auth with the built-in issuer: the flow docker follows.
TEST_F(HandlerTest, BearerTokenFlow) {
  auto auth = Auth::FromStrings("alice:" + Bcrypt("wonder") + "\nbob:" + Bcrypt("builder") + "\n",
                                "alice * pull,push,delete\nbob * pull\n", true);
  ASSERT_TRUE(auth.ok());
  auto token = TokenAuthority::Ephemeral("coffer", "coffer-registry");
  ASSERT_TRUE(token.ok());
  HandlerOptions opts;
  opts.token = token->get();
  Reset(opts, auth->get());
  std::map<std::string, std::string> host{{"host", "127.0.0.1:5000"}};

  // 1. Refused with a challenge naming the realm, service and needed scope.
  Response r = Call("GET", "/v2/", "", host);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(H(r, "WWW-Authenticate"),
            "Bearer realm=\"http://127.0.0.1:5000/token\",service=\"coffer-registry\"");
  r = Call("POST", "/v2/team/x/blobs/uploads/", "", host);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(H(r, "WWW-Authenticate").find("scope=\"repository:team/x:push\""), std::string::npos);
  // Basic credentials are not accepted on /v2/ in token mode.
  EXPECT_EQ(Call("GET", "/v2/", "", {{"authorization", Basic("alice:wonder")}}).status, 401);

  // 2. The token endpoint: wrong password 401; a grant never exceeds the rules.
  std::string q = "/token?service=coffer-registry&scope=repository%3Ateam%2Fx%3Apull%2Cpush";
  EXPECT_EQ(Call("GET", q, "", {{"authorization", Basic("alice:nope")}}).status, 401);
  EXPECT_EQ(
      Call("GET", "/token?service=other", "", {{"authorization", Basic("alice:wonder")}}).status,
      400);
  auto get_token = [&](const std::string& user_pass) {
    Response t = Call("GET", q, "", {{"authorization", Basic(user_pass)}});
    EXPECT_EQ(t.status, 200) << t.body;
    return std::string(json::parse(t.body).at("token").as_string());
  };
  std::string alice = "Bearer " + get_token("alice:wonder");
  std::string bob = "Bearer " + get_token("bob:builder");

  // 3. The token opens what it grants, and only that.
  EXPECT_EQ(Call("GET", "/v2/", "", {{"authorization", alice}}).status, 200);
  std::string d = Digest("blob");
  EXPECT_EQ(
      Call("POST", "/v2/team/x/blobs/uploads/?digest=" + d, "blob", {{"authorization", alice}})
          .status,
      201);
  EXPECT_EQ(Call("GET", "/v2/team/x/blobs/" + d, "", {{"authorization", bob}}).status, 200);
  r = Call("POST", "/v2/team/x/blobs/uploads/", "", {{"authorization", bob}});  // pull only
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(H(r, "WWW-Authenticate").find("error=\"insufficient_scope\""), std::string::npos);
  r = Call("GET", "/v2/other/tags/list", "", {{"authorization", alice}});  // other repository
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(Call("GET", "/v2/_catalog", "", {{"authorization", alice}}).status, 401);
  // A tampered token is refused.
  std::string bad = alice;
  bad[bad.size() / 2] = bad[bad.size() / 2] == 'A' ? 'B' : 'A';
  r = Call("GET", "/v2/", "", {{"authorization", bad}});
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(H(r, "WWW-Authenticate").find("error=\"invalid_token\""), std::string::npos);
  // Several scopes at once, and the catalog scope.
  r = Call("GET",
           "/token?scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull%2Cpush"
           "&scope=registry%3Acatalog%3A*",
           "", {{"authorization", Basic("bob:builder")}});
  ASSERT_EQ(r.status, 200);
  std::string multi = "Bearer " + std::string(json::parse(r.body).at("token").as_string());
  EXPECT_EQ(Call("GET", "/v2/_catalog", "", {{"authorization", multi}}).status, 200);
  EXPECT_EQ(Call("POST", "/v2/b/blobs/uploads/", "", {{"authorization", multi}}).status, 401);
}

TEST(Auth, RejectsNonBcryptAndBadRules) {
  EXPECT_FALSE(Auth::FromStrings("alice:{SHA}abc\n", "", true).ok());
  EXPECT_FALSE(Auth::FromStrings("", "alice repo fly\n", true).ok());
  EXPECT_FALSE(Auth::FromStrings("", "alice\n", true).ok());
  auto a = Auth::FromStrings("", "", true);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE((*a)->Allowed("someone", "x", kPull | kPush | kDelete));
  EXPECT_FALSE((*a)->Allowed("", "x", kPull));
}

}  // namespace
}  // namespace cofferregistry
