// Guards on the request path: raw card numbers anywhere in a request are
// refused before anything is recorded or forwarded (and never reach the logs
// or the audit log); URLs a rail would call back (webhook endpoints) must be
// public https addresses. Every refusal: 403, the rail saw nothing.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import Stripe from 'stripe';

import { startStack, testWithLogs, stripeShapedError } from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import { auditExport } from './lib/ledger.mjs';

let s;
const test = testWithLogs(() => s?.pg);

before(async () => { s = await startStack('guards'); });
after(async () => {
    const r = await s?.close();
    assert.equal(r?.code, 0, `payguard exit ${r?.code}`);
});

const FORM = 'application/x-www-form-urlencoded';
const post = (path, body, extra = {}) => request(s.pg.port, {
    method: 'POST', path, body,
    headers: { ...s.auth, 'Content-Type': FORM, 'Idempotency-Key': `it-${randomUUID()}`, ...extra },
});

const CARDS = [
    '4242424242424242', '4242 4242 4242 4242', '4242-4242-4242-4242', '5555555555554444',
    '378282246310005', '3782 822463 10005', '6011111111111117', '6205500000000000004',
];

test('a raw card number in the body, plain or grouped: 403 payguard_raw_card_data, nothing recorded or forwarded', async () => {
    for (const card of CARDS) {
        const before = await s.mock.count();
        const body = new URLSearchParams({ amount: '1000', currency: 'usd', 'payment_method_data[card][number]': card }).toString();
        const res = await post('/v1/payment_intents', body);
        stripeShapedError(assert, res, 403, 'payguard_raw_card_data');
        assert.match(res.json.error.message, /payment method token/);
        assert.equal(await s.mock.count(), before, `the rail saw nothing (${card})`);
    }
});

test('in the query string, a JSON body or a header: refused too', async () => {
    const before = await s.mock.count();
    stripeShapedError(assert, await request(s.pg.port, { path: '/v1/customers?card=4000056655665556', headers: s.auth }), 403, 'payguard_raw_card_data');
    stripeShapedError(assert, await post('/v1/customers', 'description=card%204242%204242%204242%204242'), 403, 'payguard_raw_card_data');
    stripeShapedError(assert, await post('/v1/customers', 'email=a%40b.test', { 'X-Note': '5555 5555 5555 4444' }), 403, 'payguard_raw_card_data');
    assert.equal(await s.mock.count(), before, 'the rail saw nothing');
});

test('look-alikes pass: a Luhn-invalid number, ids and timestamps', async () => {
    const ok = await post('/v1/customers', new URLSearchParams({
        description: 'order 4242424242424241 at 1795431600000', metadata: 'pi_3MtwBwLkdIwHu7ix0snN0B15',
    }).toString());
    assert.equal(ok.status, 200, ok.body);
});

test('card numbers never reach the request log or the audit log', async () => {
    await request(s.pg.port, { path: '/v1/customers/4242424242424242', headers: s.auth });
    await s.pg.waitEvent((e) => e.msg === undefined && e.status === 403 && /customers/.test(e.path ?? ''), 'the log line');
    const all = s.pg.lines.join('\n');
    for (const card of ['4242424242424242', '4242 4242 4242 4242', '5555555555554444']) {
        assert.ok(!all.includes(card), `${card} in payguard's log`);
    }
    const ex = await auditExport(s.file, { org: 'acme' });
    assert.equal(ex.code, 0, ex.stderr);
    const denials = ex.entries.filter((e) => e?.reason === 'raw_card_data');
    assert.ok(denials.length >= 1, 'the refusals are audited');
    const text = ex.stdout.replace(/"(prev_hash|hash|fingerprint)":"[0-9a-f]{64}"/g, '');
    assert.ok(!text.match(/\d{13,19}/), `no 13-19 digit run in the audit export: ${text.match(/.{40}\d{13,19}/)}`);
});

const UNSAFE = [
    ['http://8.8.8.8/hook', /https/],
    ['https://127.0.0.1/hook', /127\.0\.0\.1|loopback|private|reserved/i],
    ['https://10.1.2.3/hook', /10\.1\.2\.3|private/i],
    ['https://169.254.169.254/latest/meta-data', /169\.254/],
    ['https://localhost/hook', /localhost|local/i],
    ['https://metadata.internal/hook', /internal|local/i],
    ['https://2130706433/hook', /./],
    ['https://0x7f000001/hook', /./],
    ['https://127.1/hook', /./],
    ['https://[::1]/hook', /./],
    ['https://[::ffff:10.0.0.1]/hook', /./],
    ['https://good.example@127.0.0.1/hook', /userinfo/i],
    ['https://8.8.8.8:8443/hook', /port/i],
    ['https://hooks.example.invalid/x', /resolve/i],
];

test('webhook endpoints: every unsafe URL is refused with 403 payguard_unsafe_url naming the field; the rail saw nothing', async () => {
    for (const [url, why] of UNSAFE) {
        const before = await s.mock.count();
        const res = await post('/v1/webhook_endpoints', new URLSearchParams({ url, 'enabled_events[]': 'charge.succeeded' }).toString());
        stripeShapedError(assert, res, 403, 'payguard_unsafe_url');
        assert.equal(res.json.error.param, 'url', url);
        assert.match(res.json.error.message, why, url);
        assert.equal(await s.mock.count(), before, `the rail saw nothing for ${url}`);
    }
});

test('a public https literal passes and reaches the rail', async () => {
    const before = await s.mock.count();
    const res = await post('/v1/webhook_endpoints', new URLSearchParams({ url: 'https://8.8.8.8/hook', 'enabled_events[]': 'charge.succeeded' }).toString());
    assert.equal(res.status, 200, res.body);
    assert.equal(await s.mock.count(), before + 1);
});

test('through the official SDK: webhookEndpoints.create with an internal URL raises StripePermissionError; the rail saw nothing', async () => {
    const stripe = new Stripe(s.token.token, { host: '127.0.0.1', port: s.pg.port, protocol: 'http', maxNetworkRetries: 0 });
    const before = await s.mock.count();
    await assert.rejects(
        stripe.webhookEndpoints.create({ url: 'https://192.168.1.10/hooks', enabled_events: ['charge.succeeded'] }),
        (err) => {
            assert.equal(err.type, 'StripePermissionError');
            assert.equal(err.code, 'payguard_unsafe_url');
            return true;
        });
    assert.equal(await s.mock.count(), before);
});

test('url_guard in payguard.yaml: extra ports, deny blocks, and the allow escape hatch (logged loudly); a bad CIDR is a config error', async () => {
    const { makeTmp, configObject, writeConfig, httpRail, startPayguard, payguardCheck } = await import('./lib/harness.mjs');
    const dir = await makeTmp('guards-url-config');
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(s.mock.url) },
        agents: [{ id: 'shopper', org: 'acme', token: s.token.hash, rails: ['stripe'] }],
    });
    cfg.url_guard = { ports: [443, 8443], deny: ['8.8.8.0/24'], allow: ['127.0.0.0/8'] };
    const file = await writeConfig(dir, cfg);
    const pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: s.mock.secret } });
    try {
        assert.ok(pg.events.some((e) => e.level === 'warn' && /url_guard\.allow/.test(e.msg)), 'the escape hatch is logged');
        const hook = (url) => request(pg.port, {
            method: 'POST', path: '/v1/webhook_endpoints',
            body: new URLSearchParams({ url, 'enabled_events[]': 'charge.succeeded' }).toString(),
            headers: { ...s.auth, 'Content-Type': FORM },
        });
        assert.equal((await hook('https://127.0.0.1:8443/hook')).status, 200, 'allowed block and port');
        stripeShapedError(assert, await hook('https://8.8.8.8/hook'), 403, 'payguard_unsafe_url');
        stripeShapedError(assert, await hook('https://10.0.0.1/hook'), 403, 'payguard_unsafe_url');
        stripeShapedError(assert, await hook('https://1.1.1.1:9443/hook'), 403, 'payguard_unsafe_url');
    } finally {
        const r = await pg.stop();
        assert.equal(r.code, 0);
    }
    cfg.url_guard = { deny: ['10.0.0.1/8'] };
    const bad = await writeConfig(dir, cfg, 'bad.yaml');
    const r = await payguardCheck(bad, ['--no-env']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.yaml:\d+:\d+: url_guard\.deny/);
});

test('names are resolved and every address checked: a name resolving to a private address, or to one public and one private, is refused; a public one passes', async () => {
    const { makeTmp, configObject, writeConfig, httpRail, startPayguard } = await import('./lib/harness.mjs');
    const fsp = await import('node:fs/promises');
    const pathm = await import('node:path');
    const dir = await makeTmp('guards-resolver');
    const hosts = pathm.join(dir, 'hosts');
    await fsp.writeFile(hosts, [
        '127.0.0.1 localhost',
        '10.0.0.5 evil.example',
        '8.8.8.8 mixed.example',
        '10.0.0.6 mixed.example',
        '8.8.4.4 public.example',
        '',
    ].join('\n'));
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(s.mock.url) },
        agents: [{ id: 'shopper', org: 'acme', token: s.token.hash, rails: ['stripe'] }],
    });
    const pg = await startPayguard(await writeConfig(dir, cfg), { env: { MOCK_STRIPE_SECRET: s.mock.secret }, hostsFile: hosts });
    try {
        const hook = (url) => request(pg.port, {
            method: 'POST', path: '/v1/webhook_endpoints',
            body: new URLSearchParams({ url, 'enabled_events[]': 'charge.succeeded' }).toString(),
            headers: { ...s.auth, 'Content-Type': FORM },
        });
        const before = await s.mock.count();
        const evil = await hook('https://evil.example/hook');
        stripeShapedError(assert, evil, 403, 'payguard_unsafe_url');
        assert.match(evil.json.error.message, /10\.0\.0\.5/);
        const mixed = await hook('https://mixed.example/hook');
        stripeShapedError(assert, mixed, 403, 'payguard_unsafe_url');
        assert.match(mixed.json.error.message, /10\.0\.0\.6/);
        assert.equal(await s.mock.count(), before, 'the rail saw nothing');
        const ok = await hook('https://public.example/hook');
        assert.equal(ok.status, 200, ok.body);
    } finally {
        const r = await pg.stop();
        assert.equal(r.code, 0);
    }
});
