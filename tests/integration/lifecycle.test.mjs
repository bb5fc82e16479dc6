// The process lifecycle: SIGHUP reloads (a broken file keeps the old config
// serving and says where it is broken; a valid one takes effect, including
// removing an agent whose token sits in the verified-token cache), and SIGTERM
// drains (in-flight requests finish, listeners close, idle connections are
// dropped, exit 0; past drain_timeout_ms the stragglers are cut).
import { test as nodeTest, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail, toYaml,
    testWithLogs, stripeShapedError, waitFor, within, closedPort,
} from './lib/harness.mjs';
import { request, keepAliveAgent, rawRequestBytes } from './lib/http.mjs';

let current; // the payguard whose log is shown on failure
const test = testWithLogs(() => current);
const started = [];
after(async () => {
    for (const x of started) await x.stop().catch(() => {});
});

const bearer = (t) => ({ Authorization: `Bearer ${t}` });

/* Resolves true when a TCP connect to `port` is refused. */
function connectRefused(port) {
    return new Promise((resolve) => {
        const sock = net.connect(port, '127.0.0.1');
        sock.on('connect', () => { sock.destroy(); resolve(false); });
        sock.on('error', (e) => resolve(e.code === 'ECONNREFUSED'));
    });
}

test('SIGHUP: a broken file keeps the old config; valid changes take effect', async () => {
    const dir = await makeTmp('reload');
    const shopper = await newToken('shopper');
    const buyer = await newToken('buyer');
    const mock = await startMockrail();
    started.push(mock);
    const base = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        agents: [{ id: 'shopper', org: 'acme', token: shopper.hash, rails: ['stripe'] }],
    });
    const file = await writeConfig(dir, base);
    const pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    current = pg;
    started.push(pg);
    const ka = keepAliveAgent(1);

    const get = (t, agent = false) => request(pg.port, { path: '/v1/balance', headers: bearer(t), agent });
    assert.equal((await get(shopper.token, ka)).status, 200);
    assert.equal((await get(buyer.token)).status, 401, 'buyer is not configured yet');

    // 1. A broken file: an unknown key on line 3.
    const broken = toYaml(base).replace('listen:\n', 'listen:\n  agentz: 127.0.0.1:0\n');
    await fs.writeFile(file, broken);
    let mark = pg.events.length;
    pg.signal('SIGHUP');
    const failed = await pg.waitEvent((e) => e.level === 'error' && /reload failed/.test(e.msg ?? ''),
                                      'the reload failure line', { from: mark });
    assert.match(failed.msg, /still serving the previous config/);
    assert.match(failed.error, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:3: `),
                 `error names file:line:col: ${failed.error}`);
    assert.match(failed.error, /agentz/);
    assert.equal((await get(shopper.token, ka)).status, 200, 'still serving on a kept-alive connection');
    assert.equal((await get(shopper.token)).status, 200, 'still serving on a new connection');

    // A file that is not even YAML.
    await fs.writeFile(file, 'listen: [unclosed\n  agents: {\n');
    mark = pg.events.length;
    pg.signal('SIGHUP');
    const failed2 = await pg.waitEvent((e) => e.level === 'error' && /reload failed/.test(e.msg ?? ''),
                                       'the second reload failure line', { from: mark });
    assert.match(failed2.error, /:\d+:\d+: /);
    assert.equal((await get(shopper.token)).status, 200);

    // 2. A valid change: a second agent, and a smaller header limit.
    const two = { ...base, limits: { ...base.limits, header_bytes: 1024 },
                  agents: [...base.agents, { id: 'buyer', org: 'acme', token: buyer.hash, rails: ['stripe'] }] };
    await fs.writeFile(file, toYaml(two));
    mark = pg.events.length;
    pg.signal('SIGHUP');
    await pg.waitEvent((e) => e.msg === 'config reloaded', 'the "config reloaded" line', { from: mark });
    const b = await get(buyer.token);
    assert.equal(b.status, 200, `the new agent works after reload: ${b.body}`);
    assert.equal((await get(shopper.token, ka)).status, 200);
    const big = await request(pg.port, { path: '/v1/balance', headers: { ...bearer(shopper.token), 'X-Pad': 'p'.repeat(1500) } });
    stripeShapedError(assert, big, 431, 'payguard_headers_too_large');

    // 3. Remove shopper: its token was verified and cached, and must stop working.
    const three = { ...two, agents: two.agents.filter((a) => a.id !== 'shopper') };
    await fs.writeFile(file, toYaml(three));
    mark = pg.events.length;
    pg.signal('SIGHUP');
    await pg.waitEvent((e) => e.msg === 'config reloaded', 'the second "config reloaded" line', { from: mark });
    const before = await mock.count();
    const gone = await get(shopper.token, ka);
    stripeShapedError(assert, gone, 401, 'payguard_invalid_token');
    const goneFresh = await get(shopper.token);
    assert.equal(goneFresh.status, 401);
    assert.equal(await mock.count(), before, 'the rail saw nothing from the removed agent');
    assert.equal((await get(buyer.token)).status, 200);

    ka.destroy();
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
    await mock.stop();
});

test('SIGHUP while a request is in flight: it finishes under the old config, new requests use the new one', async () => {
    const dir = await makeTmp('reload-inflight');
    const shopper = await newToken('shopper');
    const mock = await startMockrail();
    started.push(mock);
    const base = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        agents: [{ id: 'shopper', org: 'acme', token: shopper.hash, rails: ['stripe'] }],
    });
    const file = await writeConfig(dir, base);
    const pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    current = pg;
    started.push(pg);
    const ka = keepAliveAgent(1);
    assert.equal((await request(pg.port, { path: '/v1/balance', headers: bearer(shopper.token), agent: ka })).status, 200);

    const before = await mock.count();
    const slow = request(pg.port, { path: '/v1/balance', headers: { ...bearer(shopper.token), 'X-Mock-Delay-Ms': '800' } });
    await waitFor(async () => (await mock.count()) > before, 'the slow request to reach the rail');
    const down = await closedPort();
    await fs.writeFile(file, toYaml({ ...base, rails: { stripe: httpRail(`http://127.0.0.1:${down}`) } }));
    const mark = pg.events.length;
    pg.signal('SIGHUP');
    await pg.waitEvent((e) => e.msg === 'config reloaded', 'the "config reloaded" line', { from: mark });

    const after = await request(pg.port, { path: '/v1/balance', headers: bearer(shopper.token), agent: ka });
    stripeShapedError(assert, after, 502, 'payguard_rail_unreachable');
    const res = await slow;
    assert.equal(res.status, 200, `the in-flight request keeps its rail: ${res.body}`);
    assert.equal(res.json.object, 'balance');

    ka.destroy();
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
    await mock.stop();
});

/* Starts payguard with four agents (so an unknown token costs four bcrypt
 * checks) and opens a connection that sends an unknown token and leaves
 * while it is being checked. */
async function departedDuringTokenCheck(name) {
    const dir = await makeTmp(name);
    const agents = [];
    const tokens = {};
    for (const id of ['a1', 'a2', 'a3', 'a4', 'stranger']) tokens[id] = await newToken(id);
    for (const id of ['a1', 'a2', 'a3', 'a4']) agents.push({ id, org: 'acme', token: tokens[id].hash, rails: ['stripe'] });
    const mock = await startMockrail();
    started.push(mock);
    const cfg = configObject(dir, { rails: { stripe: httpRail(mock.url) }, agents });
    const file = await writeConfig(dir, cfg);
    const pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    current = pg;
    started.push(pg);
    const sock = net.connect(pg.port, '127.0.0.1');
    sock.on('error', () => {});
    await new Promise((r) => sock.on('connect', r));
    sock.write(`GET /v1/balance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokens.stranger.token}\r\n\r\n`);
    await new Promise((r) => setTimeout(r, 30));
    sock.destroy();
    return { pg, mock, file, cfg, tokens };
}

test('SIGTERM while a departed client\'s token is still being checked: clean exit 0', async () => {
    const { pg, mock } = await departedDuringTokenCheck('term-in-auth');
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, `payguard died of ${signal}\n${pg.tail()}`);
    assert.equal(code, 0, `exit code ${code} (86 = leak or memory error under ASan)\n${pg.tail(80)}`);
    await mock.stop();
});

test('SIGHUP while a departed client\'s token is still being checked: the old config outlives the check', async () => {
    const { pg, mock, file, cfg, tokens } = await departedDuringTokenCheck('hup-in-auth');
    const mark = pg.events.length;
    await fs.writeFile(file, toYaml({ ...cfg, limits: { ...cfg.limits, max_headers: 40 } }));
    pg.signal('SIGHUP');
    await pg.waitEvent((e) => e.msg === 'config reloaded', 'the "config reloaded" line', { from: mark });
    // Another unknown token: its check ends after the departed one's.
    const probe = await request(pg.port, { path: '/v1/balance', headers: bearer(tokens.stranger.token) });
    assert.equal(probe.status, 401);
    const ok = await request(pg.port, { path: '/v1/balance', headers: bearer(tokens.a1.token) });
    assert.equal(ok.status, 200, ok.body);
    const { code, signal } = await pg.stop();
    assert.equal(signal, null, `payguard died of ${signal}\n${pg.tail()}`);
    assert.equal(code, 0, `exit code ${code} (86 = leak or memory error under ASan)\n${pg.tail(80)}`);
    await mock.stop();
});

test('SIGTERM drains: the in-flight request completes, listeners close, idle connections drop, exit 0', async () => {
    const dir = await makeTmp('drain');
    const shopper = await newToken('shopper');
    const mock = await startMockrail();
    started.push(mock);
    const file = await writeConfig(dir, configObject(dir, {
        limits: { drain_timeout_ms: 10000 },
        rails: { stripe: httpRail(mock.url) },
        agents: [{ id: 'shopper', org: 'acme', token: shopper.hash, rails: ['stripe'] }],
    }));
    const pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    current = pg;
    started.push(pg);

    // An idle keep-alive connection, already used once.
    const idle = net.connect(pg.port, '127.0.0.1');
    let idleData = '';
    idle.on('data', (d) => { idleData += d; });
    idle.on('error', () => {});
    const idleClosed = new Promise((r) => idle.on('close', r));
    idle.write(rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: 127.0.0.1', `Authorization: Bearer ${shopper.token}`]));
    await waitFor(() => idleData.includes('"balance"'), 'the idle connection\'s first answer');

    // A slow request, in flight at the rail when SIGTERM arrives.
    const before = await mock.count();
    const slow = request(pg.port, { path: '/v1/balance', headers: { ...bearer(shopper.token), 'X-Mock-Delay-Ms': '1500' } });
    await waitFor(async () => (await mock.count()) > before, 'the slow request to reach the rail');
    const mark = pg.events.length;
    pg.signal('SIGTERM');
    await pg.waitEvent((e) => e.msg === 'draining', 'the "draining" line', { from: mark });

    // The line is logged as the listeners close: allow a moment, boundedly.
    await waitFor(() => connectRefused(pg.port), 'the agent listener to refuse connections');
    await waitFor(() => connectRefused(pg.adminPort), 'the admin listener to refuse connections');
    await within(idleClosed, 'payguard to close the idle keep-alive connection');

    const res = await slow;
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.object, 'balance');
    assert.equal(res.headers.connection, 'close', 'a draining payguard says it closes');

    const { code, signal } = await pg.waitExit();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
    assert.ok(!pg.events.some((e) => /drain timeout/.test(e.msg ?? '')), 'finished before the drain timeout');
    const log = pg.requestLogs().at(-1);
    assert.ok(log, 'the drained request was logged before exit');
    assert.equal(log.status, 200);
    await mock.stop();
});

test('SIGTERM with a request longer than drain_timeout_ms: cut at the timeout, exit 0', async () => {
    const dir = await makeTmp('drain-timeout');
    const shopper = await newToken('shopper');
    const mock = await startMockrail();
    started.push(mock);
    const file = await writeConfig(dir, configObject(dir, {
        limits: { drain_timeout_ms: 300 },
        rails: { stripe: httpRail(mock.url, { timeout_ms: 30000 }) },
        agents: [{ id: 'shopper', org: 'acme', token: shopper.hash, rails: ['stripe'] }],
    }));
    const pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    current = pg;
    started.push(pg);

    const before = await mock.count();
    const slow = request(pg.port, { path: '/v1/balance', headers: { ...bearer(shopper.token), 'X-Mock-Delay-Ms': '20000' } })
        .then((r) => ({ res: r }), (e) => ({ err: e }));
    await waitFor(async () => (await mock.count()) > before, 'the slow request to reach the rail');
    pg.signal('SIGTERM');
    const { code, signal } = await pg.waitExit();
    assert.equal(signal, null, pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${pg.tail(80)}`);
    assert.ok(pg.events.some((e) => /drain timeout/.test(e.msg ?? '')), 'a "drain timeout" line');
    const out = await slow;
    assert.ok(out.err || out.res.status !== 200, 'the cut request did not get a rail answer');
    await mock.stop();
});

nodeTest('payguard check: ok for a valid file, file:line:col for each problem, exit 2', async () => {
    const { payguardCheck } = await import('./lib/harness.mjs');
    const dir = await makeTmp('check');
    const t = await newToken('shopper');
    const good = configObject(dir, {
        rails: { stripe: httpRail('http://127.0.0.1:9') },
        agents: [{ id: 'shopper', org: 'acme', token: t.hash, rails: ['stripe'] }],
    });
    const file = await writeConfig(dir, good);
    const ok = await payguardCheck(file, ['--no-env']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), 'ok');
    const bad = toYaml(good).replace('listen:\n', 'listen:\n  agentz: 1\n').replace('"acme"', '"nosuchorg"');
    await fs.writeFile(file, bad);
    const r = await payguardCheck(file, ['--no-env']);
    assert.equal(r.code, 2);
    const lines = r.stderr.trim().split('\n');
    assert.ok(lines.length >= 2, `every problem reported: ${r.stderr}`);
    for (const l of lines) assert.match(l, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `));
    // A plaintext secret is refused.
    const plain = toYaml(good).replace('"env:MOCK_STRIPE_SECRET"', '"sk_test_plaintext"');
    await fs.writeFile(file, plain);
    const p = await payguardCheck(file, ['--no-env']);
    assert.equal(p.code, 2, p.stdout + p.stderr);
});

test('a second payguard on the same data_dir is refused and says why; the first keeps serving', async () => {
    const dir = await makeTmp('second');
    const shopper = await newToken('shopper');
    const mock = await startMockrail();
    started.push(mock);
    const file = await writeConfig(dir, configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        agents: [{ id: 'shopper', org: 'acme', token: shopper.hash, rails: ['stripe'] }],
    }));
    const env = { MOCK_STRIPE_SECRET: mock.secret };
    const pg = await startPayguard(file, { env });
    current = pg;
    started.push(pg);
    await assert.rejects(startPayguard(file, { env }), (e) => {
        assert.match(e.message, /payguard exited \(1\)/);
        assert.match(e.message, /another payguard process serves this data_dir/);
        return true;
    });
    const res = await request(pg.port, { path: '/v1/balance', headers: bearer(shopper.token) });
    assert.equal(res.status, 200);
});

test('SIGHUP that changes ledger settings: reloaded, with a warning that they wait for a restart', async () => {
    const dir = await makeTmp('reload-ledger');
    const shopper = await newToken('shopper');
    const mock = await startMockrail();
    started.push(mock);
    const base = configObject(dir, {
        rails: { stripe: httpRail(mock.url) },
        agents: [{ id: 'shopper', org: 'acme', token: shopper.hash, rails: ['stripe'] }],
    });
    const file = await writeConfig(dir, base);
    const pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
    current = pg;
    started.push(pg);
    await fs.writeFile(file, toYaml({ ...base, ledger: { approval_ttl: '2h' } }));
    const mark = pg.events.length;
    pg.signal('SIGHUP');
    const warn = await pg.waitEvent((e) => /takes effect at restart/.test(e.msg ?? ''),
                                    'the restart warning', { from: mark });
    assert.equal(warn.level, 'warn');
    assert.equal(warn.key, 'ledger');
    await pg.waitEvent((e) => e.msg === 'config reloaded', 'the reload', { from: mark });
});
