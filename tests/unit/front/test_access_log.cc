#include <CppUTest/TestHarness.h>

#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "access_log.h"
#include "stats.h"

TEST_GROUP(AccessLog)
{
    event_base *base;
    WorkerStats stats;
    char dir[64];
    std::string path;

    void setup() override
    {
        base = event_base_new();
        memset(&stats, 0, sizeof(stats));
        snprintf(dir, sizeof(dir), "/tmp/access-log-test-XXXXXX");
        CHECK(mkdtemp(dir) != NULL);
        path = std::string(dir) + "/access.log";
    }
    void teardown() override
    {
        unlink(path.c_str());
        unlink((path + ".1").c_str());
        rmdir(dir);
        event_base_free(base);
    }

    std::string read_file(const std::string &p)
    {
        std::string text;
        FILE *f = fopen(p.c_str(), "r");
        if (f == NULL)
            return text;
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            text.append(buf, n);
        fclose(f);
        return text;
    }

    AccessEntry entry(const char *key, size_t key_len)
    {
        AccessEntry e = {"127.0.0.1:5000", "http", "GET", 3, key, key_len, "200", 5, "HIT", 37};
        return e;
    }

    // The line without its time (the first field).
    std::string after_time(const std::string &line)
    {
        size_t space = line.find(' ');
        return space == std::string::npos ? line : line.substr(space + 1);
    }
};

TEST(AccessLog, WritesOneLineInTheDocumentedFormat)
{
    char err[200];
    AccessLog *log = access_log_open(base, path.c_str(), &stats, err, sizeof(err));
    CHECK_TEXT(log != NULL, err);
    AccessEntry e = entry("user:1", 6);
    access_log_write(log, &e);
    STRCMP_EQUAL("", read_file(path).c_str());  // buffered until a flush
    access_log_flush(log);
    std::string text = read_file(path);
    // 2026-12-06T13:24:26.123Z
    CHECK_EQUAL(25u, text.find(' ') + 1);
    CHECK_EQUAL('T', text[10]);
    CHECK_EQUAL('Z', text[23]);
    STRCMP_EQUAL("127.0.0.1:5000 http GET user:1 200 5 HIT 37\n", after_time(text).c_str());
    CHECK_EQUAL(1u, stats.access_log_lines);
    access_log_close(log);
}

TEST(AccessLog, EscapesWhatIsNotPrintableAndMarksAbsentFields)
{
    char err[200];
    AccessLog *log = access_log_open(base, path.c_str(), &stats, err, sizeof(err));
    CHECK_TEXT(log != NULL, err);
    AccessEntry e = entry("a b\n\"\\\xff", 7);
    e.client = NULL;
    e.cache = NULL;
    access_log_write(log, &e);
    e = entry("", 0);
    access_log_write(log, &e);
    e = entry(NULL, 0);
    access_log_write(log, &e);
    access_log_close(log);  // flushes
    std::string text = read_file(path);
    size_t first_end = text.find('\n');
    STRCMP_EQUAL("- http GET a\\x20b\\x0a\\x22\\x5c\\xff 200 5 - 37", after_time(text.substr(0, first_end)).c_str());
    size_t second_end = text.find('\n', first_end + 1);
    STRCMP_EQUAL("127.0.0.1:5000 http GET \"\" 200 5 HIT 37",
                 after_time(text.substr(first_end + 1, second_end - first_end - 1)).c_str());
    STRCMP_EQUAL("127.0.0.1:5000 http GET - 200 5 HIT 37\n", after_time(text.substr(second_end + 1)).c_str());
}

TEST(AccessLog, CutsALongKey)
{
    char err[200];
    AccessLog *log = access_log_open(base, path.c_str(), &stats, err, sizeof(err));
    CHECK_TEXT(log != NULL, err);
    std::string key(1000, 'k');
    AccessEntry e = entry(key.data(), key.size());
    access_log_write(log, &e);
    access_log_close(log);
    std::string expected = "127.0.0.1:5000 http GET " + std::string(256, 'k') + "... 200 5 HIT 37\n";
    STRCMP_EQUAL(expected.c_str(), after_time(read_file(path)).c_str());
}

TEST(AccessLog, WritesOnItsOwnPast64KiB)
{
    char err[200];
    AccessLog *log = access_log_open(base, path.c_str(), &stats, err, sizeof(err));
    CHECK_TEXT(log != NULL, err);
    std::string key(200, 'k');
    AccessEntry e = entry(key.data(), key.size());
    size_t lines = 0;
    while (read_file(path).empty() && lines < 10000) {
        access_log_write(log, &e);
        lines++;
    }
    size_t written = read_file(path).size(), line = written / lines;
    CHECK_EQUAL(written, lines * line);  // every line written, whole
    CHECK(written >= 64 * 1024);
    CHECK(written < 64 * 1024 + line);
    access_log_close(log);
}

TEST(AccessLog, ReopenLetsTheRotatedFileGo)
{
    char err[200];
    AccessLog *log = access_log_open(base, path.c_str(), &stats, err, sizeof(err));
    CHECK_TEXT(log != NULL, err);
    AccessEntry e = entry("before", 6);
    access_log_write(log, &e);
    CHECK_EQUAL(0, rename(path.c_str(), (path + ".1").c_str()));
    access_log_reopen(log);  // what was buffered goes to the file it was written for
    e = entry("after", 5);
    access_log_write(log, &e);
    access_log_close(log);
    CHECK(read_file(path + ".1").find("GET before ") != std::string::npos);
    CHECK(read_file(path + ".1").find("GET after ") == std::string::npos);
    CHECK(read_file(path).find("GET after ") != std::string::npos);
}

TEST(AccessLog, AFileThatCannotBeOpenedIsSaid)
{
    char err[200];
    std::string bad = std::string(dir) + "/missing/access.log";
    POINTERS_EQUAL(NULL, access_log_open(base, bad.c_str(), &stats, err, sizeof(err)));
    CHECK(strstr(err, "missing/access.log") != NULL);
    CHECK(strstr(err, "No such file") != NULL);
}

// A reader that stalls costs lines, never the loop's time: a full pipe is not waited on.
TEST(AccessLog, AFullPipeDropsLinesAndNeverBlocks)
{
    int fds[2];
    CHECK_EQUAL(0, pipe(fds));
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    char err[200];
    AccessLog *log = access_log_open(base, "stderr", &stats, err, sizeof(err));
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    CHECK_TEXT(log != NULL, err);
    std::string key(200, 'k');
    AccessEntry e = entry(key.data(), key.size());
    for (int i = 0; i < 5000; i++)  // about 1.2 MB: far past a pipe's 64 KiB
        access_log_write(log, &e);
    CHECK(stats.access_log_dropped > 0);
    CHECK(stats.access_log_lines > 0);
    // What was written is whole lines: a pipe is written up to PIPE_BUF at a time, at line ends.
    char buf[65536];
    ssize_t n = read(fds[0], buf, sizeof(buf));
    CHECK(n > 0);
    CHECK_EQUAL('\n', buf[n - 1]);
    access_log_close(log);
    close(fds[0]);
}
