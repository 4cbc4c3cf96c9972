// The slot map from CLUSTER SLOTS replies (parsed from RESP text by hiredis's own reader, as the
// backend would) and the parsing of MOVED/ASK redirects.
#include <CppUTest/TestHarness.h>

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include <string>

#include "slot_map.h"

static redisReply *parse(const std::string &resp)
{
    redisReader *r = redisReaderCreate();
    redisReaderFeed(r, resp.data(), resp.size());
    void *reply = NULL;
    CHECK_EQUAL(REDIS_OK, redisReaderGetReply(r, &reply));
    CHECK(reply != NULL);
    redisReaderFree(r);
    return (redisReply *)reply;
}

static std::string bulk(const std::string &s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }

// One CLUSTER SLOTS entry: slots first..last on ip:port, with one replica.
static std::string entry(int first, int last, const std::string &ip, int port)
{
    return "*4\r\n:" + std::to_string(first) + "\r\n:" + std::to_string(last) + "\r\n" + "*4\r\n" + bulk(ip) + ":" +
           std::to_string(port) + "\r\n" + bulk(std::string(40, 'a')) + "*0\r\n" + "*3\r\n" + bulk("10.0.0.9") +
           ":" + std::to_string(port + 100) + "\r\n" + bulk(std::string(40, 'b'));
}

TEST_GROUP(SlotMap)
{
    SlotMap *m;
    ClusterNode asked = {"127.0.0.1", 7000, ""};
    char err[200];
    void setup() override
    {
        m = new SlotMap;
        slot_map_init(m);
    }
    void teardown() override { delete m; }
    bool apply(const std::string &resp)
    {
        redisReply *r = parse(resp);
        bool ok = slot_map_apply_slots(m, r, &asked, err, sizeof(err));
        freeReplyObject(r);
        return ok;
    }
    std::string owner(int slot)
    {
        int n = m->owner[slot];
        return n < 0 ? "none" : std::string(m->node[n].ip) + ":" + std::to_string(m->node[n].port);
    }
};

TEST(SlotMap, test_three_primaries_own_their_ranges_and_replicas_are_ignored)
{
    CHECK_TEXT(apply("*3\r\n" + entry(0, 5460, "127.0.0.1", 7000) + entry(5461, 10922, "127.0.0.1", 7001) +
                     entry(10923, 16383, "127.0.0.1", 7002)),
               err);
    LONGS_EQUAL(3, m->nodes);
    STRCMP_EQUAL("127.0.0.1:7000", owner(0).c_str());
    STRCMP_EQUAL("127.0.0.1:7000", owner(5460).c_str());
    STRCMP_EQUAL("127.0.0.1:7001", owner(5461).c_str());
    STRCMP_EQUAL("127.0.0.1:7002", owner(16383).c_str());
}

TEST(SlotMap, test_a_node_keeps_its_index_when_the_map_changes)
{
    apply("*2\r\n" + entry(0, 8191, "127.0.0.1", 7000) + entry(8192, 16383, "127.0.0.1", 7001));
    int second = m->owner[9000];
    // Resharded: slots 8000-8191 moved to the second node, and a third node joined.
    CHECK(apply("*3\r\n" + entry(0, 7999, "127.0.0.1", 7000) + entry(8000, 12000, "127.0.0.1", 7001) +
                entry(12001, 16383, "127.0.0.1", 7002)));
    LONGS_EQUAL(second, m->owner[8100]);
    LONGS_EQUAL(second, m->owner[9000]);
    LONGS_EQUAL(3, m->nodes);
}

TEST(SlotMap, test_slots_nobody_serves_have_no_owner)
{
    CHECK(apply("*1\r\n" + entry(100, 200, "127.0.0.1", 7000)));
    STRCMP_EQUAL("none", owner(99).c_str());
    STRCMP_EQUAL("127.0.0.1:7000", owner(150).c_str());
    STRCMP_EQUAL("none", owner(201).c_str());
}

TEST(SlotMap, test_an_empty_address_means_the_node_asked)
{
    asked = {"10.1.2.3", 7005, ""};
    CHECK(apply("*1\r\n" + entry(0, 16383, "", 7005)));
    STRCMP_EQUAL("10.1.2.3:7005", owner(42).c_str());
}

// A node entry as Redis 7 sends it with cluster-preferred-endpoint-type hostname: the name first,
// the IP in the metadata (or, with no IP known to it, none).
static std::string named_entry(int first, int last, const std::string &name, int port, const char *ip)
{
    std::string meta = ip ? "*2\r\n" + bulk("ip") + bulk(ip) : "*0\r\n";
    return "*3\r\n:" + std::to_string(first) + "\r\n:" + std::to_string(last) + "\r\n" + "*4\r\n" + bulk(name) +
           ":" + std::to_string(port) + "\r\n" + bulk(std::string(40, 'c')) + meta;
}

TEST(SlotMap, test_a_node_announced_by_name_is_used_by_the_ip_beside_it)
{
    CHECK(apply("*2\r\n" + named_entry(0, 8191, "redis-0.example", 7000, "10.0.0.5") +
                named_entry(8192, 16383, "redis-1.example", 7000, NULL)));
    STRCMP_EQUAL("10.0.0.5:7000", owner(100).c_str());
    STRCMP_EQUAL("redis-0.example", m->node[m->owner[100]].name);
    // No IP beside the name: its slots have no owner, and no address is made up for it.
    STRCMP_EQUAL("none", owner(9000).c_str());
    LONGS_EQUAL(1, m->unaddressable);
    STRCMP_EQUAL("redis-1.example", m->unaddressable_name);
    for (int i = 0; i < m->nodes; i++)
        CHECK(slot_map_is_ip(m->node[i].ip));
}

TEST(SlotMap, test_a_redirect_by_name_finds_the_node_that_announced_it_and_no_other)
{
    CHECK(apply("*1\r\n" + named_entry(0, 16383, "redis-0.example", 7000, "10.0.0.5")));
    int known = m->owner[0];
    LONGS_EQUAL(known, slot_map_endpoint(m, "redis-0.example", 7000));
    LONGS_EQUAL(known, slot_map_endpoint(m, "10.0.0.5", 7000));
    LONGS_EQUAL(-1, slot_map_endpoint(m, "redis-0.example", 7001));  // another port: another node
    LONGS_EQUAL(-1, slot_map_endpoint(m, "redis-9.example", 7000));  // nobody announced it
    LONGS_EQUAL(-1, slot_map_node(m, "redis-9.example", 7000));      // never added as an "IP"
    CHECK(slot_map_endpoint(m, "10.0.0.9", 7000) >= 0);               // a new IP is added
}

TEST(SlotMap, test_a_malformed_reply_leaves_the_map_as_it_was)
{
    CHECK(apply("*1\r\n" + entry(0, 16383, "127.0.0.1", 7000)));
    const char *bad[] = {
        "+OK\r\n",                                                     // not an array
        "*1\r\n*3\r\n$1\r\n0\r\n:5\r\n*2\r\n$1\r\nx\r\n:1\r\n",        // a slot as a string
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nx\r\n:1\r\n",         // past the last slot
        "*1\r\n*3\r\n:9\r\n:3\r\n*2\r\n$1\r\nx\r\n:1\r\n",             // a range backwards
        "*1\r\n*2\r\n:0\r\n:5\r\n",                                    // no primary
        "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nx\r\n:0\r\n",             // port 0
    };
    for (const char *b : bad) {
        CHECK_FALSE_TEXT(apply(b), b);
        STRCMP_EQUAL("127.0.0.1:7000", owner(3).c_str());
        LONGS_EQUAL(1, m->nodes);
    }
}

TEST_GROUP(ClusterRedirect)
{
    ClusterRedirect r;
    bool parse_text(const char *text) { return cluster_parse_redirect(text, strlen(text), &r); }
};

TEST(ClusterRedirect, test_moved_and_ask)
{
    CHECK(parse_text("MOVED 3999 127.0.0.1:6381"));
    CHECK_FALSE(r.ask);
    LONGS_EQUAL(3999, r.slot);
    STRCMP_EQUAL("127.0.0.1", r.to.ip);
    LONGS_EQUAL(6381, r.to.port);
    CHECK(parse_text("ASK 0 10.0.0.1:7000"));
    CHECK(r.ask);
    LONGS_EQUAL(0, r.slot);
}

TEST(ClusterRedirect, test_ipv6_with_or_without_brackets)
{
    CHECK(parse_text("MOVED 16383 ::1:7000"));
    STRCMP_EQUAL("::1", r.to.ip);
    LONGS_EQUAL(7000, r.to.port);
    CHECK(parse_text("ASK 12 [fe80::1]:7001"));
    STRCMP_EQUAL("fe80::1", r.to.ip);
    LONGS_EQUAL(7001, r.to.port);
}

TEST(ClusterRedirect, test_other_errors_and_garbage_are_not_redirects)
{
    const char *no[] = {"ERR unknown command", "MOVED", "MOVED 12", "MOVED x 1.2.3.4:5", "MOVED 16384 a:1",
                        "MOVED -1 a:1", "MOVED 1 host", "MOVED 1 host:", "MOVED 1 host:0", "MOVED 1 host:70000",
                        "MOVED 1 :7000", "MOVED 1 a:1 extra", "TRYAGAIN Multiple keys request during rehashing",
                        "CLUSTERDOWN The cluster is down"};
    for (const char *text : no)
        CHECK_FALSE_TEXT(parse_text(text), text);
}

TEST_GROUP(ClusterReplyPlan)
{
    redisReply *reply = NULL;
    void teardown() override
    {
        if (reply != NULL)
            freeReplyObject(reply);
    }
    ClusterReplyPlan plan(const std::string &resp, int slot, int redirects)
    {
        if (reply != NULL)
            freeReplyObject(reply);
        reply = parse(resp);
        return cluster_plan_reply(reply, slot, redirects);
    }
};

TEST(ClusterReplyPlan, test_answers_and_plain_errors_are_delivered)
{
    const char *answers[] = {"$1\r\nv\r\n", "$-1\r\n", "*1\r\n$1\r\nv\r\n", "-ERR wrong\r\n",
                             "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                             "-MOVEDX 1 a:1\r\n", "-CLUSTERDOWNX\r\n"};
    for (const char *a : answers) {
        ClusterReplyPlan p = plan(a, 1, 0);
        LONGS_EQUAL_TEXT(CLUSTER_DELIVER, p.action, a);
        CHECK_FALSE_TEXT(p.refresh, a);
    }
}

TEST(ClusterReplyPlan, test_moved_is_followed_and_rereads_the_map)
{
    ClusterReplyPlan p = plan("-MOVED 7 10.0.0.2:7001\r\n", 7, 0);
    LONGS_EQUAL(CLUSTER_FOLLOW, p.action);
    CHECK(p.refresh);
    CHECK_FALSE(p.to.ask);
    STRCMP_EQUAL("10.0.0.2", p.to.to.ip);
    LONGS_EQUAL(7001, p.to.to.port);
}

TEST(ClusterReplyPlan, test_ask_is_followed_and_leaves_the_map)
{
    ClusterReplyPlan p = plan("-ASK 7 10.0.0.2:7001\r\n", 7, 2);
    LONGS_EQUAL(CLUSTER_FOLLOW, p.action);
    CHECK_FALSE(p.refresh);
    CHECK(p.to.ask);
}

TEST(ClusterReplyPlan, test_redirects_stop_at_the_limit_or_for_another_slot)
{
    LONGS_EQUAL(CLUSTER_FOLLOW, plan("-MOVED 7 a:1\r\n", 7, CLUSTER_MAX_REDIRECTS - 1).action);
    LONGS_EQUAL(CLUSTER_GIVE_UP, plan("-MOVED 7 a:1\r\n", 7, CLUSTER_MAX_REDIRECTS).action);
    LONGS_EQUAL(CLUSTER_GIVE_UP, plan("-ASK 7 a:1\r\n", 7, CLUSTER_MAX_REDIRECTS).action);
    LONGS_EQUAL(CLUSTER_GIVE_UP, plan("-MOVED 8 a:1\r\n", 7, 0).action);
}

TEST(ClusterReplyPlan, test_clusterdown_and_tryagain_are_retried)
{
    ClusterReplyPlan p = plan("-CLUSTERDOWN The cluster is down\r\n", 7, 0);
    LONGS_EQUAL(CLUSTER_RETRY, p.action);
    CHECK(p.refresh);
    p = plan("-CLUSTERDOWN Hash slot not served\r\n", 7, 0);
    LONGS_EQUAL(CLUSTER_RETRY, p.action);
    p = plan("-TRYAGAIN Multiple keys request during rehashing of slot\r\n", 7, 0);
    LONGS_EQUAL(CLUSTER_RETRY, p.action);
    CHECK_FALSE(p.refresh);
}

TEST(SlotMap, test_set_owner_says_whether_the_owner_changed)
{
    int a = slot_map_node(m, "10.0.0.1", 7000), b = slot_map_node(m, "10.0.0.2", 7000);
    CHECK(slot_map_set_owner(m, 5, a));
    CHECK_FALSE(slot_map_set_owner(m, 5, a));
    CHECK(slot_map_set_owner(m, 5, b));
    LONGS_EQUAL(b, m->owner[5]);
    LONGS_EQUAL(-1, m->owner[6]);
}

TEST(SlotMap, test_a_forgotten_node_frees_its_entry_for_the_next_one)
{
    int a = slot_map_node(m, "10.0.0.1", 7000), b = slot_map_node(m, "10.0.0.2", 7000);
    CHECK(slot_map_set_owner(m, 9, b));
    CHECK_FALSE(slot_map_forget(m, b));  // it owns a slot
    CHECK(slot_map_forget(m, a));
    LONGS_EQUAL(a, slot_map_node(m, "10.0.0.3", 7000));  // reused
    STRCMP_EQUAL("10.0.0.3", m->node[a].ip);
    LONGS_EQUAL(b, slot_map_node(m, "10.0.0.2", 7000));
    LONGS_EQUAL(2, m->nodes);
}

TEST(SlotMap, test_the_table_never_fills_with_nodes_that_came_and_went)
{
    for (int i = 0; i < 10 * SLOT_MAP_MAX_NODES; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
        int n = slot_map_node(m, ip, 7000);
        CHECK(n >= 0);
        CHECK(slot_map_forget(m, n));
    }
    CHECK(m->nodes <= 1);
}

TEST(SlotMap, test_migrating_and_importing_slots_come_from_the_answering_nodes_line_only)
{
    static bool migrating[CLUSTER_SLOTS];
    memset(migrating, 0, sizeof(migrating));
    std::string nodes =
        "e7d1 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922 [93-<-292f] [77->-e7d1]\n"
        "67ed 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [5000->-e7d1] [12-<-292f]\n"
        "292f 127.0.0.1:30003@40003 master - 0 1426238318243 3 connected 10923-16383\n";
    LONGS_EQUAL(2, cluster_nodes_migrating(nodes.data(), nodes.size(), migrating));
    CHECK(migrating[5000]);
    CHECK(migrating[12]);
    CHECK_FALSE(migrating[93]);  // another node's own state, as that node sees it: not ours to read
    CHECK_FALSE(migrating[77]);
    CHECK_FALSE(migrating[0]);
    std::string quiet = "67ed 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-16383\n";
    LONGS_EQUAL(0, cluster_nodes_migrating(quiet.data(), quiet.size(), migrating));
    std::string garbage = "myself [ [x->- [99999->-a] [-1->-a]";
    LONGS_EQUAL(0, cluster_nodes_migrating(garbage.data(), garbage.size(), migrating));
}
