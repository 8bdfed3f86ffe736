#include <gtest/gtest.h>

#include "saliq/log.h"
#include "saliq/threads.h"

int main(int argc, char** argv) {
    testing::InitGoogleTest(&argc, argv);
    saliq::set_log_level(saliq::log_level_from_env(saliq::LogLevel::Warn));
    saliq::set_compute_threads(1);
    return RUN_ALL_TESTS();
}
