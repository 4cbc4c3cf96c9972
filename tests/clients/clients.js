// Reads through redis-proxy with the Node.js clients people use, the way they batch reads:
// node-redis multi().exec() and ioredis multi() (MULTI/EXEC), and ioredis pipeline(). Prints one
// JSON object of what each returned; test_clients.py checks it.
// usage: node clients.js <port>
'use strict';
const { createClient } = require('redis');
const Redis = require('ioredis');

const port = Number(process.argv[2]);

async function nodeRedis() {
    const client = createClient({ socket: { port, host: '127.0.0.1', reconnectStrategy: false } });
    client.on('error', () => {});
    await client.connect();
    const out = {};
    out.get = await client.get('a');
    out.multi = await client.multi().get('a').get('nosuch').mGet(['a', 'b']).exec();
    out.aborted = await client.multi().get('a').set('a', 'x').exec().then(() => 'ok', e => e.message);
    await client.quit();
    return out;
}

async function ioredis() {
    const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: () => null,
                               lazyConnect: true });
    await client.connect();
    const out = {};
    out.multi = await client.multi().get('a').get('nosuch').mget('a', 'b').exec();
    out.pipeline = await client.pipeline().get('a').mget('b', 'nosuch').exec();
    out.aborted = await client.multi().get('a').incr('a').exec().then(() => 'ok', e => e.message);
    await client.quit();
    return out;
}

(async () => {
    const result = { nodeRedis: await nodeRedis(), ioredis: await ioredis() };
    process.stdout.write(JSON.stringify(result) + '\n');
})().catch(e => {
    process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
    process.exit(1);
});
