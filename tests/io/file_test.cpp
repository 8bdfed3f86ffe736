#include <unistd.h>

#include <gtest/gtest.h>

#include "saliq/error.h"
#include "saliq/file.h"
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

}  // namespace
}  // namespace saliq
