#include "saliq/file.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <vector>
#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq {

MappedFile::MappedFile(std::string path, const uint8_t* data, uint64_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MappedFile::~MappedFile() {
    if (data_ != nullptr && size_ > 0) munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::release(uint64_t offset, uint64_t length) const {
    if (data_ == nullptr || offset >= size_) return;
    length = std::min(length, size_ - offset);
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    const uint64_t first = (offset + page - 1) / page * page, last = (offset + length) / page * page;
    // A read-only private mapping: DONTNEED only unmaps our view, the file's bytes come back on the next access.
    if (last > first) madvise(const_cast<uint8_t*>(data_) + first, last - first, MADV_DONTNEED);
}

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw IoError(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw IoError(path, std::string("cannot stat: ") + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw IoError(path, "not a regular file");
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    const uint8_t* data = nullptr;
    if (size > 0) {
        void* mapped = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (mapped == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            throw IoError(path, std::string("cannot mmap: ") + std::strerror(err));
        }
        data = static_cast<const uint8_t*>(mapped);
    }
    ::close(fd);
    return std::shared_ptr<const MappedFile>(new MappedFile(path, data, size));
}

std::string temporary_sibling(const std::string& path) {
    return path + ".tmp-" + std::to_string(::getpid());
}

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
    const std::string tmp = temporary_sibling(path);
    try {
        {
            std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
            if (!out) throw IoError(tmp, std::string("cannot create: ") + std::strerror(errno));
            out.exceptions(std::ios::failbit | std::ios::badbit);
            write(out);
            out.flush();
        }
        // fsync so that a crash right after rename cannot leave an empty file under the final name.
        const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ::fsync(fd);
            ::close(fd);
        }
        if (std::rename(tmp.c_str(), path.c_str()) != 0)
            throw IoError(path, std::string("cannot rename temporary file into place: ") + std::strerror(errno));
    } catch (const std::ios_base::failure&) {
        std::remove(tmp.c_str());
        throw IoError(path, "write failed (disk full or no permission?)");
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
}

void write_json_atomic(const std::string& path, const nlohmann::json& value) {
    const std::string text = value.dump(2) + "\n";
    write_file_atomic(path, [&](std::ostream& out) { out << text; });
}

nlohmann::json parse_json(const std::string& text, const std::string& source) {
    std::vector<std::set<std::string>> open_objects;  // the keys seen in each object being parsed
    auto check = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        using Event = nlohmann::json::parse_event_t;
        if ((event == Event::object_start || event == Event::array_start) && depth >= kMaxJsonDepth)
            throw FormatError(source, strprintf("JSON nested deeper than %d levels", kMaxJsonDepth));
        if (event == Event::object_start) open_objects.emplace_back();
        if (event == Event::object_end && !open_objects.empty()) open_objects.pop_back();
        if (event == Event::key && !open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get<std::string>()).second)
            throw FormatError(source, "JSON key '" + parsed.get<std::string>() +
                                          "' appears twice in one object (which one is meant?)");
        return true;
    };
    try {
        return nlohmann::json::parse(text, check);
    } catch (const nlohmann::json::exception& e) {
        throw FormatError(source, std::string("not valid JSON: ") + e.what());
    }
}

nlohmann::json read_json_file(const std::string& path) { return parse_json(read_text_file(path), path); }

bool is_path_component(const std::string& name) {
    if (name.empty() || name == "." || name == "..") return false;
    for (const char ch : name)
        if (ch == '/' || ch == '\\' || static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) return false;
    return true;
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError(path, std::string("cannot open: ") + std::strerror(errno));
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) throw IoError(path, "read failed");
    return buffer.str();
}

// Folder operations are plain POSIX calls, not std::filesystem. A pip PyTorch's libtorch exports its own
// statically linked copy of libstdc++'s std::filesystem (pytorch/pytorch#133437), so calls could bind to a copy
// built apart from the libstdc++ our inline code comes from; on the GPU image every test that made or removed a
// folder crashed. Plain system calls leave no such question.

namespace {

std::string errno_text() { return std::strerror(errno); }

bool stat_path(const std::string& path, struct stat& st) { return ::stat(path.c_str(), &st) == 0; }

int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }

}  // namespace

bool path_exists(const std::string& path) {
    struct stat st {};
    return stat_path(path, st);
}

bool is_directory(const std::string& path) {
    struct stat st {};
    return stat_path(path, st) && S_ISDIR(st.st_mode);
}

uint64_t file_size(const std::string& path) {
    struct stat st {};
    if (!stat_path(path, st)) throw IoError(path, "cannot read file size: " + errno_text());
    return static_cast<uint64_t>(st.st_size);
}

std::vector<std::string> list_directory(const std::string& path) {
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) throw IoError(path, "cannot list folder: " + errno_text());
    std::vector<std::string> names;
    while (const dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
}

bool is_empty_directory(const std::string& path) { return list_directory(path).empty(); }

void make_directories(const std::string& path) {
    if (path.empty()) throw IoError(path, "cannot create a folder with an empty name");
    std::string prefix;
    size_t pos = 0;
    while (pos != std::string::npos) {
        pos = path.find('/', pos + 1);
        prefix = path.substr(0, pos);
        if (prefix.empty() || is_directory(prefix)) continue;
        if (::mkdir(prefix.c_str(), 0777) != 0 && !(errno == EEXIST && is_directory(prefix)))
            throw IoError(prefix, "cannot create folder: " + errno_text());
    }
}

bool remove_tree(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
    if (!S_ISDIR(st.st_mode)) return ::remove(path.c_str()) == 0;
    // Depth first, and symbolic links are removed, never followed.
    return ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

void rename_path(const std::string& from, const std::string& to) {
    if (std::rename(from.c_str(), to.c_str()) != 0)
        throw IoError(to, "cannot rename " + from + " into place: " + errno_text());
}

void copy_file(const std::string& from, const std::string& to) {
    const auto source = MappedFile::open(from);
    write_file_atomic(to, [&](std::ostream& out) {
        out.write(reinterpret_cast<const char*>(source->data()), static_cast<std::streamsize>(source->size()));
    });
}

std::string canonical_path(const std::string& path) {
    char resolved[PATH_MAX];
    if (::realpath(path.c_str(), resolved) == nullptr) throw IoError(path, "cannot resolve path: " + errno_text());
    return resolved;
}

std::string temp_directory() {
    const char* env = std::getenv("TMPDIR");
    std::string dir = env != nullptr && *env != '\0' ? env : "/tmp";
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    return dir;
}

std::string executable_dir() {
    char buffer[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
    if (n <= 0) return ".";
    return parent_directory(std::string(buffer, static_cast<size_t>(n)));
}

std::string parent_directory(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string(".") : slash == 0 ? std::string("/") : path.substr(0, slash);
}

StagingDir::StagingDir(std::string final_path, bool force) : final_(std::move(final_path)) {
    while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
    if (path_exists(final_)) {
        if (!is_directory(final_)) throw ConfigError("output path " + final_ + " exists and is not a folder");
        if (!is_empty_directory(final_) && !force)
            throw ConfigError("output folder " + final_ + " already holds files; pass --force to replace it");
    }
    staging_ = temporary_sibling(final_);
    remove_tree(staging_);
    make_directories(staging_);
}

StagingDir::~StagingDir() {
    if (!committed_) remove_tree(staging_);
}

void StagingDir::commit() {
    std::string old;
    if (path_exists(final_)) {
        old = final_ + ".old-" + std::to_string(::getpid());
        if (std::rename(final_.c_str(), old.c_str()) != 0)
            throw IoError(final_, "cannot move the previous output folder aside: " + errno_text());
    }
    rename_path(staging_, final_);
    committed_ = true;
    if (!old.empty()) remove_tree(old);
}

}  // namespace saliq
