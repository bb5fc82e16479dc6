// Many agent connections arriving at once with one token not yet verified
// (payguard just started, a fleet reconnecting): the token's bcrypt check
// runs once and every request waits for it, so the thread pool is not
// flooded with copies of the same check and nothing else queued there (the
// rail's address resolution) waits behind them until it times out. Found by
// the load-held soak (tests/soak/loadheld.mjs), where 10,000 first requests
// got 502 payguard_rail_unreachable by the thousand.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startStack, testWithLogs } from './lib/harness.mjs';
import { request } from './lib/http.mjs';

const N = 400;
let s;
const test = testWithLogs(() => s?.pg);

before(async () => {
    // The rail's connect timeout is 2 s (httpRail): resolving its address
    // waits in the same thread pool as bcrypt, and N copies of one bcrypt
    // check take several seconds there.
    s = await startStack('auth-stampede', { limits: { max_connections: N + 100 } });
});
after(async () => {
    await s?.close();
});

test(`${N} concurrent first requests with one unverified token are all served`, async () => {
    const results = await Promise.all(Array.from({ length: N }, () => request(s.pg.port, {
        path: '/v1/balance', headers: s.auth,
    }).catch((e) => ({ status: 0, body: String(e) }))));
    const byStatus = {};
    for (const r of results) {
        const k = `${r.status} ${r.headers?.['payguard-reason'] ?? ''}`.trim();
        byStatus[k] = (byStatus[k] ?? 0) + 1;
    }
    assert.deepEqual(byStatus, { 200: N }, `answers by status: ${JSON.stringify(byStatus)}`);
});

test('a wrong token sent many times at once is refused every time, and counted per request', async () => {
    const bad = `pgt_${'A'.repeat(43)}`;
    const railBefore = await s.mock.count();
    const results = await Promise.all(Array.from({ length: 10 }, () => request(s.pg.port, {
        path: '/v1/balance', headers: { Authorization: `Bearer ${bad}` }, localAddress: '127.0.0.77',
    })));
    for (const r of results) assert.equal(r.status, 401, r.body);
    assert.equal(await s.mock.count(), railBefore, 'the rail received nothing');
    const again = await request(s.pg.port, { path: '/v1/balance', headers: s.auth });
    assert.equal(again.status, 200, 'the right token still works meanwhile');
});
