#include "saliq/log.h"

#include <cstdlib>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "saliq/error.h"

namespace saliq {
namespace {

spdlog::logger& logger() {
    // One stderr logger for the process; created on first use so static-init order never matters.
    static std::shared_ptr<spdlog::logger> instance = [] {
        auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
        auto made = std::make_shared<spdlog::logger>("saliq", sink);
        made->set_pattern("%^[%L]%$ %v");
        made->set_level(spdlog::level::info);
        return made;
    }();
    return *instance;
}

spdlog::level::level_enum to_spdlog(LogLevel level) {
    switch (level) {
        case LogLevel::Debug: return spdlog::level::debug;
        case LogLevel::Info: return spdlog::level::info;
        case LogLevel::Warn: return spdlog::level::warn;
        case LogLevel::Error: return spdlog::level::err;
        case LogLevel::Off: return spdlog::level::off;
    }
    return spdlog::level::info;
}

}  // namespace

LogLevel parse_log_level(const std::string& name) {
    if (name == "debug") return LogLevel::Debug;
    if (name == "info") return LogLevel::Info;
    if (name == "warn" || name == "warning") return LogLevel::Warn;
    if (name == "error") return LogLevel::Error;
    if (name == "off") return LogLevel::Off;
    throw ConfigError("unknown log level '" + name + "' (expected debug, info, warn, error or off)");
}

void set_log_level(LogLevel level) { logger().set_level(to_spdlog(level)); }

void set_log_prefix(const std::string& prefix) {
    std::string escaped;  // spdlog's pattern language: a literal % is %%
    for (char c : prefix) escaped += c == '%' ? std::string("%%") : std::string(1, c);
    logger().set_pattern("%^[%L]%$ " + escaped + "%v");
}

LogLevel log_level_from_env(LogLevel fallback) {
    const char* env = std::getenv("SALIQ_LOG_LEVEL");
    if (env == nullptr || *env == '\0') return fallback;
    return parse_log_level(env);
}

void log_debug(const std::string& message) { logger().debug(message); }
void log_info(const std::string& message) { logger().info(message); }
void log_warn(const std::string& message) { logger().warn(message); }
void log_error(const std::string& message) { logger().error(message); }

}  // namespace saliq
