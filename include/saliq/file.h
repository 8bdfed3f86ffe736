// Read-only memory mapping and atomic writes (temp name, then rename): no half-written file ever looks complete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace saliq {

class MappedFile {
public:
    // Maps the whole file read-only. Throws IoError when it cannot be opened or mapped.
    static std::shared_ptr<const MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Drops this process's copy of the pages wholly inside [offset, offset + length) (madvise DONTNEED): they stay
    // in the page cache and fault back in on the next read, but no longer count in our resident memory. Used once a
    // block's weights have been read, so resident memory does not grow with the model's depth.
    void release(uint64_t offset, uint64_t length) const;

private:
    MappedFile(std::string path, const uint8_t* data, uint64_t size);
    std::string path_;
    const uint8_t* data_;
    uint64_t size_;
};

// Writes `path` through `write` into a temporary sibling, flushes, then renames over `path`.
// On any exception the temporary is removed and `path` is untouched.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);

// `value` as indented JSON text with a final newline, written like write_file_atomic.
void write_json_atomic(const std::string& path, const nlohmann::json& value);

// A whole JSON file. Throws IoError (unreadable) or FormatError "not valid JSON: ..." naming it.
nlohmann::json read_json_file(const std::string& path);

// Parses JSON saliq reads from a file a user gives it: FormatError(source) for invalid JSON, a key listed twice in an
// object (one of the two would silently win) or nesting deeper than kMaxJsonDepth (no file of saliq's needs it, and
// deep documents exhaust the stack of whatever walks them). read_json_file uses it.
constexpr int kMaxJsonDepth = 64;

// Whether `name` (taken from a config or file) is safe as one component of a path saliq writes: not empty, not "."
// or "..", no '/', '\\' or control characters.
bool is_path_component(const std::string& name);
nlohmann::json parse_json(const std::string& text, const std::string& source);

// Reads a whole (small) file into a string. Throws IoError.
std::string read_text_file(const std::string& path);

// A sibling temporary name unique to this process: "<path>.tmp-<pid>".
std::string temporary_sibling(const std::string& path);

// An output folder built under a temporary sibling name and renamed into place by commit(). Refuses a final
// path that exists and is not empty unless `force` (then the old folder is replaced only once the new is complete).
// Destroyed without commit(), it removes the temporary folder: an interrupted run leaves nothing that looks done.
class StagingDir {
public:
    StagingDir(std::string final_path, bool force);
    ~StagingDir();
    StagingDir(const StagingDir&) = delete;
    StagingDir& operator=(const StagingDir&) = delete;

    const std::string& path() const { return staging_; }        // write files here
    std::string file(const std::string& name) const { return staging_ + "/" + name; }
    const std::string& final_path() const { return final_; }
    void commit();

private:
    std::string final_;
    std::string staging_;
    bool committed_ = false;
};

// The folder part of a path: "." without a slash, "/" for a file at the root.
std::string parent_directory(const std::string& path);

// Folder of the running executable (from /proc/self/exe), "." when unknown.
std::string executable_dir();

// Paths and folders (POSIX underneath; see file.cpp for why not std::filesystem). Throwing ones throw IoError.
bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
uint64_t file_size(const std::string& path);
std::vector<std::string> list_directory(const std::string& path);  // names, sorted, without "." and ".."
bool is_empty_directory(const std::string& path);
void make_directories(const std::string& path);          // like mkdir -p
bool remove_tree(const std::string& path);               // like rm -rf; never follows links; false on failure
void rename_path(const std::string& from, const std::string& to);
void copy_file(const std::string& from, const std::string& to);  // atomic on the destination
std::string canonical_path(const std::string& path);     // realpath
std::string temp_directory();                            // $TMPDIR, else /tmp

}  // namespace saliq
