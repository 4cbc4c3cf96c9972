// libFuzzer target: the RESP request parser. The input is parsed twice, once whole and once fed
// in pieces (cut points drawn from the input itself), as a trickling client would send it. Both
// must see the same commands with the same arguments and stop at the same point: that proves
// the resumable state is right, as well as memory safety (under ASan/UBSan).
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <string>
#include <vector>

#include "resp_parser.h"

static const int MAX_ARGS = 64;
static const size_t MAX_BULK = 512;

struct Outcome {
    std::vector<std::vector<std::string>> commands;
    bool error = false;
    size_t used = 0;  // bytes consumed by complete commands
};

// Feeds data[0..len) to a parser, `available` bytes at a time growing by the next step.
static Outcome parse(const char *data, size_t len, const std::vector<size_t> &steps)
{
    Outcome o;
    RespParser p;
    resp_parser_init(&p, MAX_ARGS, MAX_BULK);
    size_t start = 0, available = 0, step = 0;
    while (start < len) {
        size_t grow = steps.empty() ? len : steps[step++ % steps.size()];
        available = available + grow > len ? len : available + grow;
        RespParseStatus s = resp_parse(&p, data + start, available - start);
        while (s == RESP_COMMAND || s == RESP_EMPTY) {
            assert(p.consumed > 0 && p.consumed <= available - start);
            if (s == RESP_COMMAND) {
                assert(p.argc >= 1 && p.argc <= MAX_ARGS);
                std::vector<std::string> args;
                for (int i = 0; i < p.argc; i++) {
                    assert(p.args[i].offset + p.args[i].len <= p.consumed);
                    assert(p.args[i].len <= MAX_BULK || p.expected == 0);
                    args.emplace_back(resp_arg_base(&p, (const char *)data + start) + p.args[i].offset, p.args[i].len);
                }
                o.commands.push_back(args);
            }
            start += p.consumed;
            if (start == available)
                break;
            s = resp_parse(&p, data + start, available - start);
        }
        if (s == RESP_ERROR) {
            assert(p.error != NULL && strncmp(p.error, "Protocol error", 14) == 0);
            o.error = true;
            break;
        }
        if (available == len && s == RESP_INCOMPLETE)
            break;
    }
    o.used = start;
    resp_parser_free(&p);
    return o;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    // The first byte picks the piece sizes (1..8 bytes, cycling); the rest is the stream.
    std::vector<size_t> steps;
    for (unsigned i = 0; i < 4; i++)
        steps.push_back(1 + ((data[0] >> (2 * i)) & 3) * 2);
    const char *stream = (const char *)data + 1;
    size_t len = size - 1;
    Outcome whole = parse(stream, len, {});
    Outcome pieces = parse(stream, len, steps);
    assert(whole.commands == pieces.commands);
    assert(whole.error == pieces.error);
    assert(whole.used == pieces.used);
    return 0;
}
