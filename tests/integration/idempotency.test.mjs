// Idempotency as the agent meets it (README, Idempotency): every money request
// carries exactly one well-formed Idempotency-Key or is refused before the
// rail; a retry of the same request is answered from the ledger byte for byte
// without touching the rail; the same key on another request is an
// idempotency_error; a retry while the first is in flight is a 409; and the
// rail only ever sees a key derived from the agent and its key.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import net from 'node:net';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, stripeShapedError, headerValues, sleep,
} from './lib/harness.mjs';
import { request, rawExchange, rawRequestBytes, responsesAtLeast, keepAliveAgent } from './lib/http.mjs';
import { derivedKey, pay, railPosts, FORM } from './lib/ledger.mjs';

let pg;
let mock;
const tok = {};
const test = testWithLogs(() => pg);

before(async () => {
    const dir = await makeTmp('idempotency');
    for (const a of ['shopper', 'other']) tok[a] = await newToken(a);
    mock = await startMockrail();
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        agents: [
            { id: 'shopper', org: 'acme', token: tok.shopper.hash, rails: ['stripe'] },
            { id: 'other', org: 'acme', token: tok.other.hash, rails: ['stripe'] },
        ],
    });
    pg = await startPayguard(await writeConfig(dir, cfg), { env: { MOCK_STRIPE_SECRET: mock.secret } });
    // Warm the token cache for both agents.
    for (const a of ['shopper', 'other']) {
        const r = await request(pg.port, { path: '/v1/balance', headers: { Authorization: `Bearer ${tok[a].token}` } });
        assert.equal(r.status, 200, r.body);
    }
});
after(async () => {
    pg?.kill();
    await mock?.stop();
});

const key = () => `it-${randomUUID()}`;
const shopperPay = (body, k, opts) => pay(pg.port, tok.shopper.token, body, k, opts);

/* Runs `fn`, which must be refused by payguard with status/code; the rail saw nothing. */
async function refused(fn, status, code) {
    const before = await mock.count();
    const res = await fn();
    stripeShapedError(assert, res, status, code);
    await sleep(20);
    assert.equal(await mock.count(), before, `the rail saw nothing (${code})`);
    return res;
}

/* Every route that moves money, with a body the route accepts. */
const MONEY_ROUTES = [
    ['/v1/payment_intents', 'amount=1000&currency=usd'],
    ['/v1/payment_intents/pi_123/confirm', ''],
    ['/v1/payment_intents/pi_123/capture', ''],
    ['/v1/payment_intents/pi_123/cancel', ''],
    ['/v1/refunds', 'charge=ch_123&amount=100'],
    ['/v1/transfers', 'amount=1000&currency=usd&destination=acct_1Shop'],
    ['/v1/payouts', 'amount=1000&currency=usd'],
];

test('a money request without Idempotency-Key: 400 payguard_missing_idempotency_key naming the header; the rail saw nothing', async () => {
    for (const [path, body] of MONEY_ROUTES) {
        const res = await refused(() => shopperPay(body, null, { path }), 400, 'payguard_missing_idempotency_key');
        assert.equal(res.json.error.type, 'invalid_request_error', path);
        assert.equal(res.json.error.param, 'Idempotency-Key', `${path}: ${res.body}`);
        assert.match(res.json.error.message, /Idempotency-Key/, 'the message tells the agent what to send');
    }
});

test('reads need no Idempotency-Key', async () => {
    const res = await request(pg.port, { path: '/v1/balance', headers: { Authorization: `Bearer ${tok.shopper.token}` } });
    assert.equal(res.status, 200, res.body);
});

/* A raw money request with the given Idempotency-Key header lines. */
function rawPay(idemLines, body = 'amount=1000&currency=usd') {
    return rawRequestBytes('POST /v1/payment_intents HTTP/1.1', [
        'Host: 127.0.0.1', `Authorization: Bearer ${tok.shopper.token}`, `Content-Type: ${FORM}`,
        ...idemLines, `Content-Length: ${body.length}`,
    ], body);
}

/* `codes`: the code expected, or a list of acceptable ones (a byte the HTTP
 * layer itself refuses may be answered payguard_bad_request first). */
async function rawRefused(bytes, status, codes) {
    const before = await mock.count();
    const ex = await rawExchange(pg.port, bytes, { until: responsesAtLeast(1) });
    assert.equal(ex.responses.length, 1, ex.text);
    const got = ex.responses[0].json?.error?.code;
    const code = [].concat(codes).includes(got) ? got : [].concat(codes)[0];
    stripeShapedError(assert, ex.responses[0], status, code);
    await sleep(20);
    assert.equal(await mock.count(), before, `the rail saw nothing: ${JSON.stringify(bytes.toString('latin1').split('\r\n').find((l) => /^idempotency-key/i.test(l)))}`);
    return ex.responses[0];
}

test('a malformed Idempotency-Key: 400 payguard_invalid_idempotency_key; the rail saw nothing', async () => {
    const INVALID = 'payguard_invalid_idempotency_key';
    const bad = [
        ['empty', 'Idempotency-Key: ', [INVALID]],
        ['256 characters', `Idempotency-Key: ${'k'.repeat(256)}`, [INVALID]],
        ['a tab inside', 'Idempotency-Key: abc\tdef', [INVALID, 'payguard_bad_request']],
        ['a control character', 'Idempotency-Key: abc\x01def', [INVALID, 'payguard_bad_request']],
        ['a DEL', 'Idempotency-Key: abc\x7fdef', [INVALID, 'payguard_bad_request']],
        ['a byte above 0x7f', 'Idempotency-Key: caf\xe9', [INVALID, 'payguard_bad_request']],
        ['UTF-8', `Idempotency-Key: ${Buffer.from('clé', 'utf8').toString('latin1')}`, [INVALID, 'payguard_bad_request']],
    ];
    for (const [what, line, codes] of bad) {
        const res = await rawRefused(rawPay([line]), 400, codes);
        if (res.json.error.code === INVALID) {
            assert.equal(res.json.error.param, 'Idempotency-Key', `${what}: ${res.body.toString()}`);
        }
    }
});

test('Idempotency-Key sent twice (same or different values): 400 payguard_invalid_idempotency_key; the rail saw nothing', async () => {
    const k = key();
    await rawRefused(rawPay([`Idempotency-Key: ${k}`, `Idempotency-Key: ${k}`]), 400, 'payguard_invalid_idempotency_key');
    await rawRefused(rawPay([`Idempotency-Key: ${k}`, `idempotency-key: ${key()}`]), 400, 'payguard_invalid_idempotency_key');
    // Neither attempt reserved the key: it still works on its own.
    const ok = await rawExchange(pg.port, rawPay([`Idempotency-Key: ${k}`]), { until: responsesAtLeast(1) });
    assert.equal(ok.responses[0]?.status, 200, ok.text);
});

test('keys of 1 and of 255 printable characters pass; the header name is case-insensitive', async () => {
    const n0 = (await mock.requests()).length;
    const long = `L${'~!#$%&*+-.^_|0123456789'.repeat(12)}`.slice(0, 255);
    assert.equal(long.length, 255);
    const one = '1'; // each test file has its own data_dir and mock rail
    for (const k of [long, one]) {
        const ex = await rawExchange(pg.port, rawPay([`Idempotency-Key: ${k}`], `amount=1001&currency=usd&description=k${k.length}`),
                                     { until: responsesAtLeast(1) });
        assert.equal(ex.responses[0]?.status, 200, ex.text);
    }
    const lower = key();
    const ex = await rawExchange(pg.port, rawPay([`idempotency-key: ${lower}`]), { until: responsesAtLeast(1) });
    assert.equal(ex.responses[0]?.status, 200, ex.text);
    const posts = await railPosts(mock, n0);
    assert.deepEqual(posts.map((r) => headerValues(r, 'Idempotency-Key')),
                     [[derivedKey('shopper', long)], [derivedKey('shopper', one)], [derivedKey('shopper', lower)]]);
});

/* Drops the lines a replay may legitimately change (Date) or add (Idempotent-Replayed). */
function comparable(buf) {
    const text = buf.toString('latin1');
    const i = text.indexOf('\r\n\r\n');
    const head = text.slice(0, i).split('\r\n').filter((l) => !/^(date|idempotent-replayed):/i.test(l));
    return `${head.join('\r\n')}\r\n\r\n${text.slice(i + 4)}`;
}

test('a retry of the same request is replayed byte for byte from the ledger; the rail saw one request, under the derived key', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const bytes = rawPay([`Idempotency-Key: ${k}`], 'amount=1234&currency=usd&description=replay');
    const first = await rawExchange(pg.port, bytes, { until: responsesAtLeast(1) });
    assert.equal(first.responses.length, 1, first.text);
    const a = first.responses[0];
    assert.equal(a.status, 200, first.text);
    assert.equal(a.header('idempotent-replayed'), undefined, 'the first answer is no replay');
    assert.match(a.header('request-id') ?? '', /^req_/, 'mockrail answers carry Request-Id');

    const again = await rawExchange(pg.port, bytes, { until: responsesAtLeast(1) });
    const b = again.responses[0];
    assert.ok(b, again.text);
    assert.equal(b.header('idempotent-replayed'), 'true', again.text);
    assert.equal(b.header('request-id'), a.header('request-id'), 'the replay carries the first answer\'s Request-Id');
    assert.equal(b.json.id, a.json.id);
    assert.equal(comparable(again.buf), comparable(first.buf), 'byte for byte apart from Date and Idempotent-Replayed');

    // A third time, over node:http on a keep-alive connection.
    const third = await shopperPay('amount=1234&currency=usd&description=replay', k);
    assert.equal(third.status, 200);
    assert.equal(third.headers['idempotent-replayed'], 'true');
    assert.equal(third.body, a.body.toString('utf8'));

    const posts = await railPosts(mock, n0);
    assert.equal(posts.length, 1, 'the rail saw exactly one request');
    const seen = headerValues(posts[0], 'Idempotency-Key');
    assert.deepEqual(seen, [derivedKey('shopper', k)], 'the rail saw the derived key');
    for (const r of await mock.requests()) {
        for (const [, v] of r.headers) assert.ok(!v.includes(k), 'the agent\'s own key reached the rail');
        assert.ok(!r.body.includes(k));
    }
});

test('a retry sent the moment the answer arrives is a replay: the settlement queued behind that answer comes first (20 rounds)', async () => {
    const n0 = (await mock.requests()).length;
    const kept = keepAliveAgent(1);
    for (let i = 0; i < 20; i++) {
        const k = key();
        const body = `amount=${100 + i}&currency=usd&description=settle-order`;
        const first = await shopperPay(body, k, { agent: kept });
        assert.equal(first.status, 200, first.body);
        assert.equal(first.headers['idempotent-replayed'], undefined);
        // Two retries at once: one on the same connection, one on a new one.
        const [again, fresh] = await Promise.all([
            shopperPay(body, k, { agent: kept }),
            shopperPay(body, k),
        ]);
        for (const r of [again, fresh]) {
            assert.equal(r.status, 200, `round ${i}: ${r.body}`);
            assert.equal(r.headers['idempotent-replayed'], 'true', `round ${i}: a replay, not a 409 or a second payment`);
            assert.equal(r.body, first.body, `round ${i}: the first answer, byte for byte`);
        }
    }
    kept.destroy();
    assert.equal((await railPosts(mock, n0)).length, 20, 'one rail call per key');
});

test('the answer names the agent\'s own key, never the derived one (the rail echoes the key it got)', async () => {
    const k = key();
    const first = await shopperPay('amount=1250&currency=usd', k);
    assert.equal(first.status, 200, first.body);
    const replay = await shopperPay('amount=1250&currency=usd', k);
    for (const [what, res] of [['first answer', first], ['replay', replay]]) {
        const echoed = res.headers['idempotency-key'];
        assert.ok(echoed === undefined || echoed === k,
                  `${what}: Idempotency-Key ${echoed}: an agent that retries with the key it was told would get a new rail key`);
        assert.ok(!JSON.stringify(res.headers).includes(derivedKey('shopper', k)), `${what}: the derived key reached the agent`);
    }
});

test('a chunked rail answer is stored and replayed byte for byte too', async () => {
    const k = key();
    const bytes = rawRequestBytes('POST /v1/payment_intents HTTP/1.1', [
        'Host: 127.0.0.1', `Authorization: Bearer ${tok.shopper.token}`, `Content-Type: ${FORM}`,
        `Idempotency-Key: ${k}`, 'X-Mock-Chunked: 1', 'Content-Length: 24',
    ], 'amount=1260&currency=usd');
    const first = await rawExchange(pg.port, bytes, { until: responsesAtLeast(1) });
    assert.equal(first.responses[0]?.status, 200, first.text);
    const again = await rawExchange(pg.port, bytes, { until: responsesAtLeast(1) });
    assert.equal(again.responses[0]?.header('idempotent-replayed'), 'true', again.text);
    assert.deepEqual(again.responses[0].json, first.responses[0].json);
    assert.equal(comparable(again.buf), comparable(first.buf), 'byte for byte apart from Date and Idempotent-Replayed');
});

test('an agent that hangs up while its payment is at the rail: its retry gets that payment, never a second one', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const body = 'amount=1270&currency=usd';
    const sock = net.connect(pg.port, '127.0.0.1');
    sock.on('error', () => {});
    await new Promise((r) => sock.on('connect', r));
    sock.write(rawRequestBytes('POST /v1/payment_intents HTTP/1.1', [
        'Host: 127.0.0.1', `Authorization: Bearer ${tok.shopper.token}`, `Content-Type: ${FORM}`,
        `Idempotency-Key: ${k}`, 'X-Mock-Delay-Ms: 400', `Content-Length: ${body.length}`,
    ], body));
    for (let i = 0; i < 200 && (await railPosts(mock, n0)).length === 0; i++) await sleep(10);
    sock.destroy();
    // Either payguard kept the rail's answer (a replay from the ledger) or it
    // left the key unresolved and re-sends under the same rail key (the rail
    // deduplicates): one payment intent either way.
    let res;
    for (let i = 0; i < 100; i++) {
        res = await shopperPay(body, k);
        if (res.status !== 409) break;
        await sleep(50);
    }
    assert.equal(res.status, 200, res.body);
    const posts = await railPosts(mock, n0);
    assert.ok(posts.length >= 1 && posts.length <= 2, `${posts.length} rail requests`);
    for (const r of posts) assert.deepEqual(headerValues(r, 'Idempotency-Key'), [derivedKey('shopper', k)]);
    // From now on the ledger answers.
    const again = await shopperPay(body, k);
    const flags = again.rawHeaders.filter((_, i) => i % 2 === 0 && /^idempotent-replayed$/i.test(again.rawHeaders[i]));
    assert.equal(flags.length, 1, `one Idempotent-Replayed header, got ${flags.length}: ${JSON.stringify(again.rawHeaders)}`);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.json.id, res.json.id, 'one payment intent');
    assert.equal((await railPosts(mock, n0)).length, posts.length, 'the replay did not reach the rail');
});

test('the same key on another request: 400 idempotency_error payguard_idempotency_mismatch; the rail saw nothing', async () => {
    const k = key();
    const ok = await shopperPay('amount=1500&currency=usd', k);
    assert.equal(ok.status, 200, ok.body);
    for (const [what, body, path] of [
        ['another amount', 'amount=1501&currency=usd', '/v1/payment_intents'],
        ['one more field', 'amount=1500&currency=usd&description=x', '/v1/payment_intents'],
        ['another path', 'amount=1500&currency=usd', '/v1/payouts'],
    ]) {
        const res = await refused(() => shopperPay(body, k, { path }), 400, 'payguard_idempotency_mismatch');
        assert.equal(res.json.error.type, 'idempotency_error', `${what}: ${res.body}`);
    }
    // The original still replays.
    const again = await shopperPay('amount=1500&currency=usd', k);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.json.id, ok.json.id);
});

test('the same key while the first request is still at the rail: 409 payguard_idempotency_key_in_use, retryable; then a replay', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const body = 'amount=1600&currency=usd';
    const slow = shopperPay(body, k, { headers: { 'X-Mock-Delay-Ms': '1500' } });
    // Wait until the first one is at the rail.
    for (let i = 0; i < 200 && (await railPosts(mock, n0)).length === 0; i++) await sleep(10);
    assert.equal((await railPosts(mock, n0)).length, 1, 'the first request reached the rail');
    const busy = await shopperPay(body, k);
    stripeShapedError(assert, busy, 409, 'payguard_idempotency_key_in_use');
    assert.equal(busy.headers['stripe-should-retry'], 'true');
    const first = await slow;
    assert.equal(first.status, 200, first.body);
    const replay = await shopperPay(body, k);
    assert.equal(replay.status, 200);
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.equal(replay.body, first.body);
    assert.equal((await railPosts(mock, n0)).length, 1, 'the rail saw one request in all');
});

test('50 parallel requests with one key: one reaches the rail, the others get 409 or a replay of that one answer', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const body = 'amount=1700&currency=usd';
    const all = await Promise.all(Array.from({ length: 50 }, () => shopperPay(body, k)));
    const posts = await railPosts(mock, n0);
    assert.equal(posts.length, 1, `exactly one rail call, got ${posts.length}`);
    const originals = all.filter((r) => r.status === 200 && r.headers['idempotent-replayed'] === undefined);
    assert.equal(originals.length, 1, `one original answer: ${JSON.stringify(all.map((r) => r.status))}`);
    for (const r of all) {
        if (r.status === 409) {
            assert.equal(r.json?.error?.code, 'payguard_idempotency_key_in_use', r.body);
        } else {
            assert.equal(r.status, 200, r.body);
            assert.equal(r.body, originals[0].body, 'a replay of the one answer');
        }
    }
});

test('keys are per agent: two agents with the same key and body each reach the rail, under different derived keys', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const body = 'amount=1800&currency=usd';
    const a = await shopperPay(body, k);
    const b = await pay(pg.port, tok.other.token, body, k);
    assert.equal(a.status, 200, a.body);
    assert.equal(b.status, 200, b.body);
    assert.equal(b.headers['idempotent-replayed'], undefined);
    assert.notEqual(a.json.id, b.json.id, 'two payment intents');
    const posts = await railPosts(mock, n0);
    assert.deepEqual(posts.map((r) => headerValues(r, 'Idempotency-Key')),
                     [[derivedKey('shopper', k)], [derivedKey('other', k)]]);
});

test('keys on non-money writes are per agent too: another agent reusing a key never gets the first agent\'s object', async () => {
    const n0 = (await mock.requests()).length;
    const k = key();
    const body = 'email=alice%40a.example&name=Alice';
    const a = await shopperPay(body, k, { path: '/v1/customers' });
    assert.equal(a.status, 200, a.body);
    const b = await pay(pg.port, tok.other.token, body, k, { path: '/v1/customers' });
    assert.equal(b.status, 200, b.body);
    assert.notEqual(b.json.id, a.json.id, `agent "other" got agent "shopper"'s customer ${a.json.id} replayed by the rail`);
    const c = await pay(pg.port, tok.other.token, 'email=bob%40b.example', key(), { path: '/v1/customers' });
    assert.equal(c.status, 200, c.body);
    const posts = await railPosts(mock, n0);
    const keys = posts.map((r) => headerValues(r, 'Idempotency-Key')[0]);
    assert.notEqual(keys[0], keys[1], 'two agents\' keys never collide at the rail (DESIGN §6)');
    assert.ok(!keys.includes(k), `the agent's own key reached the rail: ${keys}`);
});

test('the rail\'s declines and errors are stored too: a retry replays the 402 or the 500 without calling the rail', async () => {
    for (const [amount, status] of [[402402, 402], [500500, 500]]) {
        const n0 = (await mock.requests()).length;
        const k = key();
        const body = `amount=${amount}&currency=usd`;
        const first = await shopperPay(body, k);
        assert.equal(first.status, status, first.body);
        assert.equal(first.headers['payguard-decision'], undefined, 'the rail\'s answer, not payguard\'s');
        const again = await shopperPay(body, k);
        assert.equal(again.status, status, again.body);
        assert.equal(again.headers['idempotent-replayed'], 'true');
        assert.equal(again.body, first.body);
        assert.equal(again.headers['request-id'], first.headers['request-id']);
        assert.equal((await railPosts(mock, n0)).length, 1, `the rail saw one request (${amount})`);
    }
});

test('payguard\'s own validation errors are not stored: the key can then be used for a valid request', async () => {
    const k = key();
    await refused(() => shopperPay('amount=12.5&currency=usd', k), 400, 'payguard_invalid_amount');
    const ok = await shopperPay('amount=1900&currency=usd', k);
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.headers['idempotent-replayed'], undefined);
});

test('payguard stops cleanly on SIGTERM', async () => {
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
});
