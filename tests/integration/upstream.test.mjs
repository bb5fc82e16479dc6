// When the rail misbehaves: down (502 payguard_rail_unreachable), too slow
// (504 payguard_rail_timeout, and the late answer never reaches a later
// request), garbage (502 payguard_rail_bad_response), hanging up before or in
// the middle of an answer, and hop-by-hop headers in its answers.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomUUID, createHash } from 'node:crypto';
import http from 'node:http';

import { startStack, testWithLogs, httpRail, closedPort, stripeShapedError, waitFor, WAIT_MS } from './lib/harness.mjs';
import { request, rawExchange, rawRequestBytes, responsesAtLeast } from './lib/http.mjs';

const RAIL_TIMEOUT_MS = 1000;
// 16 MiB (more than the kernel buffers on both sides hold), no two chunks alike, so reordering or loss shows in the hash.
const BIG = Buffer.alloc(16 * 1024 * 1024);
for (let i = 0; i < BIG.length; i += 4) BIG.writeUInt32LE((i * 2654435761) >>> 0, i);
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');

/* A fake rail on raw TCP: `onRequest(socket, headText)` runs once per
 * request head received; it decides what bytes to send back. */
async function fakeRail(onRequest) {
    const sockets = new Set();
    let requests = 0;
    const srv = net.createServer((sock) => {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
        sock.on('error', () => {});
        let buf = '';
        sock.on('data', (d) => {
            buf += d.toString('latin1');
            let i;
            while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
                const head = buf.slice(0, i);
                const cl = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
                if (buf.length < i + 4 + cl) return;
                buf = buf.slice(i + 4 + cl);
                requests++;
                onRequest(sock, head);
            }
        });
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    return {
        url: `http://127.0.0.1:${srv.address().port}`,
        requests: () => requests,
        close: () => new Promise((r) => { for (const s of sockets) s.destroy(); srv.close(r); }),
    };
}

let s;
const fakes = {};
const test = testWithLogs(() => s?.pg);

before(async () => {
    fakes.garbage = await fakeRail((sock) => sock.end('SPDY/9 banana\r\n\r\n'));
    fakes.hangup = await fakeRail((sock) => sock.destroy());
    fakes.midbody = await fakeRail((sock) => {
        sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"object":"bal');
        setTimeout(() => sock.destroy(), 50);
    });
    fakes.hoppy = await fakeRail((sock) => {
        const body = '{"object":"balance"}';
        sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n' +
                   'Connection: keep-alive, X-Rail-Hop\r\nX-Rail-Hop: secret-hop\r\nKeep-Alive: timeout=5\r\n' +
                   'Proxy-Authenticate: Basic realm="rail"\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\n' +
                   'Upgrade: h2c\r\nX-Rail-End: kept\r\nRequest-Id: req_fake\r\n' +
                   `Content-Length: ${body.length}\r\n\r\n${body}`);
    });
    fakes.dualframing = await fakeRail((sock) => {
        // A response-splitting attempt: both framings.
        sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n' +
                   'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}');
    });
    fakes.big = await fakeRail((sock, head) => {
        if (/^GET \/v1\/customers/.test(head)) {
            sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n');
            for (let off = 0; off < BIG.length; off += 65536) {
                const part = BIG.subarray(off, off + 65536);
                sock.write(`${part.length.toString(16)}\r\n`);
                sock.write(part);
                sock.write('\r\n');
            }
            sock.write('0\r\n\r\n');
        } else {
            sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${BIG.length}\r\n\r\n`);
            sock.write(BIG);
        }
    });
    const down = await closedPort();
    s = await startStack('upstream', {
        rails: async (mock) => ({
            down: httpRail(`http://127.0.0.1:${down}`),
            slow: httpRail(mock.url, { timeout_ms: RAIL_TIMEOUT_MS }),
            garbage: httpRail(fakes.garbage.url),
            hangup: httpRail(fakes.hangup.url),
            midbody: httpRail(fakes.midbody.url),
            hoppy: httpRail(fakes.hoppy.url),
            dualframing: httpRail(fakes.dualframing.url),
            big: httpRail(fakes.big.url),
        }),
    });
});
after(async () => {
    s?.pg.kill();
    await s?.mock.stop();
    for (const f of Object.values(fakes)) await f.close();
});

const via = (rail, extra = {}) => ({ ...s.auth, 'Payguard-Rail': rail, ...extra });

test('rail down (port closed): 502 payguard_rail_unreachable', async () => {
    const res = await request(s.pg.port, {
        method: 'POST', path: '/v1/payment_intents', body: 'amount=1000&currency=usd',
        headers: via('down', { 'Content-Type': 'application/x-www-form-urlencoded', 'Idempotency-Key': `it-${randomUUID()}` }),
    });
    stripeShapedError(assert, res, 502, 'payguard_rail_unreachable');
    assert.equal(res.json.error.type, 'api_error');
    assert.match(res.json.error.message, /connect/i);
    /* the log line is written just after the answer */
    const log = await s.pg.waitEvent((e) => e.msg === undefined && e.rail === 'down', 'the request log line');
    assert.equal(log.status, 502);
    assert.equal(log.rail, 'down');
});

test('rail slower than timeout_ms: 504 payguard_rail_timeout', async () => {
    const t0 = Date.now();
    const res = await request(s.pg.port, {
        path: '/v1/balance', headers: via('slow', { 'X-Mock-Delay-Ms': String(RAIL_TIMEOUT_MS * 3) }),
    });
    stripeShapedError(assert, res, 504, 'payguard_rail_timeout');
    assert.equal(res.json.error.type, 'api_error');
    assert.match(res.json.error.message, /Idempotency-Key/, 'tells the agent how to retry safely');
    assert.ok(Date.now() - t0 < RAIL_TIMEOUT_MS * 3, 'answered before the rail did');
});

test('after a timeout, the late answer never reaches the next request', async () => {
    const timedOut = await request(s.pg.port, {
        path: '/v1/balance', headers: via('slow', { 'X-Mock-Delay-Ms': String(RAIL_TIMEOUT_MS + 300) }),
    });
    assert.equal(timedOut.status, 504);
    // This one waits long enough for the first answer (a balance) to arrive
    // on any connection payguard might have wrongly kept.
    const res = await request(s.pg.port, {
        method: 'POST', path: '/v1/payment_intents', body: 'amount=4321&currency=usd',
        headers: via('slow', { 'X-Mock-Delay-Ms': '600', 'Content-Type': 'application/x-www-form-urlencoded',
                               'Idempotency-Key': `it-${randomUUID()}` }),
    });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.object, 'payment_intent');
    assert.equal(res.json.amount, 4321);
});

test('a rail that answers garbage: 502 payguard_rail_bad_response', async () => {
    const res = await request(s.pg.port, { path: '/v1/balance', headers: via('garbage') });
    stripeShapedError(assert, res, 502, 'payguard_rail_bad_response');
    assert.equal(fakes.garbage.requests(), 1);
});

test('a rail that hangs up without answering: 502 payguard_rail_unreachable', async () => {
    const res = await request(s.pg.port, { path: '/v1/balance', headers: via('hangup') });
    stripeShapedError(assert, res, 502, 'payguard_rail_unreachable');
});

test('a rail that hangs up mid-answer: the agent sees a truncated answer closed, never a complete 200', async () => {
    const ex = await rawExchange(s.pg.port, rawRequestBytes('GET /v1/balance HTTP/1.1', [
        'Host: 127.0.0.1', `Authorization: Bearer ${s.token.token}`, 'Payguard-Rail: midbody',
    ]), { timeoutMs: WAIT_MS });
    assert.equal(ex.timedOut, false, 'payguard closes the agent connection');
    assert.equal(ex.responses.length, 0, `no complete response may be delivered: ${ex.text}`);
    assert.match(ex.text, /^HTTP\/1\.1 200 /, 'the head had already been sent');
});

test('hop-by-hop headers in the rail\'s answer are not passed to the agent', async () => {
    const res = await request(s.pg.port, { path: '/v1/balance', headers: via('hoppy') });
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.json, { object: 'balance' });
    for (const h of ['x-rail-hop', 'keep-alive', 'proxy-authenticate', 'proxy-connection', 'trailer', 'upgrade']) {
        assert.equal(res.headers[h], undefined, `${h} reached the agent`);
    }
    assert.equal(res.headers['x-rail-end'], 'kept');
    assert.equal(res.headers['request-id'], 'req_fake');
});

test('a rail answer with both Content-Length and Transfer-Encoding: 502, nothing of it relayed', async () => {
    const ex = await rawExchange(s.pg.port, rawRequestBytes('GET /v1/balance HTTP/1.1', [
        'Host: 127.0.0.1', `Authorization: Bearer ${s.token.token}`, 'Payguard-Rail: dualframing',
    ]), { until: responsesAtLeast(1) });
    assert.equal(ex.responses.length, 1, ex.text);
    stripeShapedError(assert, ex.responses[0], 502, 'payguard_rail_bad_response');
    assert.ok(!ex.text.includes('{"a":'), 'no byte of the ambiguous answer reached the agent');
});

/* GETs `path` on the big rail, reading slowly at first so payguard has to
 * hold back the rail (its write queue passes the high-water mark). */
function slowRead(path) {
    return new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: s.pg.port, path, agent: false,
                               headers: { ...s.auth, 'Payguard-Rail': 'big' } }, (res) => {
            const hash = createHash('sha256');
            let n = 0;
            res.pause();
            setTimeout(() => res.resume(), 700);
            res.on('data', (d) => { hash.update(d); n += d.length; });
            res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode, headers: res.headers, n, sha: hash.digest('hex') }); });
            res.on('error', reject);
        });
        const timer = setTimeout(() => req.destroy(new Error('big answer did not finish')), WAIT_MS);
        req.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
}

test('a 16 MiB answer to a slow reader arrives complete and in order (Content-Length)', async () => {
    const r = await slowRead('/v1/balance');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(BIG.length));
    assert.equal(r.n, BIG.length);
    assert.equal(r.sha, BIG_SHA);
});

test('a 16 MiB chunked answer to a slow reader arrives complete and in order', async () => {
    const r = await slowRead('/v1/customers');
    assert.equal(r.status, 200);
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    assert.equal(r.n, BIG.length);
    assert.equal(r.sha, BIG_SHA);
});

test('an agent that hangs up while its request is at the rail leaves payguard healthy', async () => {
    const before = await s.mock.count();
    const sock = net.connect(s.pg.port, '127.0.0.1');
    sock.on('error', () => {});
    await new Promise((r) => sock.on('connect', r));
    sock.write(rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: x', `Authorization: Bearer ${s.token.token}`,
                                                            'X-Mock-Delay-Ms: 400']));
    await waitFor(async () => (await s.mock.count()) > before, 'the request to reach the rail');
    sock.destroy();
    // The rail answers into the void; payguard must neither crash nor hand
    // that answer to anyone else.
    const res = await request(s.pg.port, {
        method: 'POST', path: '/v1/payment_intents', body: 'amount=777&currency=usd',
        headers: { ...s.auth, 'Content-Type': 'application/x-www-form-urlencoded', 'Idempotency-Key': `it-${randomUUID()}`,
                   'X-Mock-Delay-Ms': '600' },
    });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.amount, 777);
    // A reader that leaves in the middle of a big answer, too.
    const half = net.connect(s.pg.port, '127.0.0.1');
    half.on('error', () => {});
    await new Promise((r) => half.on('connect', r));
    half.write(rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: x', `Authorization: Bearer ${s.token.token}`, 'Payguard-Rail: big']));
    await new Promise((r) => half.once('data', r));
    half.destroy();
    assert.equal((await request(s.pg.port, { path: '/v1/balance', headers: s.auth })).status, 200);
});

test('the healthy rail still answers after all of the above', async () => {
    const res = await request(s.pg.port, { path: '/v1/balance', headers: s.auth });
    assert.equal(res.status, 200, res.body);
});

test('payguard stops cleanly on SIGTERM', async () => {
    const { code, signal } = await s.pg.stop();
    assert.equal(signal, null, s.pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${s.pg.tail(80)}`);
});
