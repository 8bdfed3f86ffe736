#include "saliq/file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "saliq/error.h"

namespace saliq {

namespace fs = std::filesystem;

MappedFile::MappedFile(std::string path, const uint8_t* data, uint64_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MappedFile::~MappedFile() {
    if (data_ != nullptr && size_ > 0) munmap(const_cast<uint8_t*>(data_), size_);
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

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError(path, std::string("cannot open: ") + std::strerror(errno));
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) throw IoError(path, "read failed");
    return buffer.str();
}

StagingDir::StagingDir(std::string final_path, bool force) : final_(std::move(final_path)) {
    while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
    std::error_code ec;
    if (fs::exists(final_, ec)) {
        if (!fs::is_directory(final_, ec))
            throw ConfigError("output path " + final_ + " exists and is not a folder");
        if (!fs::is_empty(final_, ec) && !force)
            throw ConfigError("output folder " + final_ + " already holds files; pass --force to replace it");
    }
    staging_ = temporary_sibling(final_);
    fs::remove_all(staging_, ec);
    if (!fs::create_directories(staging_, ec))
        throw IoError(staging_, "cannot create output folder: " + ec.message());
}

StagingDir::~StagingDir() {
    if (!committed_) {
        std::error_code ec;
        fs::remove_all(staging_, ec);
    }
}

void StagingDir::commit() {
    std::error_code ec;
    std::string old;
    if (fs::exists(final_, ec)) {
        old = final_ + ".old-" + std::to_string(::getpid());
        fs::rename(final_, old, ec);
        if (ec) throw IoError(final_, "cannot move the previous output folder aside: " + ec.message());
    }
    fs::rename(staging_, final_, ec);
    if (ec) throw IoError(final_, "cannot rename the finished output into place: " + ec.message());
    committed_ = true;
    if (!old.empty()) fs::remove_all(old, ec);
}

std::string executable_dir() {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string(".") : exe.parent_path().string();
}

bool path_exists(const std::string& path) {
    std::error_code ec;
    return fs::exists(path, ec);
}

bool is_directory(const std::string& path) {
    std::error_code ec;
    return fs::is_directory(path, ec);
}

uint64_t file_size(const std::string& path) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) throw IoError(path, "cannot read file size: " + ec.message());
    return size;
}

}  // namespace saliq
