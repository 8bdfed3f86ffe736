// Logging front end. spdlog stays inside src/common/log.cpp; logs go to stderr, results to stdout.
#pragma once

#include <string>

namespace saliq {

enum class LogLevel { Debug, Info, Warn, Error, Off };

// Parses "debug|info|warn|error|off"; throws ConfigError otherwise.
LogLevel parse_log_level(const std::string& name);
void set_log_level(LogLevel level);
// The level named by SALIQ_LOG_LEVEL, or `fallback` when it is unset.
LogLevel log_level_from_env(LogLevel fallback);
// Text put before every message of this process (a distributed rank's "[rank 1] "); "" for none.
void set_log_prefix(const std::string& prefix);

void log_debug(const std::string& message);
void log_info(const std::string& message);
void log_warn(const std::string& message);
void log_error(const std::string& message);

}  // namespace saliq
