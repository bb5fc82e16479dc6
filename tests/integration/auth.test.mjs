// Agent authentication at the proxy: missing, wrong, malformed, revoked and
// expired tokens, a rail secret used as a token, Basic auth as Stripe's
// clients send it, rail selection with Payguard-Rail, and the per-address
// auth-failure limit (429 with Retry-After). Each refusal asserts that the
// rail saw nothing. Each test talks from its own 127.0.0.x address, because
// the failure limit counts per client address.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, headerValues, stripeShapedError,
} from './lib/harness.mjs';
import { request } from './lib/http.mjs';

const AUTH_FAILURES = 5;

let pg;
let mock;
let alt;
const tok = {};
const test = testWithLogs(() => pg);

before(async () => {
    const dir = await makeTmp('auth');
    for (const a of ['shopper', 'revoked', 'expired', 'future', 'stranger']) tok[a] = await newToken(a);
    mock = await startMockrail();
    alt = await startMockrail({ secret: mock.secret });
    const cfg = configObject(dir, {
        limits: { auth_failures: AUTH_FAILURES },
        rails: {
            stripe: httpRail(mock.url),
            alt: httpRail(alt.url),
            forbidden: httpRail(alt.url),
        },
        agents: [
            { id: 'shopper', org: 'acme', token: tok.shopper.hash, rails: ['stripe', 'alt'] },
            { id: 'revoked', org: 'acme', token: tok.revoked.hash, rails: ['stripe'], revoked: true },
            { id: 'expired', org: 'acme', token: tok.expired.hash, rails: ['stripe'], expires: '2020-01-01T00:00:00Z' },
            { id: 'future', org: 'acme', token: tok.future.hash, rails: ['stripe'], expires: '2099-01-01T00:00:00Z' },
        ],
    });
    const file = await writeConfig(dir, cfg);
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
});
after(async () => {
    pg?.kill();
    await mock?.stop();
    await alt?.stop();
});

let nextAddr = 10;
/* A fresh loopback source address, so one test's failures never count against another. */
const freshAddr = () => `127.0.0.${nextAddr++}`;

/* Expects `status`/`code` for a GET /v1/balance with `headers`, and that
 * neither rail saw anything. */
async function deniedGet(headers, status, code, localAddress = freshAddr()) {
    const before = [await mock.count(), await alt.count()];
    const res = await request(pg.port, { path: '/v1/balance', headers, localAddress });
    stripeShapedError(assert, res, status, code);
    assert.deepEqual([await mock.count(), await alt.count()], before, 'the rail saw nothing');
    return res;
}

const bearer = (t) => ({ Authorization: `Bearer ${t}` });
const basic = (user, pass = '') => ({ Authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` });

test('no Authorization header: 401 payguard_missing_token', async () => {
    const res = await deniedGet({}, 401, 'payguard_missing_token');
    assert.equal(res.json.error.type, 'authentication_error');
    assert.match(res.json.error.message, /Bearer/);
});

test('a well-formed but unknown pgt_ token: 401 payguard_invalid_token', async () => {
    const res = await deniedGet(bearer(tok.stranger.token), 401, 'payguard_invalid_token');
    assert.equal(res.json.error.type, 'authentication_error');
});

test('a valid token with one character changed: 401', async () => {
    const t = tok.shopper.token;
    const flipped = t.slice(0, -1) + (t.at(-1) === 'A' ? 'B' : 'A');
    await deniedGet(bearer(flipped), 401, 'payguard_invalid_token');
});

test('malformed credentials: 401 payguard_invalid_token', async () => {
    await deniedGet(bearer('pgt_short'), 401, 'payguard_invalid_token');
    await deniedGet({ Authorization: 'Bearer' }, 401, 'payguard_invalid_token');
    await deniedGet({ Authorization: 'Token abc' }, 401, 'payguard_invalid_token');
    await deniedGet({ Authorization: 'Basic !!!not-base64!!!' }, 401, 'payguard_invalid_token');
});

test('the rail\'s own secret key used as the token: 401, and the message says why', async () => {
    const res = await deniedGet(bearer(mock.secret), 401, 'payguard_invalid_token');
    assert.match(res.json.error.message, /rail secret key/i);
    await deniedGet(basic(mock.secret), 401, 'payguard_invalid_token');
    await deniedGet(bearer('rk_test_restrictedkey1234567890'), 401, 'payguard_invalid_token');
});

test('Basic auth with the token as user name (curl -u TOKEN:) works; the rail gets its own secret', async () => {
    const n0 = (await mock.requests()).length;
    const res = await request(pg.port, { path: '/v1/balance', headers: basic(tok.shopper.token), localAddress: freshAddr() });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.object, 'balance');
    const reqs = (await mock.requests()).slice(n0);
    assert.equal(reqs.length, 1);
    assert.deepEqual(headerValues(reqs[0], 'Authorization'), [`Bearer ${mock.secret}`]);
});

test('Bearer token works, repeatedly (cached verification gives the same answer)', async () => {
    for (let i = 0; i < 3; i++) {
        const res = await request(pg.port, { path: '/v1/balance', headers: bearer(tok.shopper.token) });
        assert.equal(res.status, 200, res.body);
    }
});

test('a revoked agent: 401 payguard_agent_revoked', async () => {
    await deniedGet(bearer(tok.revoked.token), 401, 'payguard_agent_revoked');
});

test('an expired agent token: 401 payguard_token_expired; one expiring in the future works', async () => {
    await deniedGet(bearer(tok.expired.token), 401, 'payguard_token_expired');
    const res = await request(pg.port, { path: '/v1/balance', headers: bearer(tok.future.token), localAddress: freshAddr() });
    assert.equal(res.status, 200, res.body);
});

test('Payguard-Rail picks another of the agent\'s rails', async () => {
    const [m0, a0] = [await mock.count(), await alt.count()];
    const res = await request(pg.port, { path: '/v1/balance', headers: { ...bearer(tok.shopper.token), 'Payguard-Rail': 'alt' } });
    assert.equal(res.status, 200, res.body);
    assert.deepEqual([await mock.count(), await alt.count()], [m0, a0 + 1], 'the request went to the alt rail only');
});

test('Payguard-Rail naming a rail the agent may not use, or no rail at all: 403 payguard_rail_not_allowed', async () => {
    await deniedGet({ ...bearer(tok.shopper.token), 'Payguard-Rail': 'forbidden' }, 403, 'payguard_rail_not_allowed');
    await deniedGet({ ...bearer(tok.shopper.token), 'Payguard-Rail': 'nosuchrail' }, 403, 'payguard_rail_not_allowed');
});

test(`after ${AUTH_FAILURES} failures from one address: 429 with Retry-After, even for a valid token; other addresses unaffected`, async () => {
    const addr = freshAddr();
    const before = [await mock.count(), await alt.count()];
    for (let i = 0; i < AUTH_FAILURES; i++) {
        const res = await request(pg.port, { path: '/v1/balance', headers: bearer(tok.stranger.token), localAddress: addr });
        assert.equal(res.status, 401, `failure ${i + 1}: ${res.body}`);
    }
    const limited = await request(pg.port, { path: '/v1/balance', headers: bearer(tok.stranger.token), localAddress: addr });
    stripeShapedError(assert, limited, 429, 'payguard_rate_limited');
    assert.equal(limited.json.error.type, 'rate_limit_error');
    const retryAfter = Number(limited.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After: ${limited.headers['retry-after']}`);

    // The limit is per address: the right token from the same address waits too...
    const validButLimited = await request(pg.port, { path: '/v1/balance', headers: bearer(tok.shopper.token), localAddress: addr });
    assert.equal(validButLimited.status, 429);
    assert.deepEqual([await mock.count(), await alt.count()], before, 'the rail saw nothing');
    // ...while another address is served.
    const other = await request(pg.port, { path: '/v1/balance', headers: bearer(tok.shopper.token), localAddress: freshAddr() });
    assert.equal(other.status, 200, other.body);
});

test('an agent that hangs up while its token is being checked leaves payguard healthy', async () => {
    const before = [await mock.count(), await alt.count()];
    const { default: net } = await import('node:net');
    for (let i = 0; i < 3; i++) {
        const sock = net.connect({ port: pg.port, host: '127.0.0.1', localAddress: freshAddr() });
        sock.on('error', () => {});
        await new Promise((r) => sock.on('connect', r));
        // An unknown token costs a bcrypt check per agent: the close lands mid-check.
        sock.end(`GET /v1/balance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok.stranger.token}\r\n\r\n`);
        await new Promise((r) => setTimeout(r, 20));
        sock.destroy();
    }
    // A check started after theirs ends after theirs: a barrier, not a sleep.
    const probe = await request(pg.port, { path: '/v1/balance', headers: bearer(tok.stranger.token), localAddress: freshAddr() });
    assert.equal(probe.status, 401);
    await new Promise((r) => setTimeout(r, 100));
    const res = await request(pg.port, { path: '/v1/balance', headers: bearer(tok.shopper.token), localAddress: freshAddr() });
    assert.equal(res.status, 200, res.body);
    assert.deepEqual([await mock.count() - 1, await alt.count()], before, 'only the last request reached the rail');
});

test('payguard stops cleanly on SIGTERM; no token or secret in its log', async () => {
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
    const all = pg.lines.join('\n');
    for (const [name, t] of Object.entries(tok)) assert.ok(!all.includes(t.token), `token of ${name} in the log`);
    assert.ok(!all.includes(mock.secret), 'rail secret in the log');
});
