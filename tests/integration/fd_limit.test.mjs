// The open-file limit: every agent connection takes a descriptor, and so
// does each rail connection while a request is at the rail. Started with a
// soft limit far below what limits.max_connections needs (1024 is a common
// default), payguard raises it up to the hard limit itself, so connections
// up to max_connections are served instead of being dropped without an
// answer; when the hard limit is too low it says so at start. Found by the
// load-held soak (tests/soak/loadheld.mjs).
import { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';

import {
    makeTmp, newToken, startMockrail, startPayguard, configObject, writeConfig, httpRail,
    testWithLogs, sleep,
} from './lib/harness.mjs';
import { parseResponses } from './lib/http.mjs';

let pg;
let mock;
const started = [];
const test = testWithLogs(() => pg);
after(async () => {
    for (const p of started) p.kill();
    await mock?.stop();
});

async function softLimit(pid) {
    const s = await fs.readFile(`/proc/${pid}/limits`, 'utf8');
    return Number(/^Max open files\s+(\d+)/m.exec(s)[1]);
}

async function start(ulimitN, maxConnections) {
    const dir = await makeTmp('fdlimit');
    const tok = await newToken('many');
    mock ??= await startMockrail();
    const cfg = configObject(dir, {
        limits: { max_connections: maxConnections, idle_timeout_ms: 60000 },
        rails: { stripe: httpRail(mock.url) },
        agents: [{ id: 'many', org: 'acme', token: tok.hash, rails: ['stripe'] }],
    });
    pg = await startPayguard(await writeConfig(dir, cfg), { env: { MOCK_STRIPE_SECRET: mock.secret }, ulimitN });
    started.push(pg);
    return tok.token;
}

/* Opens n connections, one request on each, all kept open; resolves the
 * statuses (0: no answer). */
async function holdMany(port, token, n) {
    const socks = [];
    const one = () => new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        socks.push(s);
        let buf = Buffer.alloc(0);
        const timer = setTimeout(() => resolve(0), 10000);
        s.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            const r = parseResponses(buf).responses[0];
            if (r) { clearTimeout(timer); resolve(r.status); }
        });
        s.on('error', () => { clearTimeout(timer); resolve(0); });
        s.on('close', () => { clearTimeout(timer); resolve(0); });
        s.write(`GET /v1/balance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    });
    const statuses = [];
    for (let i = 0; i < n; i += 50) statuses.push(...await Promise.all(Array.from({ length: Math.min(50, n - i) }, one)));
    for (const s of socks) s.destroy();
    return statuses;
}

test('a soft open-file limit below what max_connections needs is raised, and every connection is served', async () => {
    const token = await start('-S 256', 600);
    assert.ok(await softLimit(pg.proc.pid) >= 2 * 600, `soft limit ${await softLimit(pg.proc.pid)}`);
    const statuses = await holdMany(pg.port, token, 400);
    const served = statuses.filter((s) => s === 200).length;
    assert.equal(served, 400, `statuses: ${JSON.stringify(statuses.reduce((m, s) => ({ ...m, [s]: (m[s] ?? 0) + 1 }), {}))}`);
    assert.ok(!pg.events.some((e) => /open-file limit/.test(e.msg ?? '')), 'no warning when the hard limit allows it');
    const stop = await pg.stop();
    assert.equal(stop.code, 0, pg.tail());
});

test('a hard open-file limit below what max_connections needs is named at start', async () => {
    await start('256', 600);
    await sleep(100);
    const warn = pg.events.find((e) => e.level === 'warn' && /open-file limit/.test(e.msg ?? ''));
    assert.ok(warn, `a warning naming the limit in:\n${pg.tail()}`);
    assert.equal(await softLimit(pg.proc.pid), 256);
    const stop = await pg.stop();
    assert.equal(stop.code, 0, pg.tail());
});
