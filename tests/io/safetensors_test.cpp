#include "saliq/safetensors.h"

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "saliq/file.h"
#include "test_utils.h"

namespace saliq {
namespace {

using test::safetensors_bytes;
using test::TempDir;
using test::write_bytes;

// Expects FormatError whose message contains every fragment.
void expect_format_error(const std::string& path, const std::vector<std::string>& fragments) {
    try {
        SafetensorsReader::open(path);
        FAIL() << "expected a FormatError";
    } catch (const FormatError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find(path), std::string::npos) << message;
        for (const auto& f : fragments) EXPECT_NE(message.find(f), std::string::npos) << message;
    }
}

TEST(Safetensors, RoundTripKeepsValuesDtypesAndMetadata) {
    TempDir dir;
    const std::string path = dir.file("t.safetensors");
    at::Tensor a = at::randn({3, 5});
    at::Tensor b = at::randn({7}).to(at::kBFloat16);
    at::Tensor c = at::randint(-100, 100, {2, 2, 2}, at::kInt);
    at::Tensor d = at::randn({4, 4}).to(at::kHalf);
    at::Tensor e = at::randint(0, 255, {9}, at::kByte);
    write_safetensors(path, {{"a", a}, {"b", b}, {"c", c}, {"d", d}, {"e", e}}, {{"format", "pt"}});
    auto reader = SafetensorsReader::open(path);
    EXPECT_EQ(reader->entries().size(), 5u);
    EXPECT_EQ(reader->metadata().at("format"), "pt");
    EXPECT_TRUE(at::equal(reader->tensor("a"), a));
    EXPECT_TRUE(at::equal(reader->tensor("b"), b));
    EXPECT_TRUE(at::equal(reader->tensor("c"), c));
    EXPECT_TRUE(at::equal(reader->tensor("d"), d));
    EXPECT_TRUE(at::equal(reader->tensor("e"), e));
    EXPECT_EQ(reader->find("b")->dtype, "BF16");
    // Header padded so data starts 8-byte aligned.
    const auto bytes = test::read_bytes(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
    EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(Safetensors, ZeroCopyTensorPointsIntoTheMapping) {
    TempDir dir;
    const std::string path = dir.file("t.safetensors");
    write_safetensors(path, {{"w", at::arange(16, at::kFloat)}});
    auto reader = SafetensorsReader::open(path);
    at::Tensor t1 = reader->tensor("w");
    at::Tensor t2 = reader->tensor("w");
    EXPECT_EQ(t1.data_ptr(), t2.data_ptr());
    EXPECT_FLOAT_EQ(t1[15].item<float>(), 15.0f);
}

TEST(Safetensors, TensorOutlivesReader) {
    TempDir dir;
    const std::string path = dir.file("t.safetensors");
    write_safetensors(path, {{"w", at::arange(8, at::kFloat)}});
    at::Tensor t = SafetensorsReader::open(path)->tensor("w");
    EXPECT_FLOAT_EQ(t.sum().item<float>(), 28.0f);
}

TEST(Safetensors, UnalignedDataIsCopied) {
    TempDir dir;
    const std::string path = dir.file("t.safetensors");
    // Header of odd length, no padding (as some writers produce).
    const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    float values[2] = {1.5f, -2.0f};
    write_bytes(path, safetensors_bytes(header + " ", std::string(reinterpret_cast<char*>(values), 8)));
    at::Tensor x = SafetensorsReader::open(path)->tensor("x");
    EXPECT_FLOAT_EQ(x[0].item<float>(), 1.5f);
    EXPECT_FLOAT_EQ(x[1].item<float>(), -2.0f);
}

TEST(Safetensors, StreamedWriteAsksForOneTensorAtATimeAndChecksEach) {
    TempDir dir;
    const std::string path = dir.file("s.safetensors");
    const std::vector<TensorSpec> specs = {{"a", at::kFloat, {2, 3}}, {"b", at::kBFloat16, {4}}};
    std::vector<size_t> asked, done;
    write_safetensors_streamed(path, specs, [&](size_t i) {
        asked.push_back(i);
        return i == 0 ? at::arange(6, at::kFloat).view({2, 3}) : at::ones({4}, at::kBFloat16);
    }, {{"k", "v"}}, [&](size_t i) { done.push_back(i); });
    EXPECT_EQ(asked, (std::vector<size_t>{0, 1}));
    EXPECT_EQ(done, (std::vector<size_t>{0, 1}));
    auto reader = SafetensorsReader::open(path);
    EXPECT_TRUE(at::equal(reader->tensor("a"), at::arange(6, at::kFloat).view({2, 3})));
    EXPECT_EQ(reader->tensor("b").scalar_type(), at::kBFloat16);
    EXPECT_EQ(reader->metadata().at("k"), "v");
    // Released pages fault back in from the file: the values are still there.
    reader->release("a");
    EXPECT_TRUE(at::equal(reader->tensor("a"), at::arange(6, at::kFloat).view({2, 3})));

    // A producer that breaks its declaration fails the write, and nothing is left under the name.
    const std::string bad = dir.file("bad.safetensors");
    EXPECT_THROW(write_safetensors_streamed(bad, specs, [](size_t) { return at::zeros({2, 3}, at::kFloat); }), Error);
    EXPECT_FALSE(path_exists(bad));
}

TEST(Safetensors, ReleasedPagesOfALargeTensorReadBackIdentical) {
    TempDir dir;
    const std::string path = dir.file("big.safetensors");
    const at::Tensor big = at::randn({1024, 1024});  // 4 MiB: many whole pages to drop
    write_safetensors(path, {{"w", big}});
    auto reader = SafetensorsReader::open(path);
    const double before = reader->tensor("w").sum().item<double>();
    reader->release("w");
    reader->release("missing");  // unknown names are ignored
    EXPECT_EQ(reader->tensor("w").sum().item<double>(), before);
    EXPECT_TRUE(at::equal(reader->tensor("w"), big));
}

TEST(Safetensors, WriteIsAtomicAndLeavesNoTemporary) {
    TempDir dir;
    const std::string path = dir.file("t.safetensors");
    write_safetensors(path, {{"w", at::ones({2})}});
    EXPECT_EQ(list_directory(dir.path()), std::vector<std::string>{"t.safetensors"});
}

TEST(SafetensorsMalformed, TruncatedFile) {
    TempDir dir;
    write_bytes(dir.file("a"), "abc");
    expect_format_error(dir.file("a"), {"too short"});
}

TEST(SafetensorsMalformed, HeaderLengthPastEndOfFile) {
    TempDir dir;
    write_bytes(dir.file("a"), safetensors_bytes("{}", "", 5000));
    expect_format_error(dir.file("a"), {"header length 5000", "past the end"});
}

TEST(SafetensorsMalformed, HugeHeaderLength) {
    TempDir dir;
    write_bytes(dir.file("a"), safetensors_bytes("{}", "", 1ll << 40));
    expect_format_error(dir.file("a"), {"100 MB"});
}

TEST(SafetensorsMalformed, BadJson) {
    TempDir dir;
    write_bytes(dir.file("a"), safetensors_bytes(R"({"x": {"dtype": "F32", )", ""));
    expect_format_error(dir.file("a"), {"not valid JSON"});
}

TEST(SafetensorsMalformed, HeaderNotAnObject) {
    TempDir dir;
    write_bytes(dir.file("a"), safetensors_bytes("[1, 2]", ""));
    expect_format_error(dir.file("a"), {"not an object"});
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
    TempDir dir;
    const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    write_bytes(dir.file("a"), safetensors_bytes(header, std::string(12, '\0')));
    expect_format_error(dir.file("a"), {"'b'", "overlaps", "'a'"});
}

TEST(SafetensorsMalformed, HoleBetweenTensors) {
    TempDir dir;
    const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
    write_bytes(dir.file("a"), safetensors_bytes(header, std::string(12, '\0')));
    expect_format_error(dir.file("a"), {"hole", "'b'"});
}

TEST(SafetensorsMalformed, OffsetOutOfRange) {
    TempDir dir;
    const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
    write_bytes(dir.file("a"), safetensors_bytes(header, std::string(8, '\0')));
    expect_format_error(dir.file("a"), {"'w'", "out of range"});
}

TEST(SafetensorsMalformed, TrailingBytesNotCovered) {
    TempDir dir;
    const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    write_bytes(dir.file("a"), safetensors_bytes(header, std::string(12, '\0')));
    expect_format_error(dir.file("a"), {"cover only 4"});
}

TEST(SafetensorsMalformed, ByteSizeMismatch) {
    TempDir dir;
    const std::string header = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
    write_bytes(dir.file("a"), safetensors_bytes(header, std::string(8, '\0')));
    expect_format_error(dir.file("a"), {"'w'", "12 bytes", "span 8"});
}

TEST(SafetensorsMalformed, UnknownDtype) {
    TempDir dir;
    const std::string header = R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})";
    write_bytes(dir.file("a"), safetensors_bytes(header, std::string(1, '\0')));
    expect_format_error(dir.file("a"), {"'w'", "unknown dtype 'Q7'"});
}

TEST(SafetensorsMalformed, NegativeShape) {
    TempDir dir;
    const std::string header = R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})";
    write_bytes(dir.file("a"), safetensors_bytes(header, std::string(4, '\0')));
    expect_format_error(dir.file("a"), {"'w'", "negative"});
}

TEST(SafetensorsMalformed, MissingDataOffsets) {
    TempDir dir;
    const std::string header = R"({"w":{"dtype":"F32","shape":[1]}})";
    write_bytes(dir.file("a"), safetensors_bytes(header, std::string(4, '\0')));
    expect_format_error(dir.file("a"), {"'w'", "data_offsets"});
}

TEST(SafetensorsMalformed, MissingTensorIsNamed) {
    TempDir dir;
    write_safetensors(dir.file("t"), {{"w", at::ones({2})}});
    auto reader = SafetensorsReader::open(dir.file("t"));
    try {
        reader->tensor("model.norm.weight");
        FAIL();
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("model.norm.weight"), std::string::npos);
    }
}

TEST(SafetensorsMalformed, KnownButUnsupportedDtype) {
    TempDir dir;
    const std::string header = R"({"w":{"dtype":"U16","shape":[1],"data_offsets":[0,2]}})";
    write_bytes(dir.file("a"), safetensors_bytes(header, std::string(2, '\0')));
    auto reader = SafetensorsReader::open(dir.file("a"));
    EXPECT_THROW(reader->tensor("w"), FormatError);
}

TEST(SafetensorsMalformed, MissingFileIsIoError) {
    EXPECT_THROW(SafetensorsReader::open("/nonexistent/x.safetensors"), IoError);
}

}  // namespace
}  // namespace saliq
