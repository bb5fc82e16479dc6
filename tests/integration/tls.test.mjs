// TLS to the rail: a rail with a certificate from the configured CA works
// (by host name and by IP literal) and its connections are reused; a rail
// whose certificate names another host, or is signed by a CA payguard was not
// told to trust, gets a 502 payguard_rail_tls_error and never sees a request.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import {
    makeTmp, makeTls, newToken, startMockrail, startPayguard, configObject, writeConfig,
    testWithLogs, headerValue, headerValues, stripeShapedError,
} from './lib/harness.mjs';
import { request, keepAliveAgent } from './lib/http.mjs';

let pg;
let good;
let wrong;
let token;
const test = testWithLogs(() => pg);

before(async () => {
    const dir = await makeTmp('tls');
    const tls = await makeTls(dir);
    token = await newToken('shopper');
    good = await startMockrail({ tls: { cert: tls.cert, key: tls.key, ca: tls.ca } });
    // Same CA, but the certificate is for wrong.example only.
    wrong = await startMockrail({ secret: good.secret, tls: { cert: tls.wrongCert, key: tls.wrongKey, ca: tls.ca } });
    const rail = (upstream, extra = {}) => ({
        preset: 'stripe', upstream, secret: 'env:MOCK_STRIPE_SECRET', ca_file: tls.ca,
        timeout_ms: 5000, connect_timeout_ms: 2000, ...extra,
    });
    const cfg = configObject(dir, {
        rails: {
            stripe: rail(`https://localhost:${good.port}`),
            byip: rail(`https://127.0.0.1:${good.port}`),
            tls13: rail(`https://localhost:${good.port}`, { tls_min: '1.3' }),
            wronghost: rail(`https://localhost:${wrong.port}`),
            untrusted: rail(`https://localhost:${good.port}`, { ca_file: tls.otherCa }),
        },
        agents: [{ id: 'shopper', org: 'acme', token: token.hash,
                   rails: ['stripe', 'byip', 'tls13', 'wronghost', 'untrusted'] }],
    });
    const file = await writeConfig(dir, cfg);
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: good.secret } });
});
after(async () => {
    pg?.kill();
    await good?.stop();
    await wrong?.stop();
});

const auth = () => ({ Authorization: `Bearer ${token.token}` });

test('a rail over TLS with the test CA: GET and POST pass, the secret travels encrypted', async () => {
    const n0 = (await good.requests()).length;
    const bal = await request(pg.port, { path: '/v1/balance', headers: auth() });
    assert.equal(bal.status, 200, bal.body);
    assert.equal(bal.json.object, 'balance');
    const pi = await request(pg.port, {
        method: 'POST', path: '/v1/payment_intents', body: 'amount=1000&currency=usd',
        headers: { ...auth(), 'Content-Type': 'application/x-www-form-urlencoded', 'Idempotency-Key': `it-${randomUUID()}` },
    });
    assert.equal(pi.status, 200, pi.body);
    assert.equal(pi.json.amount, 1000);
    const reqs = (await good.requests()).slice(n0);
    assert.equal(reqs.length, 2);
    for (const r of reqs) {
        assert.deepEqual(headerValues(r, 'Authorization'), [`Bearer ${good.secret}`]);
        assert.equal(headerValue(r, 'Host'), `localhost:${good.port}`);
    }
});

test('TLS rail connections are kept alive and reused', async () => {
    const agent = keepAliveAgent(1);
    try {
        assert.equal((await request(pg.port, { path: '/v1/balance', headers: auth(), agent })).status, 200);
        const before = await good.stats();
        for (let i = 0; i < 10; i++) {
            const res = await request(pg.port, { path: '/v1/balance', headers: auth(), agent });
            assert.equal(res.status, 200, res.body);
        }
        const after = await good.stats();
        assert.equal(after.requests - before.requests, 10);
        assert.ok(after.connections - before.connections <= 2,
                  `${after.connections - before.connections} new TLS connections for 10 sequential requests`);
    } finally {
        agent.destroy();
    }
});

test('an IP-literal upstream is verified against the certificate\'s IP address', async () => {
    const res = await request(pg.port, { path: '/v1/balance', headers: { ...auth(), 'Payguard-Rail': 'byip' } });
    assert.equal(res.status, 200, res.body);
    const last = (await good.requests()).at(-1);
    assert.equal(headerValue(last, 'Host'), `127.0.0.1:${good.port}`);
});

test('tls_min "1.3" still connects to a rail that speaks TLS 1.3', async () => {
    const res = await request(pg.port, { path: '/v1/balance', headers: { ...auth(), 'Payguard-Rail': 'tls13' } });
    assert.equal(res.status, 200, res.body);
});

test('a rail certificate for another host name: 502 payguard_rail_tls_error, rail saw nothing', async () => {
    const before = await wrong.stats();
    const res = await request(pg.port, {
        method: 'POST', path: '/v1/payment_intents', body: 'amount=1000&currency=usd',
        headers: { ...auth(), 'Payguard-Rail': 'wronghost', 'Content-Type': 'application/x-www-form-urlencoded',
                   'Idempotency-Key': `it-${randomUUID()}` },
    });
    stripeShapedError(assert, res, 502, 'payguard_rail_tls_error');
    assert.equal(res.json.error.type, 'api_error');
    assert.match(res.json.error.message, /hostname mismatch/i);
    assert.match(res.json.error.message, /localhost/);
    const after = await wrong.stats();
    assert.equal(after.requests, before.requests, 'the wrong-host rail saw no request');
    // And it keeps refusing: no half-trusted connection left in a pool.
    const again = await request(pg.port, { path: '/v1/balance', headers: { ...auth(), 'Payguard-Rail': 'wronghost' } });
    stripeShapedError(assert, again, 502, 'payguard_rail_tls_error');
    assert.equal((await wrong.stats()).requests, before.requests);
});

test('a rail certificate from a CA payguard does not trust: 502 payguard_rail_tls_error, rail saw nothing', async () => {
    const before = await good.count();
    const res = await request(pg.port, { path: '/v1/balance', headers: { ...auth(), 'Payguard-Rail': 'untrusted' } });
    stripeShapedError(assert, res, 502, 'payguard_rail_tls_error');
    assert.match(res.json.error.message, /certificate|issuer/i);
    assert.equal(await good.count(), before, 'the rail saw no request over the untrusted connection');
});

test('the good rail still works after the failed handshakes', async () => {
    const res = await request(pg.port, { path: '/v1/balance', headers: auth() });
    assert.equal(res.status, 200, res.body);
});

test('payguard stops cleanly on SIGTERM', async () => {
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
    const all = pg.lines.join('\n');
    assert.ok(!all.includes(token.token) && !all.includes(good.secret), 'no token or secret in the log');
});
