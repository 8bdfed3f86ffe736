#include "saliq/tokenizer.h"

#include "saliq/error.h"
#include "test_utils.h"

namespace saliq {
namespace {

TEST(Tokenizer, Stories512RoundTripsText) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    EXPECT_EQ(tok->vocab_size(), 512);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    const std::string text = "Once upon a time, there was a little girl named Lily.\nShe said \"hi\" - naïve café ☕";
    const auto ids = tok->encode(text);
    EXPECT_GT(ids.size(), 10u);
    for (int32_t id : ids) EXPECT_TRUE(id >= 3 && id < 512) << id;  // no unk, no specials
    EXPECT_EQ(tok->decode(ids), text);
}

TEST(Tokenizer, LlamaTokenizerKnownIds) {
    auto tok = Tokenizer::load(test::data_path("tokenizers/llama/tokenizer.model"));
    EXPECT_EQ(tok->vocab_size(), 32000);
    EXPECT_EQ(tok->encode("Hello world"), (std::vector<int32_t>{15043, 3186}));
    EXPECT_EQ(tok->piece(15043), "▁Hello");
    EXPECT_EQ(tok->decode({15043, 3186}), "Hello world");
}

TEST(Tokenizer, LongTextGrowsTheBuffer) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    std::string text;
    for (int i = 0; i < 2000; ++i) text += "a b c d e f ";  // one token per char pair: beyond the first guess
    const auto ids = tok->encode(text);
    EXPECT_GT(ids.size(), text.size() / 3);
    EXPECT_EQ(tok->decode(ids), text.substr(0, text.size() - 1));  // SentencePiece drops the trailing space
}

TEST(Tokenizer, MissingAndBrokenFilesAreClearErrors) {
    EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.model"), IoError);
    test::TempDir dir;
    test::write_bytes(dir.file("bad.model"), "this is not a protobuf");
    try {
        Tokenizer::load(dir.file("bad.model"));
        FAIL();
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("bad.model"), std::string::npos);
    }
}

TEST(Tokenizer, PieceOutsideVocabularyIsRefused) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    EXPECT_THROW(tok->piece(512), ConfigError);
}

// A piece longer than the first buffer is read whole (it was cut at 256 bytes): stories260K's model with a 300-byte
// piece appended, as one more entry of ModelProto's repeated `pieces` (field 1: piece, score, type NORMAL).
TEST(Tokenizer, LongPiecesAreReadWhole) {
    const std::string piece(300, 'x');
    auto varint = [](uint64_t v) {
        std::string out;
        for (; v >= 0x80; v >>= 7) out += static_cast<char>(0x80 | (v & 0x7f));
        return out + static_cast<char>(v);
    };
    const float score = -100.0f;
    std::string entry = "\x0a" + varint(piece.size()) + piece + "\x15";
    entry.append(reinterpret_cast<const char*>(&score), 4);
    entry += std::string("\x18\x01", 2);
    test::TempDir dir;
    test::write_bytes(dir.file("long.model"),
                      test::read_bytes(test::stories_tokenizer()) + "\x0a" + varint(entry.size()) + entry);
    auto tok = Tokenizer::load(dir.file("long.model"));
    ASSERT_EQ(tok->vocab_size(), 513);
    EXPECT_EQ(tok->piece(512), piece);
    EXPECT_EQ(tok->piece(15), Tokenizer::load(test::stories_tokenizer())->piece(15));  // short pieces as before
}

}  // namespace
}  // namespace saliq
