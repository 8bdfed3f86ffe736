#include "saliq/token_cache.h"

#include <cstdlib>
#include <fstream>

#include "saliq/corpus.h"
#include "saliq/file.h"
#include "saliq/tokenizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

// Points SALIQ_CACHE_DIR at `value` for one test (the test binary runs with the cache off).
class CacheDirScope {
public:
    explicit CacheDirScope(const std::string& value) {
        if (const char* old = std::getenv("SALIQ_CACHE_DIR")) old_ = old, had_ = true;
        setenv("SALIQ_CACHE_DIR", value.c_str(), 1);
    }
    ~CacheDirScope() { had_ ? (void)setenv("SALIQ_CACHE_DIR", old_.c_str(), 1) : (void)unsetenv("SALIQ_CACHE_DIR"); }

private:
    std::string old_;
    bool had_ = false;
};

std::vector<std::string> entries(const std::string& dir) {
    return path_exists(dir) ? list_directory(dir) : std::vector<std::string>{};
}

TEST(TokenCache, SecondEncodeReadsTheEntryAndMatchesTheTokenizer) {
    test::TempDir tmp;
    CacheDirScope scope(tmp.path());
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const std::string text = corpus_text("tinystories");
    ASSERT_GE(text.size(), 64u * 1024u);
    const auto direct = tok->encode(text);
    EXPECT_EQ(encode_cached(*tok, text), direct);
    const std::string dir = tmp.path() + "/tokens";
    ASSERT_EQ(entries(dir).size(), 1u);
    EXPECT_EQ(encode_cached(*tok, text), direct);  // from the entry
    EXPECT_EQ(entries(dir).size(), 1u);
    // Another text is another entry.
    EXPECT_EQ(encode_cached(*tok, text + " The end."), tok->encode(text + " The end."));
    EXPECT_EQ(entries(dir).size(), 2u);
}

TEST(TokenCache, DamagedEntryIsPassedOverAndRewritten) {
    test::TempDir tmp;
    CacheDirScope scope(tmp.path());
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const std::string text = corpus_text("tinystories");
    const auto direct = encode_cached(*tok, text);
    const std::string entry = tmp.path() + "/tokens/" + entries(tmp.path() + "/tokens").at(0);
    const uint64_t size = file_size(entry);
    {  // one token changed: sizes still agree, the checksum does not
        std::fstream f(entry, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(24);
        const char byte = static_cast<char>(f.get());
        f.seekp(24);
        f.put(static_cast<char>(byte ^ 0x55));
    }
    EXPECT_EQ(encode_cached(*tok, text), direct);
    EXPECT_EQ(file_size(entry), size);
    EXPECT_EQ(encode_cached(*tok, text), direct);
    {  // truncated
        std::ofstream f(entry, std::ios::binary | std::ios::trunc);
        f << "SALIQTOK";
    }
    EXPECT_EQ(encode_cached(*tok, text), direct);
    EXPECT_EQ(file_size(entry), size);
}

TEST(TokenCache, OffOrUnwritableCacheStillEncodes) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const std::string text = corpus_text("tinystories");
    const auto direct = tok->encode(text);
    {
        CacheDirScope scope("off");
        EXPECT_EQ(token_cache_dir(), "");
        EXPECT_EQ(encode_cached(*tok, text), direct);
    }
    test::TempDir tmp;
    const std::string blocker = tmp.path() + "/file";
    std::ofstream(blocker) << "not a folder";
    CacheDirScope scope(blocker);  // <file>/tokens cannot be made
    EXPECT_EQ(encode_cached(*tok, text), direct);
}

}  // namespace
}  // namespace saliq
