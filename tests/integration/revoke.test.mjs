// Revocation: `payguard agent revoke` against the live data_dir stops the
// agent at its very next request (no reload, no sleep: the next request is
// asserted), a verified token in the cache does not outlive it, reinstating
// lets it back, and both are audited.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, stripeShapedError,
} from './lib/harness.mjs';
import { request } from './lib/http.mjs';
import { cli, auditExport, verifyChain } from './lib/ledger.mjs';

let pg;
let mock;
let file;
const tok = {};
const test = testWithLogs(() => pg);

before(async () => {
    const dir = await makeTmp('revoke');
    for (const a of ['rogue', 'bystander']) tok[a] = await newToken(a);
    mock = await startMockrail();
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        agents: [
            { id: 'rogue', org: 'acme', token: tok.rogue.hash, rails: ['stripe'] },
            { id: 'bystander', org: 'acme', token: tok.bystander.hash, rails: ['stripe'] },
        ],
    });
    file = await writeConfig(dir, cfg);
    pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
});
after(async () => {
    pg?.kill();
    await mock?.stop();
});

const balance = (agent) => request(pg.port, {
    path: '/v1/balance', headers: { Authorization: `Bearer ${tok[agent].token}` },
});

test('revoke: the very next request is refused with the reason; the cached token does not outlive it; others are untouched', async () => {
    // The token is verified and cached by a first request.
    assert.equal((await balance('rogue')).status, 200);
    assert.equal((await balance('rogue')).status, 200);
    const r = await cli(['agent', 'revoke', 'rogue', '-c', file, '--reason', 'looping on refunds', '--as', 'ana']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /revoked/);
    const before = await mock.count();
    const next = await balance('rogue');
    stripeShapedError(assert, next, 401, 'payguard_agent_revoked');
    assert.match(next.json.error.message, /looping on refunds/);
    assert.equal(await mock.count(), before, 'the rail saw nothing');
    assert.equal((await balance('bystander')).status, 200, 'another agent keeps working');
});

test('reinstate: the next request passes again; reinstating an agent that is not revoked exits 1', async () => {
    const r = await cli(['agent', 'reinstate', 'rogue', '-c', file, '--as', 'ana']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await balance('rogue')).status, 200);
    const again = await cli(['agent', 'reinstate', 'rogue', '-c', file]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not revoked/);
});

test('unknown agents and bad usage: exit 2 with one line', async () => {
    const r = await cli(['agent', 'revoke', 'nobody', '-c', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no agent nobody/);
    const u = await cli(['agent', 'revoke', '-c', file]);
    assert.equal(u.code, 2);
    assert.equal(u.stderr.trim().split('\n').length, 1);
});

test('revocations are audited with the human who made them', async () => {
    const ex = await auditExport(file, { org: 'acme' });
    assert.equal(ex.code, 0, ex.stderr);
    const chain = verifyChain(ex.lines);
    assert.ok(chain.ok, chain.problems.join('\n'));
    const kinds = ex.entries.map((e) => `${e.action}:${e.actor}:${e.agent}`);
    assert.ok(kinds.includes('revoke:cli:ana:rogue'), kinds.join(' '));
    assert.ok(kinds.includes('reinstate:cli:ana:rogue'), kinds.join(' '));
});

test('rate: an agent over its policy rate gets 429 payguard_rate_limit with Retry-After, the rail sees nothing, and it recovers', async () => {
    const dir = await makeTmp('rate');
    const t = await newToken('hasty');
    const cfg = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        policies: { hasty: { rate: { requests: 2, per: '1s', burst: 2 } } },
        agents: [{ id: 'hasty', org: 'acme', token: t.hash, rails: ['stripe'], policy: 'hasty' }],
    });
    const f = await writeConfig(dir, cfg);
    const p = await startPayguard(f, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    try {
        const get = () => request(p.port, { path: '/v1/balance', headers: { Authorization: `Bearer ${t.token}` } });
        assert.equal((await get()).status, 200);
        assert.equal((await get()).status, 200);
        const before = await mock.count();
        const over = await get();
        stripeShapedError(assert, over, 429, 'payguard_rate_limit');
        assert.equal(over.json.error.type, 'rate_limit_error');
        const wait = Number(over.headers['retry-after']);
        assert.ok(wait >= 1 && wait <= 1, `Retry-After ${over.headers['retry-after']}`);
        assert.equal(await mock.count(), before, 'the rail saw nothing');
        await new Promise((r) => setTimeout(r, wait * 1000 + 100));
        assert.equal((await get()).status, 200, 'served again after Retry-After');
    } finally {
        const r = await p.stop();
        assert.equal(r.code, 0);
    }
});
