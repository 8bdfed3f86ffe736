#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/safetensors.h"
#include "test_utils.h"

namespace saliq {
namespace {

using test::TempDir;

TEST(Files, MakeListAndRemoveNestedFolders) {
    TempDir dir;
    make_directories(dir.file("a/b/c"));
    make_directories(dir.file("a/b/c"));  // already there: no error
    EXPECT_TRUE(is_directory(dir.file("a/b/c")));
    test::write_bytes(dir.file("a/z.txt"), "zz");
    test::write_bytes(dir.file("a/b/c/y.txt"), "y");
    EXPECT_EQ(list_directory(dir.file("a")), (std::vector<std::string>{"b", "z.txt"}));
    EXPECT_FALSE(is_empty_directory(dir.file("a")));
    EXPECT_EQ(file_size(dir.file("a/z.txt")), 2u);

    // remove_tree deletes a link, never what it points to.
    make_directories(dir.file("keep"));
    test::write_bytes(dir.file("keep/precious"), "p");
    ASSERT_EQ(::symlink(dir.file("keep").c_str(), dir.file("a/b/link").c_str()), 0);
    EXPECT_TRUE(remove_tree(dir.file("a")));
    EXPECT_FALSE(path_exists(dir.file("a")));
    EXPECT_EQ(test::read_bytes(dir.file("keep/precious")), "p");
    EXPECT_TRUE(remove_tree(dir.file("a")));  // nothing left to remove is success
    EXPECT_FALSE(is_empty_directory(dir.file("keep")));
}

TEST(Files, CopyRenameAndCanonicalPaths) {
    TempDir dir;
    test::write_bytes(dir.file("src.bin"), std::string("a\0b", 3));
    copy_file(dir.file("src.bin"), dir.file("dst.bin"));
    EXPECT_EQ(test::read_bytes(dir.file("dst.bin")), std::string("a\0b", 3));
    rename_path(dir.file("dst.bin"), dir.file("moved.bin"));
    EXPECT_FALSE(path_exists(dir.file("dst.bin")));
    EXPECT_EQ(list_directory(dir.path()), (std::vector<std::string>{"moved.bin", "src.bin"}));
    make_directories(dir.file("x/y"));
    EXPECT_EQ(canonical_path(dir.file("x/y/..")), canonical_path(dir.file("x")));
}

TEST(Files, ErrorsNameThePath) {
    TempDir dir;
    const std::string missing = dir.file("missing");
    for (const auto& call : std::vector<std::function<void()>>{
             [&] { list_directory(missing); }, [&] { file_size(missing); },
             [&] { copy_file(missing, dir.file("to")); }, [&] { canonical_path(missing); }}) {
        try {
            call();
            ADD_FAILURE() << "expected IoError";
        } catch (const IoError& e) {
            EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
        }
    }
    test::write_bytes(dir.file("plain"), "f");
    EXPECT_THROW(make_directories(dir.file("plain/sub")), IoError);
    EXPECT_THROW(rename_path(missing, dir.file("to")), IoError);
}

TEST(Files, ExecutableDirHoldsTheTestBinary) {
    EXPECT_TRUE(path_exists(executable_dir() + "/saliq_tests")) << executable_dir();
}

// JSON saliq reads: a key listed twice (at any depth) and nesting past kMaxJsonDepth are FormatErrors naming the
// source; what they guard against (one of two entries silently winning, a stack exhausted by a deep document) never
// happens. Reached through every reader: config.json, a safetensors header.
TEST(Files, JsonWithDuplicateKeysOrDeepNestingIsRefused) {
    EXPECT_EQ(parse_json(R"({"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]})", "x.json")["b"]["a"], 2);
    auto message = [](const std::string& text) {
        try {
            parse_json(text, "x.json");
        } catch (const FormatError& e) {
            return std::string(e.what());
        }
        return std::string("<no error>");
    };
    EXPECT_NE(message(R"({"a": 1, "a": 2})").find("'a' appears twice"), std::string::npos);
    EXPECT_NE(message(R"({"b": {"x": 1, "y": 2, "x": 3}})").find("'x' appears twice"), std::string::npos);
    EXPECT_NE(message(R"([{"k": 1}, {"k": 2, "k": 3}])").find("'k' appears twice"), std::string::npos);
    EXPECT_NE(message(std::string(100000, '[') + std::string(100000, ']')).find("deeper than"), std::string::npos);
    EXPECT_NE(message(R"({"a": )").find("not valid JSON"), std::string::npos);
    EXPECT_NE(message(R"({"a": 1, "a": 2})").find("x.json"), std::string::npos);
    std::string nested = "1";
    for (int i = 0; i < kMaxJsonDepth - 1; ++i) nested = "[" + nested + "]";
    EXPECT_EQ(message(nested), "<no error>");

    test::TempDir dir;
    // A safetensors header naming one tensor twice.
    const std::string header = R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                               R"( "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})";
    test::write_bytes(dir.file("d.safetensors"), test::safetensors_bytes(header, std::string(4, '\0')));
    try {
        SafetensorsReader::open(dir.file("d.safetensors"));
        ADD_FAILURE() << "a tensor listed twice was accepted";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("'t' appears twice"), std::string::npos) << e.what();
    }
}

TEST(Files, PathComponentsFromConfigsStayInTheirFolder) {
    for (const char* ok : {"apiq-bw", "w2_g64", "row.1", "..x"}) EXPECT_TRUE(is_path_component(ok)) << ok;
    for (const char* bad : {"", ".", "..", "../x", "a/b", "a\\b", "/abs", "tab\there"})
        EXPECT_FALSE(is_path_component(bad)) << bad;
}

}  // namespace
}  // namespace saliq
