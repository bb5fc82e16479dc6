// The forwarding path: what the agent gets back and, above all, exactly what
// reaches the rail (secret injected, agent token gone, Host rewritten,
// hop-by-hop headers stripped, body re-framed), keep-alive on both sides,
// pipelining, chunked answers, the admin listener and the request log.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { startStack, testWithLogs, headerValue, headerValues, stripeShapedError, sleep, waitFor, httpRail } from './lib/harness.mjs';
import { request, keepAliveAgent, rawExchange, rawRequestBytes, responsesAtLeast, parseResponses } from './lib/http.mjs';
import { derivedKey } from './lib/ledger.mjs';

let s;
const test = testWithLogs(() => s?.pg);

before(async () => {
    s = await startStack('proxy', {
        // Same rail, but requests its route table does not know pass through.
        rails: async (mock) => ({ passthru: httpRail(mock.url, { unmatched: 'pass' }) }),
    });
});
after(async () => {
    s?.pg.kill();
    await s?.mock.stop();
});

/* The requests the rail recorded since `from` (an index into its log). */
async function railRequestsSince(from) {
    return (await s.mock.requests()).slice(from);
}

function assertNoAgentToken(reqs) {
    for (const r of reqs) {
        for (const [name, value] of r.headers) {
            assert.ok(!value.includes(s.token.token), `agent token leaked to the rail in ${name}`);
            assert.ok(!value.includes('pgt_'), `a pgt_ token reached the rail in ${name}: ${value}`);
            assert.ok(!name.toLowerCase().startsWith('payguard-'), `payguard control header ${name} reached the rail`);
        }
        assert.ok(!r.body.includes('pgt_'), 'a pgt_ token reached the rail in the body');
        assert.ok(!r.path.includes('pgt_'), 'a pgt_ token reached the rail in the path');
    }
}

test('GET /v1/balance passes through with the rail secret injected', async () => {
    const n0 = (await s.mock.requests()).length;
    const res = await request(s.pg.port, {
        path: '/v1/balance',
        headers: { ...s.auth, Host: 'agent-side.invalid', 'Stripe-Version': '2024-06-20' },
    });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.object, 'balance');
    assert.equal(res.headers['payguard-decision'], undefined, 'a rail answer is not a payguard answer');

    const reqs = await railRequestsSince(n0);
    assert.equal(reqs.length, 1, 'exactly one request reached the rail');
    const r = reqs[0];
    assert.equal(r.method, 'GET');
    assert.equal(r.path, '/v1/balance');
    assert.deepEqual(headerValues(r, 'Authorization'), [`Bearer ${s.mock.secret}`]);
    assert.deepEqual(headerValues(r, 'Host'), [`127.0.0.1:${s.mock.port}`], 'Host rewritten to the upstream');
    assert.equal(headerValue(r, 'Stripe-Version'), '2024-06-20');
    assert.equal(r.body, '');
    assertNoAgentToken(reqs);
});

test('POST /v1/payment_intents passes body, Idempotency-Key, Stripe-Version, Content-Type', async () => {
    const n0 = (await s.mock.requests()).length;
    const key = `it-${randomUUID()}`;
    const body = 'amount=1000&currency=usd';
    const res = await request(s.pg.port, {
        method: 'POST', path: '/v1/payment_intents', body,
        headers: {
            ...s.auth,
            'Content-Type': 'application/x-www-form-urlencoded',
            'Content-Length': String(body.length),
            'Idempotency-Key': key,
            'Stripe-Version': '2024-06-20',
        },
    });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.object, 'payment_intent');
    assert.equal(res.json.amount, 1000);
    assert.equal(res.json.currency, 'usd');

    const reqs = await railRequestsSince(n0);
    assert.equal(reqs.length, 1);
    const r = reqs[0];
    assert.equal(r.method, 'POST');
    assert.equal(r.path, '/v1/payment_intents');
    assert.equal(r.body, body);
    assert.deepEqual(headerValues(r, 'Authorization'), [`Bearer ${s.mock.secret}`]);
    assert.deepEqual(headerValues(r, 'Host'), [`127.0.0.1:${s.mock.port}`]);
    // The rail gets the key derived from the agent and its key (README, Idempotency).
    assert.deepEqual(headerValues(r, 'Idempotency-Key'), [derivedKey('shopper', key)]);
    assert.equal(headerValue(r, 'Stripe-Version'), '2024-06-20');
    assert.equal(headerValue(r, 'Content-Type'), 'application/x-www-form-urlencoded');
    assert.deepEqual(headerValues(r, 'Content-Length'), [String(body.length)]);
    assertNoAgentToken(reqs);
});

test('hop-by-hop headers and payguard control headers are not forwarded', async () => {
    const n0 = (await s.mock.requests()).length;
    const req = rawRequestBytes('GET /v1/balance HTTP/1.1', [
        'Host: 127.0.0.1',
        `Authorization: Bearer ${s.token.token}`,
        'Connection: keep-alive, X-Hop-Listed, x-other-listed',
        'X-Hop-Listed: must-not-pass',
        'X-Other-Listed: must-not-pass',
        'Keep-Alive: timeout=5, max=100',
        'Proxy-Authorization: Basic cHJveHk6cHJveHk=',
        'Proxy-Connection: keep-alive',
        'TE: trailers',
        'Trailer: X-Checksum',
        'Payguard-Rail: stripe',
        'Payguard-Whatever: x',
        'X-End-To-End: kept',
        'Stripe-Account: acct_123',
    ]);
    const ex = await rawExchange(s.pg.port, req, { until: responsesAtLeast(1) });
    assert.equal(ex.responses.length, 1, ex.text);
    assert.equal(ex.responses[0].status, 200, ex.text);

    const reqs = await railRequestsSince(n0);
    assert.equal(reqs.length, 1);
    const names = reqs[0].headers.map(([n]) => n.toLowerCase());
    for (const gone of ['connection', 'x-hop-listed', 'x-other-listed', 'keep-alive', 'proxy-authorization',
                        'proxy-connection', 'te', 'trailer', 'payguard-rail', 'payguard-whatever',
                        'transfer-encoding', 'upgrade']) {
        assert.ok(!names.includes(gone), `${gone} reached the rail: ${JSON.stringify(reqs[0].headers)}`);
    }
    assert.equal(headerValue(reqs[0], 'X-End-To-End'), 'kept');
    assert.equal(headerValue(reqs[0], 'Stripe-Account'), 'acct_123');
    assert.deepEqual(headerValues(reqs[0], 'Authorization'), [`Bearer ${s.mock.secret}`]);
    assertNoAgentToken(reqs);
});

test('the request target (path and query string) reaches the rail byte for byte', async () => {
    const n0 = (await s.mock.requests()).length;
    const target = '/v1/customers?limit=3&email=a%40b.example&expand[]=data.default_source';
    const res = await request(s.pg.port, { path: target, headers: s.auth });
    assert.equal(res.status, 200, res.body);
    const [r] = await railRequestsSince(n0);
    assert.equal(r.path, target);
});

test('a route the rail\'s table does not know is refused (unmatched: deny); the rail saw nothing', async () => {
    const before = await s.mock.count();
    const odd = await request(s.pg.port, {
        method: 'POST', path: '/v1/not_a_stripe_thing', body: 'amount=1000&currency=usd',
        headers: { ...s.auth, 'Content-Type': 'application/x-www-form-urlencoded', 'Idempotency-Key': `it-${randomUUID()}` },
    });
    stripeShapedError(assert, odd, 403, 'payguard_unknown_operation');
    assert.equal(await s.mock.count(), before, 'the rail saw nothing');
});

test('payguard\'s own answers to HEAD carry no body, so a kept-alive connection stays in step', async () => {
    const before = await s.mock.count();
    for (const [what, headers] of [
        ['401 (no token)', ['Host: x']],
        ['403 (HEAD is no route of the Stripe table)', ['Host: x', `Authorization: Bearer ${s.token.token}`]],
    ]) {
        const bytes = Buffer.concat([
            rawRequestBytes('HEAD /v1/balance HTTP/1.1', headers),
            rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: x', `Authorization: Bearer ${s.token.token}`]),
        ]);
        const ex = await rawExchange(s.pg.port, bytes, { until: (b) => b.includes('"object":"balance"'), timeoutMs: 3000 });
        const end = ex.text.indexOf('\r\n\r\n');
        assert.ok(end > 0, ex.text);
        assert.match(ex.text, /^HTTP\/1\.1 40[13] /, what);
        const after = ex.text.slice(end + 4);
        assert.ok(after === '' || after.startsWith('HTTP/1.1 '),
                  `${what}: bytes after the HEAD answer's head that are no next answer: ${JSON.stringify(after.slice(0, 80))}`);
    }
    assert.equal(await s.mock.count(), before + 2, 'only the two GETs reached the rail');
});

test('HEAD (on a rail that passes unknown routes) gets the head only, and the connection stays usable', async () => {
    const bytes = Buffer.concat([
        rawRequestBytes('HEAD /v1/balance HTTP/1.1', ['Host: x', `Authorization: Bearer ${s.token.token}`,
                                                      'Payguard-Rail: passthru']),
        rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: x', `Authorization: Bearer ${s.token.token}`]),
    ]);
    const ex = await rawExchange(s.pg.port, bytes, { until: (b) => b.includes('"object":"balance"') });
    // The parser below would take a HEAD answer's Content-Length as a body:
    // split on the second status line instead.
    const at = ex.text.indexOf('HTTP/1.1', 1);
    assert.ok(at > 0, ex.text);
    const head = ex.text.slice(0, at);
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.ok(head.endsWith('\r\n\r\n'), `no body after a HEAD answer: ${JSON.stringify(head)}`);
    assert.match(head, /\r\ncontent-length: \d+\r\n/i);
    const rest = parseResponses(Buffer.from(ex.text.slice(at), 'latin1')).responses;
    assert.equal(rest[0]?.status, 200);
    assert.equal(rest[0].json.object, 'balance');
});

test('Connection: close from the agent: answered, then closed', async () => {
    const ex = await rawExchange(s.pg.port, rawRequestBytes('GET /v1/balance HTTP/1.1', [
        'Host: x', `Authorization: Bearer ${s.token.token}`, 'Connection: close']));
    assert.equal(ex.timedOut, false, 'payguard closed the connection');
    assert.equal(ex.responses.length, 1, ex.text);
    assert.equal(ex.responses[0].status, 200);
    assert.equal(ex.responses[0].header('connection'), 'close');
});

test('HTTP/1.0 without Host: answered and closed', async () => {
    const n0 = (await s.mock.requests()).length;
    const ex = await rawExchange(s.pg.port, rawRequestBytes('GET /v1/balance HTTP/1.0', [
        `Authorization: Bearer ${s.token.token}`]));
    assert.equal(ex.timedOut, false);
    assert.equal(ex.responses[0]?.status, 200, ex.text);
    assert.equal(ex.responses[0].json.object, 'balance');
    const [r] = await railRequestsSince(n0);
    assert.deepEqual(headerValues(r, 'Host'), [`127.0.0.1:${s.mock.port}`], 'payguard supplies the rail\'s Host');
});

test('a chunked request body is re-framed with Content-Length for the rail', async () => {
    const n0 = (await s.mock.requests()).length;
    const req = rawRequestBytes('POST /v1/payment_intents HTTP/1.1', [
        'Host: 127.0.0.1',
        `Authorization: Bearer ${s.token.token}`,
        'Content-Type: application/x-www-form-urlencoded',
        `Idempotency-Key: it-${randomUUID()}`,
        'Transfer-Encoding: chunked',
    ], '6\r\namount\r\n12\r\n=1500&currency=usd\r\n0\r\n\r\n');
    const ex = await rawExchange(s.pg.port, req, { until: responsesAtLeast(1) });
    assert.equal(ex.responses[0]?.status, 200, ex.text);
    assert.equal(ex.responses[0].json.amount, 1500);
    const [r] = await railRequestsSince(n0);
    assert.equal(r.body, 'amount=1500&currency=usd');
    assert.deepEqual(headerValues(r, 'Content-Length'), ['24']);
    assert.deepEqual(headerValues(r, 'Transfer-Encoding'), []);
});

test('Expect: 100-continue gets an interim 100 and is not forwarded', async () => {
    const n0 = (await s.mock.requests()).length;
    const body = 'amount=700&currency=usd';
    const head = rawRequestBytes('POST /v1/payment_intents HTTP/1.1', [
        'Host: 127.0.0.1',
        `Authorization: Bearer ${s.token.token}`,
        'Content-Type: application/x-www-form-urlencoded',
        `Idempotency-Key: it-${randomUUID()}`,
        `Content-Length: ${body.length}`,
        'Expect: 100-continue',
    ]);
    // The body goes only after the 100 arrived: a proxy that never sends it
    // makes this exchange time out.
    const ex = await new Promise((resolve, reject) => {
        import('node:net').then(({ default: net }) => {
            const sock = net.connect(s.pg.port, '127.0.0.1');
            let buf = Buffer.alloc(0);
            let sentBody = false;
            const timer = setTimeout(() => { sock.destroy(); reject(new Error(`stuck; got: ${buf.toString('latin1')}`)); }, 5000);
            sock.on('connect', () => sock.write(head));
            sock.on('data', (d) => {
                buf = Buffer.concat([buf, d]);
                const t = buf.toString('latin1');
                if (!sentBody && t.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
                    sentBody = true;
                    sock.write(body);
                }
                if (responsesAtLeast(2)(buf)) { clearTimeout(timer); sock.destroy(); resolve(t); }
            });
            sock.on('error', (e) => { clearTimeout(timer); reject(e); });
        });
    });
    assert.match(ex, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    const [r] = await railRequestsSince(n0);
    assert.equal(r.body, body);
    assert.deepEqual(headerValues(r, 'Expect'), []);
});

test('keep-alive on both sides: 20 requests, one client socket, pooled rail connections', async () => {
    const agent = keepAliveAgent(1);
    try {
        // Warm the pool and our own control connection, then measure.
        const warm = await request(s.pg.port, { path: '/v1/balance', headers: s.auth, agent });
        assert.equal(warm.status, 200);
        const before = await s.mock.stats();
        const sockets = new Set();
        for (let i = 0; i < 20; i++) {
            const res = await request(s.pg.port, { path: '/v1/balance', headers: s.auth, agent });
            assert.equal(res.status, 200, res.body);
            assert.equal(res.json.object, 'balance');
            sockets.add(res.socket);
        }
        const after = await s.mock.stats();
        assert.equal(sockets.size, 1, 'the agent used one connection for all 20 requests');
        assert.equal(after.requests - before.requests, 20);
        const newConns = after.connections - before.connections;
        assert.ok(newConns <= 2, `payguard opened ${newConns} new rail connections for 20 sequential requests`);
    } finally {
        agent.destroy();
    }
});

test('pipelining: two requests in one write get two answers, in order', async () => {
    const n0 = (await s.mock.requests()).length;
    const body = 'amount=1234&currency=usd';
    const bytes = Buffer.concat([
        // The first answer is slower, so out-of-order answering would show.
        rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: 127.0.0.1', `Authorization: Bearer ${s.token.token}`,
                                                     'X-Mock-Delay-Ms: 300']),
        rawRequestBytes('POST /v1/payment_intents HTTP/1.1', [
            'Host: 127.0.0.1', `Authorization: Bearer ${s.token.token}`,
            'Content-Type: application/x-www-form-urlencoded', `Idempotency-Key: it-${randomUUID()}`,
            `Content-Length: ${body.length}`,
        ], body),
    ]);
    const ex = await rawExchange(s.pg.port, bytes, { until: responsesAtLeast(2) });
    assert.equal(ex.responses.length, 2, ex.text);
    assert.equal(ex.responses[0].status, 200);
    assert.equal(ex.responses[0].json.object, 'balance');
    assert.equal(ex.responses[1].status, 200);
    assert.equal(ex.responses[1].json.object, 'payment_intent');
    assert.equal(ex.responses[1].json.amount, 1234);
    assert.equal(ex.closed, false, 'the connection stays open after pipelined keep-alive requests');
    const reqs = await railRequestsSince(n0);
    assert.deepEqual(reqs.map((r) => r.path), ['/v1/balance', '/v1/payment_intents']);
});

test('a malformed request pipelined in front of a valid one: 400, close, nothing forwarded', async () => {
    const before = await s.mock.count();
    const bytes = Buffer.concat([
        rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: 127.0.0.1', `Authorization: Bearer ${s.token.token}`,
                                                     'X-Folded: a', ' b']),
        rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: 127.0.0.1', `Authorization: Bearer ${s.token.token}`]),
    ]);
    const ex = await rawExchange(s.pg.port, bytes);
    assert.equal(ex.timedOut, false, 'payguard closes the connection');
    assert.equal(ex.responses.length, 1, ex.text);
    stripeShapedError(assert, ex.responses[0], 400, 'payguard_bad_request');
    assert.equal(await s.mock.count(), before, 'the rail saw nothing');
});

test('a chunked answer from the rail reaches the agent intact', async () => {
    const plain = await request(s.pg.port, { path: '/v1/balance', headers: s.auth });
    const ex = await rawExchange(s.pg.port, rawRequestBytes('GET /v1/balance HTTP/1.1', [
        'Host: 127.0.0.1', `Authorization: Bearer ${s.token.token}`, 'X-Mock-Chunked: 1',
    ]), { until: responsesAtLeast(1) });
    const res = ex.responses[0];
    assert.ok(res, ex.text);
    assert.equal(res.status, 200);
    assert.equal(res.chunked, true, `the answer is chunked: ${res.rawHead}`);
    assert.equal(res.headers['content-length'], undefined);
    assert.deepEqual(res.json, plain.json, 'same object as the unchunked answer');

    // And through node:http, which decodes the chunks itself.
    const viaHttp = await request(s.pg.port, { path: '/v1/balance', headers: { ...s.auth, 'X-Mock-Chunked': '1' } });
    assert.equal(viaHttp.status, 200);
    assert.equal(viaHttp.headers['transfer-encoding'], 'chunked');
    assert.deepEqual(viaHttp.json, plain.json);
});

test('a chunked POST answer (payment intent) is intact too, and the connection is reusable', async () => {
    const agent = keepAliveAgent(1);
    try {
        const sockets = new Set();
        for (const amount of [1111, 2222]) {
            const body = `amount=${amount}&currency=eur`;
            const res = await request(s.pg.port, {
                method: 'POST', path: '/v1/payment_intents', body, agent,
                headers: { ...s.auth, 'X-Mock-Chunked': '1', 'Content-Type': 'application/x-www-form-urlencoded',
                           'Idempotency-Key': `it-${randomUUID()}` },
            });
            assert.equal(res.status, 200, res.body);
            assert.equal(res.json.amount, amount);
            assert.equal(res.json.currency, 'eur');
            sockets.add(res.socket);
        }
        assert.equal(sockets.size, 1);
    } finally {
        agent.destroy();
    }
});

test('the rail\'s own errors pass through unchanged (402 decline, 500)', async () => {
    const decline = await request(s.pg.port, {
        method: 'POST', path: '/v1/payment_intents', body: 'amount=402402&currency=usd',
        headers: { ...s.auth, 'Content-Type': 'application/x-www-form-urlencoded', 'Idempotency-Key': `it-${randomUUID()}` },
    });
    assert.equal(decline.status, 402, decline.body);
    assert.equal(decline.json.error.type, 'card_error');
    assert.equal(decline.headers['payguard-decision'], undefined);
    const boom = await request(s.pg.port, {
        method: 'POST', path: '/v1/payment_intents', body: 'amount=500500&currency=usd',
        headers: { ...s.auth, 'Content-Type': 'application/x-www-form-urlencoded', 'Idempotency-Key': `it-${randomUUID()}` },
    });
    assert.equal(boom.status, 500, boom.body);
    assert.equal(boom.json.error.type, 'api_error');
});

test('admin listener: /healthz and /readyz answer JSON; agent paths are 404 and never proxied', async () => {
    const h = await request(s.pg.adminPort, { path: '/healthz' });
    assert.equal(h.status, 200);
    assert.match(h.headers['content-type'], /^application\/json/);
    assert.equal(h.json.status, 'ok');
    const r = await request(s.pg.adminPort, { path: '/readyz' });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.equal(r.json.status, 'ready');

    const before = await s.mock.count();
    const agentPath = await request(s.pg.adminPort, { path: '/v1/balance', headers: s.auth });
    assert.equal(agentPath.status, 404);
    assert.ok(agentPath.json, 'JSON 404');
    const post = await request(s.pg.adminPort, {
        method: 'POST', path: '/v1/payment_intents', body: 'amount=1000&currency=usd',
        headers: { ...s.auth, 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(post.status, 404);
    const wrongMethod = await request(s.pg.adminPort, { method: 'POST', path: '/healthz', body: '' });
    assert.equal(wrongMethod.status, 405);
    assert.equal(await s.mock.count(), before, 'the admin port never reaches the rail');
});

test('request log: one JSON line per request, path without the query string', async () => {
    const marker = `/v1/customers`;
    const before = s.pg.requestLogs().length;
    const res = await request(s.pg.port, {
        path: `${marker}?email=someone%40example.com&limit=3`, headers: s.auth,
    });
    assert.equal(res.status, 200, res.body);
    const denied = await request(s.pg.port, { path: '/v1/balance?x=1' });
    assert.equal(denied.status, 401);

    const logs = await waitFor(() => {
        const l = s.pg.requestLogs().slice(before);
        return l.length >= 2 ? l : null;
    }, 'two request log lines');
    assert.equal(logs.length, 2, JSON.stringify(logs));
    const [ok, bad] = logs;
    assert.equal(ok.agent, 'shopper');
    assert.equal(ok.method, 'GET');
    assert.equal(ok.path, marker);
    assert.equal(ok.rail, 'stripe');
    assert.equal(ok.status, 200);
    assert.ok(Number.isInteger(ok.latency_us) && ok.latency_us > 0, `latency_us: ${ok.latency_us}`);
    assert.ok(Number.isInteger(ok.upstream_us), `upstream_us: ${ok.upstream_us}`);
    assert.ok(ok.bytes_in > 0 && ok.bytes_out > 0);
    assert.match(ok.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal(bad.status, 401);
    assert.equal(bad.path, '/v1/balance');
    assert.equal(bad.agent, undefined, 'no agent on an unauthenticated request');
    assert.equal(bad.error, 'payguard_missing_token');
    for (const l of s.pg.lines) assert.ok(!l.includes('someone%40example.com') && !l.includes('limit=3'),
                                          `the query string was logged: ${l}`);
});

test('request log: a request refused before its request line was understood is logged without an invented method or path', async () => {
    const before = s.pg.requestLogs().length;
    // llhttp fails on the method: no method or target was parsed.
    const garbage = await rawExchange(s.pg.port, Buffer.from('FOO /v1/balance HTTP/1.1\r\nHost: x\r\n\r\n'));
    stripeShapedError(assert, garbage.responses[0], 400, 'payguard_bad_request');
    // Refused by payguard's own line scanner before llhttp saw a byte.
    const bareLf = await rawExchange(s.pg.port, Buffer.from('GET /v1/balance HTTP/1.1\nHost: x\n\n'));
    stripeShapedError(assert, bareLf.responses[0], 400, 'payguard_bad_request');
    // A good request, then a bad one on the same connection: the second
    // line must not reuse the first request's method and path.
    const pair = Buffer.concat([
        rawRequestBytes('POST /v1/payment_intents HTTP/1.1', ['Host: x', `Authorization: Bearer ${s.token.token}`,
                                                              'Content-Type: application/x-www-form-urlencoded',
                                                              `Idempotency-Key: it-${randomUUID()}`, 'Content-Length: 24'],
                        'amount=1000&currency=usd'),
        Buffer.from('\r\nGET /v1/balance HTTP/1.1\r\n\r\n'),
    ]);
    const ex = await rawExchange(s.pg.port, pair);
    assert.deepEqual(ex.responses.map((r) => r.status), [200, 400], ex.text);

    // payguard is still alive and serving (the log path must not crash it).
    assert.equal((await request(s.pg.port, { path: '/v1/balance', headers: s.auth })).status, 200);
    const logs = await waitFor(() => {
        const l = s.pg.requestLogs().slice(before);
        return l.length >= 5 ? l : null;
    }, 'five request log lines');
    const [g, lf, okPost, second] = logs;
    for (const l of [g, lf]) {
        assert.equal(l.status, 400);
        assert.ok(l.method === undefined || l.method === 'FOO' || l.method === 'GET',
                  `a method the agent never sent was logged: ${JSON.stringify(l)}`);
        assert.ok(l.path === undefined || l.path === '/v1/balance', `path: ${JSON.stringify(l)}`);
    }
    assert.equal(okPost.method, 'POST');
    assert.equal(second.status, 400);
    assert.notEqual(second.method, 'POST', `the previous request's method was logged again: ${JSON.stringify(second)}`);
    assert.notEqual(second.path, '/v1/payment_intents', `the previous request's path was logged again: ${JSON.stringify(second)}`);
});

test('payguard stops cleanly on SIGTERM; its log never held a token or the rail secret', async () => {
    // Give the last log lines a moment to be written, then stop.
    await sleep(50);
    const { code, signal } = await s.pg.stop();
    assert.equal(signal, null, s.pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${s.pg.tail(80)}`);
    const all = s.pg.lines.join('\n');
    assert.ok(!all.includes(s.token.token), 'the agent token appears in the log');
    assert.ok(!all.includes(s.token.token.slice(4)), 'part of the agent token appears in the log');
    assert.ok(!all.includes(s.mock.secret), 'the rail secret appears in the log');
    assert.ok(!all.includes(Buffer.from(`${s.token.token}:`).toString('base64')), 'the Basic form of the token appears');
    assert.ok(s.pg.events.some((e) => e.msg === 'stopped'), 'a "stopped" line');
    // Every line is JSON.
    for (const l of s.pg.lines) assert.doesNotThrow(() => JSON.parse(l), `not a JSON line: ${l}`);
});
