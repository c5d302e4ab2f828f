// The job secret (runtime/wire/security.h): reading and checking the file, deriving the keys
// and job id, writing a fresh one.
#include "runtime/wire/security.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "tests/temp_dir.h"

namespace pstrain {
namespace {

std::string write(const std::string& path, const std::string& bytes, mode_t mode) {
  std::ofstream(path, std::ios::binary) << bytes;
  ::chmod(path.c_str(), mode);
  return path;
}

TEST(Security, CurveIsAvailable) { EXPECT_TRUE(curve_available()); }

TEST(Security, SameSecretSameKeysDifferentSecretDifferentKeys) {
  const std::string a(32, 'a'), b = std::string(31, 'a') + "b";
  auto ka = derive_job_keys(a), ka2 = derive_job_keys(a), kb = derive_job_keys(b);
  ASSERT_TRUE(ka.ok() && ka2.ok() && kb.ok());
  EXPECT_EQ(ka->server_public, ka2->server_public);
  EXPECT_EQ(ka->server_secret, ka2->server_secret);
  EXPECT_EQ(ka->client_public, ka2->client_public);
  EXPECT_EQ(ka->client_secret, ka2->client_secret);
  EXPECT_EQ(ka->job_id, ka2->job_id);
  EXPECT_NE(ka->server_public, kb->server_public);
  EXPECT_NE(ka->client_public, kb->client_public);
  EXPECT_NE(ka->job_id, kb->job_id);
  // Distinct contexts: the server and client pairs of one secret differ.
  EXPECT_NE(ka->server_public, ka->client_public);
  for (const std::string* k :
       {&ka->server_public, &ka->server_secret, &ka->client_public, &ka->client_secret}) {
    EXPECT_EQ(k->size(), 32u);
  }
  EXPECT_NE(ka->job_id, 0u);
}

TEST(Security, ShortSecretRefused) {
  auto k = derive_job_keys(std::string(31, 'x'));
  EXPECT_FALSE(k.ok());
}

TEST(Security, FileChecks) {
  testing_util::TempDir tmp("pstrain_security");
  const std::string good = write(tmp / "good", std::string(40, 'g'), 0600);
  auto keys = load_job_keys(good);
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  EXPECT_EQ(keys->secret_file, good);
  EXPECT_EQ(keys->job_id, derive_job_keys(std::string(40, 'g'))->job_id);

  const std::string short_file = write(tmp / "short", std::string(16, 's'), 0600);
  auto s = read_secret_file(short_file);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find(short_file), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find("head -c 32 /dev/urandom"), std::string::npos);

  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    const std::string open_file = write(tmp / "open", std::string(32, 'o'), mode);
    auto o = read_secret_file(open_file);
    ASSERT_FALSE(o.ok()) << std::oct << mode;
    EXPECT_NE(o.status().message().find("chmod 600 " + open_file), std::string::npos)
        << o.status().message();
  }

  auto missing = read_secret_file(tmp / "missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing"), std::string::npos);
}

TEST(Security, WriteSecretFile) {
  testing_util::TempDir tmp("pstrain_security");
  const std::string path = tmp / "secret";
  ASSERT_TRUE(write_secret_file(path).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  auto secret = read_secret_file(path);
  ASSERT_TRUE(secret.ok()) << secret.status().message();
  EXPECT_FALSE(write_secret_file(path).ok());  // never overwrites
  const std::string other = tmp / "other";
  ASSERT_TRUE(write_secret_file(other).ok());
  EXPECT_NE(*read_secret_file(other), *secret);
}

}  // namespace
}  // namespace pstrain
