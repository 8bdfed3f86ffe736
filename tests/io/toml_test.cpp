// The TOML subset saliq's configs use, and its refusals with the line they are on.
#include "saliq/error.h"
#include "saliq/toml.h"
#include "test_utils.h"

namespace saliq {
namespace {

TEST(Toml, ReadsTablesArraysOfTablesAndEveryValueKind) {
    const nlohmann::json j = parse_toml(R"(# comment
top = "level"   # trailing comment
[table]
title = "W2 \"g32\"\tx"
path = 'C:\raw #not a comment'
seeds = [0, 1,
         2]  # continued over lines
ratio = 1.5e-3
big = 1_000
on = true
off = false
neg = -4
"quoted key" = "v"

[[row]]
name = "a"
args = ["--bits", "2"]

[[row]]
name = "b"
[row.sub]
x = 1
)", "t.toml");
    EXPECT_EQ(j["top"], "level");
    EXPECT_EQ(j["table"]["title"], "W2 \"g32\"\tx");
    EXPECT_EQ(j["table"]["path"], "C:\\raw #not a comment");
    EXPECT_EQ(j["table"]["seeds"], nlohmann::json::array({0, 1, 2}));
    EXPECT_DOUBLE_EQ(j["table"]["ratio"].get<double>(), 1.5e-3);
    EXPECT_EQ(j["table"]["big"], 1000);
    EXPECT_EQ(j["table"]["on"], true);
    EXPECT_EQ(j["table"]["off"], false);
    EXPECT_EQ(j["table"]["neg"], -4);
    EXPECT_EQ(j["table"]["quoted key"], "v");
    ASSERT_EQ(j["row"].size(), 2u);
    EXPECT_EQ(j["row"][0]["args"][1], "2");
    EXPECT_EQ(j["row"][1]["sub"]["x"], 1);
}

// Arrays nest by recursion: 100k '[' overflowed the stack. Refused past JSON's depth, as are table names as deep.
TEST(Toml, NestingDeeperThanJsonIsRefused) {
    const std::string deep = "x = " + std::string(100000, '[') + std::string(100000, ']') + "\n";
    std::string message = test::error_of([&] { parse_toml(deep, "deep.toml"); });
    EXPECT_NE(message.find("deep.toml"), std::string::npos) << message;
    EXPECT_NE(message.find("arrays nested deeper than 64 levels"), std::string::npos) << message;
    const nlohmann::json ok = parse_toml("x = " + std::string(64, '[') + "1" + std::string(64, ']') + "\n", "ok.toml");
    EXPECT_TRUE(ok["x"].is_array());
    std::string name = "a";
    for (int i = 0; i < 100; ++i) name += ".a";
    message = test::error_of([&] { parse_toml("[" + name + "]\nx = 1\n", "deep.toml"); });
    EXPECT_NE(message.find("table names nested deeper than 64 levels"), std::string::npos) << message;
}

TEST(Toml, RefusesWhatItCannotReadNamingTheLine) {
    auto message = [](const std::string& text) {
        try {
            parse_toml(text, "bad.toml");
        } catch (const FormatError& e) {
            return std::string(e.what());
        }
        return std::string("(accepted)");
    };
    EXPECT_NE(message("a = 1\nb = \"open\n").find("line 2"), std::string::npos);
    EXPECT_NE(message("a = 1\na = 2\n").find("given twice"), std::string::npos);
    EXPECT_NE(message("x = bare\n").find("strings need quotes"), std::string::npos);
    EXPECT_NE(message("x = {a = 1}\n").find("inline tables"), std::string::npos);
    EXPECT_NE(message("x = [1, 2\n").find("unterminated array"), std::string::npos);
    EXPECT_NE(message("x = 1 2\n").find("after the value"), std::string::npos);
    EXPECT_NE(message("[t]\n[t]\n").find("defined twice"), std::string::npos);
    EXPECT_NE(message("= 3\n").find("expected a key"), std::string::npos);
    EXPECT_NE(message("x = \"a\\q\"\n").find("escape"), std::string::npos);
}

}  // namespace
}  // namespace saliq
