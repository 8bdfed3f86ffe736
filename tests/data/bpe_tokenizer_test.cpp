#include "saliq/bpe_tokenizer.h"

#include <cstdlib>
#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/file.h"
#include "test_utils.h"

namespace saliq {
namespace {

using nlohmann::json;

// A byte-level vocabulary: the 256 byte characters (GPT-2's alphabet: ' ' is "Ġ", '\n' is "Ċ"), a few merges and
// two special tokens.
json tiny_tokenizer(const json& pre_tokenizer) {
    json vocab = json::object();
    int id = 0;
    auto spell = [](int b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int next = 256;
        for (int c = 0; c < b; ++c)
            if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) ++next;
        const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next);
        std::string s;
        if (cp < 0x80) s += static_cast<char>(cp);
        else { s += static_cast<char>(0xC0 | (cp >> 6)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
        return s;
    };
    for (int b = 0; b < 256; ++b) vocab[spell(b)] = id++;
    const json merges = {"l o", "lo w", "Ġ low", "e r", "Ġlow er", "1 2"};
    for (const auto& m : merges) {
        std::string s = m.get<std::string>();
        s.erase(s.find(' '), 1);
        vocab[s] = id++;
    }
    return {{"added_tokens", {{{"id", id}, {"content", "<|bos|>"}, {"special", true}},
                              {{"id", id + 1}, {"content", "<|eos|>"}, {"special", true}}}},
            {"normalizer", nullptr},
            {"pre_tokenizer", pre_tokenizer},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

const json kByteLevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};

TEST(BpeTokenizer, MergesByRankAndMatchesSpecialTokens) {
    auto tok = BpeTokenizer::create(tiny_tokenizer(kByteLevel), json(), "tiny");
    EXPECT_EQ(tok->vocab_size(), 264);
    // Bytes have ids 0-255 in byte order, then the merges' results in rank order: lo 256, low 257, Ġlow 258,
    // er 259, Ġlower 260, 12 261; the special tokens 262, 263.
    const int32_t low = 257, space_low = 258, space_lower = 260;
    EXPECT_EQ(tok->encode("low"), (std::vector<int32_t>{low}));
    EXPECT_EQ(tok->encode(" lower"), (std::vector<int32_t>{space_lower}));
    EXPECT_EQ(tok->encode("a lowly"), (std::vector<int32_t>{'a', space_low, 'l', 'y'}));
    EXPECT_EQ(tok->encode("x<|eos|>low"), (std::vector<int32_t>{'x', 263, low}));
    EXPECT_EQ(tok->piece(space_low), "\xC4\xA0low");  // "Ġlow"
    EXPECT_EQ(tok->piece_type(262), 3);
    EXPECT_EQ(tok->piece_type(low), 1);
    EXPECT_FALSE(tok->add_bos());
    EXPECT_TRUE(tok->prefix().empty());
    EXPECT_THROW(tok->piece(264), ConfigError);
    const std::string text = "Hello\n  naïve café ☕ lower<|bos|> 123";
    EXPECT_EQ(tok->decode(tok->encode(text)), text);
    const std::string invalid("a\xFF\xFE b", 5);  // not UTF-8: still round-trips byte for byte
    EXPECT_EQ(tok->decode(tok->encode(invalid)), invalid);
}

TEST(BpeTokenizer, DigitsAndSplitStepsRunInSequence) {
    const json digits = {{"type", "Sequence"},
                         {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, kByteLevel}}};
    auto tok = BpeTokenizer::create(tiny_tokenizer(digits), json(), "tiny");
    EXPECT_EQ(tok->encode("12"), (std::vector<int32_t>{'1', '2'}));  // the digits never meet the "1 2" merge
    auto plain = BpeTokenizer::create(tiny_tokenizer(kByteLevel), json(), "tiny");
    EXPECT_EQ(plain->encode("12"), (std::vector<int32_t>{261}));
    const json removed = {{"type", "Sequence"},
                          {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", "Removed"}},
                                             kByteLevel}}};
    auto split = BpeTokenizer::create(tiny_tokenizer(removed), json(), "tiny");
    EXPECT_EQ(split->encode("lo-w"), (std::vector<int32_t>{256, 'w'}));
}

TEST(BpeTokenizer, BosFromTheConfigOrTheTemplate) {
    json doc = tiny_tokenizer(kByteLevel);
    auto a = BpeTokenizer::create(doc, {{"bos_token", "<|bos|>"}, {"eos_token", {{"content", "<|eos|>"}}},
                                        {"add_bos_token", true}}, "tiny");
    EXPECT_EQ(a->bos_id(), 262);
    EXPECT_EQ(a->eos_id(), 263);
    EXPECT_EQ(a->prefix(), (std::vector<int32_t>{262}));
    doc["post_processor"] = {{"type", "TemplateProcessing"},
                             {"single", {{{"SpecialToken", {{"id", "<|bos|>"}, {"type_id", 0}}}},
                                         {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
    auto b = BpeTokenizer::create(doc, json(), "tiny");  // LLaMA-3's way: the template puts BOS first
    EXPECT_TRUE(b->add_bos());
    EXPECT_EQ(b->bos_id(), 262);
}

TEST(BpeTokenizer, TokenizersItCannotRunAreRefusedWithTheReason) {
    auto expect_config_error = [](const json& doc, const std::string& what) {
        try {
            BpeTokenizer::create(doc, json(), "x/tokenizer.json");
            ADD_FAILURE() << what;
        } catch (const ConfigError& e) {
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
    };
    expect_config_error(tiny_tokenizer({{"type", "Metaspace"}}), "Metaspace");
    json nfc = tiny_tokenizer(kByteLevel);
    nfc["normalizer"] = {{"type", "NFC"}};
    expect_config_error(nfc, "NFC");
    json wordpiece = tiny_tokenizer(kByteLevel);
    wordpiece["model"]["type"] = "WordPiece";
    expect_config_error(wordpiece, "WordPiece");
    json bad_merge = tiny_tokenizer(kByteLevel);
    bad_merge["model"]["merges"].push_back("zz q");
    EXPECT_THROW(BpeTokenizer::create(bad_merge, json(), "x"), FormatError);
    EXPECT_THROW(BpeTokenizer::create(json::array(), json(), "x"), FormatError);
    // Fields of the wrong JSON type are malformed files (the fuzzer's first finding: "type" an object).
    json typed = tiny_tokenizer({{"type", {{"not", "a string"}}}});
    EXPECT_THROW(BpeTokenizer::create(typed, json(), "x"), FormatError);
    json behavior = tiny_tokenizer({{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", 3}});
    EXPECT_THROW(BpeTokenizer::create(behavior, json(), "x"), FormatError);
}

TEST(BpeTokenizer, AFewTokensClaimingAHugeIdAreRefusedBeforeThePieceTableIsSized) {
    json sparse = tiny_tokenizer(kByteLevel);
    sparse["added_tokens"][1]["id"] = 16000000;  // would size a 16M-entry table for 264 tokens
    try {
        BpeTokenizer::create(sparse, json(), "x/tokenizer.json");
        ADD_FAILURE() << "a 16M-id tokenizer of 264 tokens was accepted";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("16000000"), std::string::npos) << e.what();
    }
}

// One id a string, one string an id, one rank a merge: otherwise decoding prints whichever entry was written last
// (tokens[id]) and a repeated merge keeps the first rank where tokenizers keeps the last.
TEST(BpeTokenizer, AmbiguousIdsAndRepeatedMergesAreRefused) {
    auto message_for = [](const std::function<void(json&)>& edit) {
        json doc = tiny_tokenizer(kByteLevel);
        edit(doc);
        return test::error_of([&] { BpeTokenizer::create(doc, json(), "x/tokenizer.json"); });
    };
    auto refused = [&](const std::function<void(json&)>& edit, const std::string& words) {
        const std::string message = message_for(edit);
        EXPECT_NE(message.find("x/tokenizer.json"), std::string::npos) << message;
        return message.find(words) != std::string::npos;
    };
    EXPECT_TRUE(refused([](json& d) { d["model"]["merges"].push_back("l o"); }, "merge 'l o' is listed twice"));
    EXPECT_TRUE(refused([](json& d) { d["model"]["vocab"]["zz"] = 5; }, "share id 5"));
    EXPECT_TRUE(refused([](json& d) { d["added_tokens"][1]["id"] = 262; }, "takes id 262, which is '<|bos|>'"));
    EXPECT_TRUE(refused([](json& d) { d["added_tokens"][0]["id"] = 97; }, "takes id 97, which is 'a'"));
    EXPECT_TRUE(refused([](json& d) { d["added_tokens"].push_back({{"id", 264}, {"content", "<|bos|>"}}); },
                        "'<|bos|>' is listed twice (ids 262 and 264)"));
    EXPECT_TRUE(refused([](json& d) { d["added_tokens"].push_back({{"id", 264}, {"content", "low"}}); },
                        "'low' has id 264, the vocab gives it 257"));
    // An added token restating its vocab entry, as tokenizer.json files do for their special tokens, is fine.
    EXPECT_EQ(message_for([](json& d) { d["added_tokens"].push_back({{"id", 257}, {"content", "low"}}); }),
              "<no error>");
}

TEST(BpeTokenizer, LoadsTokenizerJsonWithItsConfigBeside) {
    test::TempDir dir;
    test::write_bytes(dir.file("tokenizer.json"), tiny_tokenizer(kByteLevel).dump());
    test::write_bytes(dir.file("tokenizer_config.json"), R"({"bos_token": "<|bos|>", "add_bos_token": false})");
    auto tok = Tokenizer::load(dir.file("tokenizer.json"));
    EXPECT_TRUE(tok->is_bpe());
    EXPECT_EQ(tok->file_name(), "tokenizer.json");
    EXPECT_EQ(tok->bos_id(), 262);
    EXPECT_FALSE(tok->add_bos());
    test::write_bytes(dir.file("broken.json"), "{\"model\": ");
    EXPECT_THROW(Tokenizer::load(dir.file("broken.json")), FormatError);
}

// SmolLM2-135M's vocabulary (scripts/fetch_models.sh); ids from Hugging Face's tokenizers (scripts/check_bpe.sh
// compares whole files).
TEST(BpeTokenizer, SmolLM2KnownIds) {
    const char* env = std::getenv("SALIQ_MODELS_DIR");
    const std::string models = env != nullptr ? env : std::string(std::getenv("HOME") ? std::getenv("HOME") : "") + "/.cache/saliq/models";
    const std::string path = models + "/SmolLM2-135M-Instruct/tokenizer.json";
    if (!path_exists(path)) GTEST_SKIP() << path << " is absent (scripts/fetch_models.sh)";
    auto tok = Tokenizer::load(path);
    EXPECT_EQ(tok->vocab_size(), 49152);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_FALSE(tok->add_bos());
    EXPECT_EQ(tok->encode("Hello world!"), (std::vector<int32_t>{19556, 905, 17}));
    EXPECT_EQ(tok->encode(" 2024<|im_start|>user"), (std::vector<int32_t>{216, 34, 32, 34, 36, 1, 4093}));
}

}  // namespace
}  // namespace saliq
