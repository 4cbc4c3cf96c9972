// A hiredis client for the system tests: pipelines GET for every key named on stdin (one per
// line) on one connection, then reads every reply, and prints one line per reply, in order:
//   V <value as hex>   |   N (nil)   |   E <error text>
// usage: resp-pipeline PORT < keys
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: resp-pipeline PORT < keys\n");
        return 2;
    }
    redisContext *c = redisConnect("127.0.0.1", atoi(argv[1]));
    if (c == NULL || c->err) {
        fprintf(stderr, "connect: %s\n", c ? c->errstr : "out of memory");
        return 1;
    }
    char line[4096];
    int sent = 0;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        redisAppendCommand(c, "GET %s", line);
        sent++;
    }
    for (int i = 0; i < sent; i++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            fprintf(stderr, "reply %d: %s\n", i, c->errstr);
            return 1;
        }
        if (r->type == REDIS_REPLY_STRING) {
            printf("V ");
            for (size_t j = 0; j < r->len; j++)
                printf("%02x", (unsigned char)r->str[j]);
            printf("\n");
        } else if (r->type == REDIS_REPLY_NIL) {
            printf("N\n");
        } else if (r->type == REDIS_REPLY_ERROR) {
            printf("E %s\n", r->str);
        } else {
            printf("? %d\n", r->type);
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return 0;
}
