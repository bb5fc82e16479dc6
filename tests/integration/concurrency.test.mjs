// Many agents at once: 1,000 keep-alive connections open together, each
// served (twice, so they really are kept alive), and max_connections turning
// the connection past the limit away with a 503 while the others keep working.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import {
    startStack, makeTmp, newToken, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, stripeShapedError, waitFor, within, WAIT_MS,
} from './lib/harness.mjs';
import { request, rawExchange, rawRequestBytes, parseResponses } from './lib/http.mjs';

const N = 1000;

let s;
let small;
const test = testWithLogs(() => [s?.pg, small]);

before(async () => {
    s = await startStack('concurrency', { limits: { max_connections: N + 200 }, ulimitN: 8192 });
});
after(async () => {
    s?.pg.kill();
    small?.kill();
    await s?.mock.stop();
});

/* A client connection that sends requests on demand and collects answers. */
function client(port) {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let closed = false;
    const c = {
        sock,
        connected: new Promise((resolve, reject) => { sock.on('connect', resolve); sock.on('error', reject); }),
        answers: () => parseResponses(buf).responses,
        closed: () => closed,
    };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    sock.on('close', () => { closed = true; });
    sock.on('error', () => { closed = true; });
    return c;
}

test(`${N} concurrent keep-alive connections are all served, twice`, async () => {
    const uli = await new Promise((r) => {
        import('node:child_process').then(({ execSync }) => r(Number(execSync('ulimit -n', { shell: '/bin/bash' }).toString())));
    });
    assert.ok(uli > N + 100, `this test needs more than ${N + 100} open files in the test process (ulimit -n is ${uli})`);
    // Warm the verified-token cache: 1,000 bcrypt checks would take minutes.
    assert.equal((await request(s.pg.port, { path: '/v1/balance', headers: s.auth })).status, 200);
    const before = await s.mock.count();
    const req = rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: 127.0.0.1', `Authorization: Bearer ${s.token.token}`]);

    const clients = [];
    for (let i = 0; i < N; i++) clients.push(client(s.pg.port));
    await within(Promise.all(clients.map((c) => c.connected)), `${N} connections`);
    // All open at once before anything is sent.
    for (const c of clients) c.sock.write(req);
    await waitFor(() => clients.every((c) => c.answers().length >= 1 || c.closed()), `${N} first answers`, WAIT_MS * 3, 50);
    const statuses = clients.map((c) => c.answers()[0]?.status ?? 'closed');
    const bad = statuses.filter((x) => x !== 200);
    assert.equal(bad.length, 0, `not 200: ${JSON.stringify(bad.slice(0, 10))} (${bad.length} of ${N})`);
    assert.ok(clients.every((c) => !c.closed()), 'every connection is still open (kept alive)');

    for (const c of clients) c.sock.write(req);
    await waitFor(() => clients.every((c) => c.answers().length >= 2 || c.closed()), `${N} second answers`, WAIT_MS * 3, 50);
    const second = clients.map((c) => c.answers()[1]?.status ?? 'closed');
    assert.equal(second.filter((x) => x !== 200).length, 0, `second round not all 200: ${JSON.stringify(second.filter((x) => x !== 200).slice(0, 10))}`);
    for (const c of clients) assert.equal(c.answers()[1].json?.object, 'balance');
    assert.equal(await s.mock.count(), before + 2 * N, 'every request reached the rail exactly once');
    for (const c of clients) c.sock.destroy();
});

test('max_connections: the connection past the limit gets a 503 and is closed; the others keep working', async () => {
    const dir = await makeTmp('maxconn');
    const t = await newToken('shopper');
    const file = await writeConfig(dir, configObject(dir, {
        limits: { max_connections: 5 },
        rails: { stripe: httpRail(s.mock.url) },
        agents: [{ id: 'shopper', org: 'acme', token: t.hash, rails: ['stripe'] }],
    }));
    small = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: s.mock.secret } });
    const req = rawRequestBytes('GET /v1/balance HTTP/1.1', ['Host: 127.0.0.1', `Authorization: Bearer ${t.token}`]);
    const held = [];
    for (let i = 0; i < 5; i++) {
        const c = client(small.port);
        await c.connected;
        c.sock.write(req);
        held.push(c);
    }
    await waitFor(() => held.every((c) => c.answers().length >= 1), 'five first answers');
    assert.deepEqual(held.map((c) => c.answers()[0].status), [200, 200, 200, 200, 200]);

    const before = await s.mock.count();
    const over = await rawExchange(small.port, req);
    assert.equal(over.timedOut, false, 'the extra connection is closed');
    assert.equal(over.responses.length, 1, over.text);
    stripeShapedError(assert, over.responses[0], 503, 'payguard_unavailable');
    assert.equal(await s.mock.count(), before, 'the rail saw nothing from the refused connection');

    // The five still work.
    for (const c of held) c.sock.write(req);
    await waitFor(() => held.every((c) => c.answers().length >= 2), 'five second answers');
    assert.deepEqual(held.map((c) => c.answers()[1].status), [200, 200, 200, 200, 200]);

    // Closing one makes room for a new one.
    held[0].sock.destroy();
    await waitFor(async () => {
        const ex = await rawExchange(small.port, req, { until: (b) => parseResponses(b).responses.length >= 1 });
        return ex.responses[0]?.status === 200;
    }, 'a slot to free up after a client left', WAIT_MS, 100);
    for (const c of held) c.sock.destroy();

    const { code, signal } = await small.stop();
    assert.equal(signal, null, small.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${small.tail(80)}`);
});

test('payguard stops cleanly on SIGTERM after the crowd left', async () => {
    const { code, signal } = await s.pg.stop();
    assert.equal(signal, null, s.pg.tail());
    assert.equal(code, 0, `exit code ${code} (86 = leak under ASan)\n${s.pg.tail(80)}`);
});
