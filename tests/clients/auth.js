// Logs in to redis-proxy as an ACL user ([users]) with node-redis and ioredis, as their users
// do (username and password options), reads a key the user may read and one it may not, and
// tries a wrong password. Prints one JSON object; test_auth.py checks it.
// usage: node auth.js <port> <user> <password>
'use strict';
const { createClient } = require('redis');
const Redis = require('ioredis');

const [port, username, password] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const message = e => String(e && e.message || e);

async function nodeRedis() {
    const out = {};
    const client = createClient({ socket: { port, host: '127.0.0.1', reconnectStrategy: false }, username, password });
    client.on('error', () => {});
    await client.connect();
    out.allowed = await client.get('user:1');
    out.forbidden = await client.get('secret:1').then(v => v, message);
    await client.quit();
    const wrong = createClient({ socket: { port, host: '127.0.0.1', reconnectStrategy: false }, username,
                                 password: password + 'x' });
    wrong.on('error', () => {});
    out.wrong = await wrong.connect().then(() => 'connected', message);
    return out;
}

async function ioredis() {
    const out = {};
    const client = new Redis({ port, host: '127.0.0.1', username, password, maxRetriesPerRequest: 0,
                               retryStrategy: () => null, lazyConnect: true });
    await client.connect();
    out.allowed = await client.get('user:1');
    out.forbidden = await client.mget('user:1', 'secret:1').then(v => v, message);
    await client.quit();
    const wrong = new Redis({ port, host: '127.0.0.1', username, password: password + 'x', maxRetriesPerRequest: 0,
                              retryStrategy: () => null, lazyConnect: true });
    // ioredis reports a refused AUTH on its error event, and rejects connect() with what follows.
    let refused = null;
    wrong.on('error', e => { refused = refused || message(e); });
    out.wrong = await wrong.connect().then(() => 'connected', e => refused || message(e));
    wrong.disconnect();
    return out;
}

(async () => {
    const result = { nodeRedis: await nodeRedis(), ioredis: await ioredis() };
    process.stdout.write(JSON.stringify(result) + '\n');
})().catch(e => {
    process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
    process.exit(1);
});
