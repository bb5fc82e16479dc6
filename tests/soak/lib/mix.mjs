// The soak's traffic: a steady, seeded mix of what agents send (reads,
// payments, denials, holds, replays, bad requests) and of what goes wrong
// around them (rail faults asked for per request, clients that leave
// mid-request or mid-response, slow clients). Every payment key is kept in a
// book until it has a definite answer; keys left without one (the rail
// reset, payguard was killed, the disk was full) are retried with the same
// key and body, as a careful agent would, so at the end every key is either
// paid, declined, held or denied and can be held against what the rail
// charged.
import http from 'node:http';
import net from 'node:net';

import { request, rawExchange } from '../../integration/lib/http.mjs';
import { FORM } from '../../integration/lib/ledger.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Answers of a money request, told apart: `definite` ones end the key,
 * `transient` ones leave it to be retried. payguard's own errors carry a
 * Payguard-Reason header; the rail's answers (stored for replay) do not. */
export function classify(res) {
    if (!res) return { transient: 'conn_error' };
    const s = res.status;
    const reason = res.headers['payguard-reason'];
    if (s === 200) return { definite: 'paid' };
    if (s === 402) return { definite: reason ? (reason === 'approval_required' ? 'held' : `held:${reason}`) : 'declined' };
    if (s === 409 || s === 429) return { transient: `${s}:${reason ?? 'rail'}` };
    if (s >= 500 && reason) return { transient: `${s}:${reason}` };
    if (!reason) return { definite: `rail_${s}` };
    if (s === 403) return { definite: `denied:${reason}` };
    if (s === 400) return { definite: `bad:${reason}` };
    return { definite: `unexpected_${s}:${reason}` };
}

const CARD = 'currency=usd&confirm=true&payment_method=pm_card_visa';

export class Mix {
    /* o: {port, tokens {agent: token}, rnd (seeded, 0..1), seed, rate
     *     (actions/s), railTimeoutMs, waitMs, capAgent() (the capped agent
     *     of the moment), invariant(name, ok, detail), note(kind, what)} */
    constructor(o) {
        Object.assign(this, o);
        this.book = new Map();          // key → record
        this.unresolved = new Set();    // records still without a definite answer
        this.replayable = [];           // records whose stored answer a replay must repeat
        this.paidIds = [];              // payment intent ids, for reads
        this.requests = {};             // kind → outcome → count
        this.faults = {};               // fault kind → count (what the harness injected)
        this.unexpected = [];           // definite answers outside what the kind allows
        this.inflight = 0;
        this.inflightBy = {};            // what is in flight, by action
        this.paused = true;
        this.seq = 0;
        this.keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });
        this.sockets = new Set();       // raw sockets we hold open
        this.timer = null;
        this.retrier = null;
        this.retrying = 0;
        this.stopped = false;
    }

    // --- bookkeeping ---------------------------------------------------------

    count(kind, outcome) {
        const k = (this.requests[kind] ??= {});
        k[outcome] = (k[outcome] ?? 0) + 1;
    }

    fault(kind, n = 1) {
        this.faults[kind] = (this.faults[kind] ?? 0) + n;
    }

    pick(list) {
        return list[Math.floor(this.rnd() * list.length)];
    }

    between(lo, hi) {
        return lo + Math.floor(this.rnd() * (hi - lo + 1));
    }

    newKey(kind) {
        return `soak-${this.seed}-${kind}-${++this.seq}`;
    }

    /* Runs fn counted as in flight (the quiesce waits for zero). */
    async track(fn, what = 'other') {
        this.inflight++;
        this.inflightBy[what] = (this.inflightBy[what] ?? 0) + 1;
        try {
            return await fn();
        } finally {
            this.inflight--;
            if (--this.inflightBy[what] === 0) delete this.inflightBy[what];
        }
    }

    // --- the schedule ----------------------------------------------------------

    /* Weighted actions; each returns a promise. The weights are a mix, not a
     * model of any real agent: enough of each kind to matter every minute. */
    actions() {
        return [
            [22, 'payShopper', () => this.payShopper()],
            [14, 'payCapped', () => this.payCapped()],
            [10, 'replay', () => this.replay()],
            [5, 'read_balance', () => this.read('read_balance', '/v1/balance')],
            [5, 'readPaid', () => this.readPaid()],
            [3, 'read_list', () => this.read('read_list', '/v1/payment_intents?limit=3')],
            [4, 'hold', () => this.hold()],
            [3, 'overLimit', () => this.overLimit()],
            [3, 'merchant', () => this.merchant()],
            [3, 'decline', () => this.decline()],
            [3, 'noKey', () => this.noKey()],
            [3, 'badAmount', () => this.badAmount()],
            [3, 'badHttp', () => this.badHttp()],
            [1, 'badToken', () => this.badToken()],
            [2, 'disconnectMidRequest', () => this.disconnectMidRequest()],
            [2, 'disconnectWaiting', () => this.disconnectWaiting()],
            [2, 'disconnectMidResponse', () => this.disconnectMidResponse()],
            [2, 'rail_reset', () => this.railFault('reset', ['paid'])],
            [1, 'rail_drop', () => this.railFault('drop', ['paid'])],
            [1, 'rail_500', () => this.railFault('500', ['rail_500', 'paid'])],
            [2, 'rail_garbage', () => this.railFault('garbage', ['paid'])],
        ];
    }

    start() {
        const acts = this.actions();
        const total = acts.reduce((sum, [w]) => sum + w, 0);
        const every = Math.max(1, Math.round(1000 / this.rate));
        this.paused = false;
        this.timer = setInterval(() => {
            if (this.paused || this.stopped) return;
            if (this.inflight >= 400) {
                this.count('scheduler', 'skipped_backpressure');
                return;
            }
            let x = this.rnd() * total;
            for (const [w, name, fn] of acts) {
                x -= w;
                if (x < 0) {
                    this.track(fn, name).catch((e) => this.count('harness_error', String(e?.message ?? e).slice(0, 80)));
                    break;
                }
            }
        }, every);
        this.retrier = setInterval(() => this.retryDue(), 200);
    }

    pause() {
        this.paused = true;
    }

    resume() {
        this.paused = false;
    }

    /* Ends every idle keep-alive connection and raw socket we hold, so
     * payguard can be measured with no agent connection open. */
    dropConnections() {
        this.keepAlive.destroy();
        this.keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });
        for (const s of this.sockets) s.destroy();
        this.sockets.clear();
    }

    async stop() {
        this.stopped = true;
        clearInterval(this.timer);
        clearInterval(this.retrier);
        this.dropConnections();
    }

    // --- money -------------------------------------------------------------------

    body(amount, extra = '') {
        return `amount=${amount}&${CARD}${extra}`;
    }

    /* Starts a money request under a new key; `accept` lists the definite
     * outcomes this kind may end with. */
    async money(kind, agent, body, accept, { headers = {}, timeoutMs } = {}) {
        const rec = { kind, agent, key: this.newKey(kind), body, accept, attempts: 0,
                      outcome: null, status: null, resBody: null, id: null, nextAt: 0, busy: false };
        this.book.set(rec.key, rec);
        await this.attempt(rec, headers, timeoutMs, kind);
        return rec;
    }

    async attempt(rec, headers, timeoutMs, countAs) {
        rec.attempts++;
        rec.busy = true;
        let res = null;
        try {
            res = await request(this.port, {
                method: 'POST', path: '/v1/payment_intents', body: rec.body,
                headers: { Authorization: `Bearer ${this.tokens[rec.agent]}`, 'Content-Type': FORM,
                           'Idempotency-Key': rec.key, ...headers },
                agent: this.rnd() < 0.5 ? this.keepAlive : false,
                timeoutMs: timeoutMs ?? this.waitMs,
            });
        } catch {
            res = null;
        } finally {
            rec.busy = false;
        }
        const c = classify(res);
        if (c.transient) {
            this.count(countAs, c.transient);
            this.leaveUnresolved(rec);
            return;
        }
        this.count(countAs, c.definite);
        this.resolve(rec, c.definite, res);
    }

    leaveUnresolved(rec, delayMs) {
        this.unresolved.add(rec);
        rec.nextAt = Date.now() + (delayMs ?? (300 + Math.floor(this.rnd() * 1200)));
    }

    resolve(rec, outcome, res) {
        this.unresolved.delete(rec);
        rec.outcome = outcome;
        rec.status = res.status;
        rec.resBody = res.body;
        rec.id = res.json?.id ?? null;
        if (!rec.accept.includes(outcome)) {
            this.unexpected.push(`${rec.kind} ${rec.key} (${rec.agent}): ${outcome} ${res.status} ${res.body.slice(0, 200)}`);
        }
        if (outcome === 'paid' && rec.id) this.paidIds.push(rec.id);
        if (outcome === 'paid' || outcome === 'declined' || outcome.startsWith('rail_')) this.replayable.push(rec);
    }

    /* Retries keys left without a definite answer: same key, same body, no
     * fault header, a few at a time. */
    retryDue() {
        if (this.paused && !this.sweeping) return;
        const now = Date.now();
        for (const rec of this.unresolved) {
            if (this.retrying >= 8) break;
            if (rec.busy || rec.nextAt > now) continue;
            this.retrying++;
            this.track(() => this.attempt(rec, {}, undefined, 'retry'), 'retry')
                .finally(() => { this.retrying--; });
        }
    }

    /* The final sweep: retries until every key has a definite answer or the
     * deadline passes. Resolves the records still unresolved. */
    async sweep(deadline) {
        this.sweeping = true;
        this.paused = true;
        while (this.unresolved.size && Date.now() < deadline) {
            for (const rec of this.unresolved) rec.nextAt = Math.min(rec.nextAt, Date.now() + 200);
            this.retryDue();
            await sleep(100);
        }
        while (this.inflight && Date.now() < deadline + 5000) await sleep(50);
        this.sweeping = false;
        return [...this.unresolved];
    }

    payShopper() {
        return this.money('pay', 'shopper', this.body(this.between(100, 20000)), ['paid']);
    }

    payCapped() {
        const agent = this.capAgent();
        return this.money('pay_capped', agent,
                          this.body(this.between(100, 2000), '&transfer_data[destination]=acct_1TrustedShop'),
                          ['paid', 'denied:daily_limit']);
    }

    hold() {
        return this.money('hold', 'shopper', this.body(this.between(25001, 45000)), ['held']);
    }

    overLimit() {
        return this.money('over_limit', 'shopper', this.body(this.between(50001, 90000)),
                          ['denied:per_transaction_limit']);
    }

    merchant() {
        if (this.rnd() < 0.5) {
            return this.money('merchant', 'shopper',
                              this.body(this.between(100, 5000), '&transfer_data[destination]=acct_1BlockedShop'),
                              ['denied:merchant_denied']);
        }
        return this.money('merchant', this.capAgent(),
                          this.body(this.between(100, 1000), '&transfer_data[destination]=acct_1Elsewhere'),
                          ['denied:merchant_not_allowed']);
    }

    decline() {
        return this.money('decline', 'bulk', this.body(402402), ['declined']);
    }

    /* A payment with a fault the rail injects (the header reaches it, as
     * payguard forwards X- headers). Whatever the first answer, the key is
     * retried without the header until it has a definite one. */
    railFault(kind, accept) {
        this.fault(`rail_${kind}`);
        return this.money(`rail_${kind}`, 'shopper', this.body(this.between(100, 20000)), accept,
                          { headers: { 'X-Mock-Fault': kind } });
    }

    /* The rail answers after 40 s, past payguard's timeout. */
    railSlow() {
        this.fault('rail_slow_40s');
        return this.track(() => this.money('rail_slow_40s', 'shopper', this.body(this.between(100, 20000)), ['paid'],
                                           { headers: { 'X-Mock-Delay-Ms': '40000' },
                                             timeoutMs: this.railTimeoutMs + this.waitMs }), 'rail_slow_40s');
    }

    /* Sends a stored answer's request again: the answer must be the one the
     * agent got the first time, byte for byte, marked as a replay. */
    async replay() {
        if (this.replayable.length === 0) return this.payShopper();
        const rec = this.pick(this.replayable);
        let res = null;
        try {
            res = await request(this.port, {
                method: 'POST', path: '/v1/payment_intents', body: rec.body,
                headers: { Authorization: `Bearer ${this.tokens[rec.agent]}`, 'Content-Type': FORM,
                           'Idempotency-Key': rec.key },
                agent: this.keepAlive,
            });
        } catch {
            res = null;
        }
        const c = classify(res);
        if (c.transient) {
            this.count('replay', c.transient);
            return;
        }
        const same = res.status === rec.status && res.body === rec.resBody;
        this.count('replay', same ? 'identical' : 'DIFFERENT');
        this.invariant('replays byte-identical', same && res.headers['idempotent-replayed'] === 'true',
                       `key ${rec.key}: first ${rec.status} ${rec.resBody.slice(0, 120)}; replay ${res.status} `
                       + `(Idempotent-Replayed: ${res.headers['idempotent-replayed']}) ${res.body.slice(0, 120)}`);
    }

    // --- reads -------------------------------------------------------------------

    async read(kind, path, check) {
        let res = null;
        try {
            res = await request(this.port, { path, headers: { Authorization: `Bearer ${this.tokens.shopper}` },
                                             agent: this.rnd() < 0.5 ? this.keepAlive : false });
        } catch {
            res = null;
        }
        if (!res) return this.count(kind, 'conn_error');
        const reason = res.headers['payguard-reason'];
        if (res.status === 200 && (!check || check(res))) return this.count(kind, 'ok');
        if (res.status >= 500 && reason) return this.count(kind, `${res.status}:${reason}`);
        this.count(kind, `unexpected_${res.status}`);
        this.unexpected.push(`${kind} ${path}: ${res.status} ${res.body.slice(0, 200)}`);
    }

    readPaid() {
        if (this.paidIds.length === 0) return this.read('read_balance', '/v1/balance');
        const id = this.pick(this.paidIds);
        return this.read('read_payment', `/v1/payment_intents/${id}`, (res) => res.json?.id === id);
    }

    // --- bad requests ----------------------------------------------------------------

    async expectRefusal(kind, res, status, reason) {
        if (!res) return this.count(kind, 'conn_error');
        const got = res.headers['payguard-reason'];
        if (res.status === status && got === reason) return this.count(kind, `${status}:${reason}`);
        if (res.status >= 500 && got) return this.count(kind, `${res.status}:${got}`);
        this.count(kind, `unexpected_${res.status}`);
        this.unexpected.push(`${kind}: wanted ${status} ${reason}, got ${res.status} ${got} ${res.body.slice(0, 200)}`);
    }

    async noKey() {
        let res = null;
        try {
            res = await request(this.port, { method: 'POST', path: '/v1/payment_intents', body: this.body(1000),
                                             headers: { Authorization: `Bearer ${this.tokens.shopper}`, 'Content-Type': FORM } });
        } catch { /* counted below */ }
        return this.expectRefusal('no_idempotency_key', res, 400, 'missing_idempotency_key');
    }

    async badAmount() {
        const amount = this.pick(['-5', 'abc', '12.5', '99999999999999999999', '', '1e3', '0x10']);
        let res = null;
        try {
            res = await request(this.port, { method: 'POST', path: '/v1/payment_intents',
                                             body: `amount=${amount}&${CARD}`,
                                             headers: { Authorization: `Bearer ${this.tokens.shopper}`, 'Content-Type': FORM,
                                                        'Idempotency-Key': this.newKey('bad_amount') } });
        } catch { /* counted below */ }
        return this.expectRefusal('bad_amount', res, 400, 'invalid_amount');
    }

    async badToken() {
        let res = null;
        try {
            // From an address of its own: failures are limited per address.
            res = await request(this.port, { path: '/v1/balance', localAddress: '127.0.0.9',
                                             headers: { Authorization: `Bearer pgt_${'x'.repeat(43)}` } });
        } catch { /* counted below */ }
        if (res?.status === 429) return this.count('bad_token', '429:rate_limited');
        return this.expectRefusal('bad_token', res, 401, 'invalid_token');
    }

    /* Malformed HTTP on a raw socket: a 400 (or 431) and the connection closed. */
    async badHttp() {
        const junk = Buffer.from(Array.from({ length: 64 }, () => this.between(0, 255)));
        junk[0] = 0x01;
        const variants = [
            ['cl_and_te', 'POST /v1/payment_intents HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
            ['bare_lf', 'GET /v1/balance HTTP/1.1\nHost: x\n\n'],
            ['bad_request_line', 'PAY ME NOW PLEASE\r\n\r\n'],
            ['space_before_colon', 'GET /v1/balance HTTP/1.1\r\nHost : x\r\n\r\n'],
            ['obs_fold', 'GET /v1/balance HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n'],
            ['absolute_target', 'GET http://127.0.0.1/v1/balance HTTP/1.1\r\nHost: x\r\n\r\n'],
            ['header_too_large', `GET /v1/balance HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10000)}\r\n\r\n`],
            ['binary', Buffer.concat([junk, Buffer.from('\r\n\r\n')])],
        ];
        const [name, bytes] = this.pick(variants);
        let r;
        try {
            r = await rawExchange(this.port, bytes, { timeoutMs: this.waitMs });
        } catch {
            return this.count('bad_http', 'conn_error');
        }
        const status = r.responses[0]?.status;
        if (r.responses.length === 0 && (r.reset || r.closed) && r.buf.length === 0) return this.count('bad_http', 'conn_error');
        if ((status === 400 || status === 431) && r.closed) return this.count('bad_http', `${status}_closed`);
        this.count('bad_http', `unexpected_${status}`);
        this.unexpected.push(`bad_http ${name}: ${status} closed=${r.closed} timedOut=${r.timedOut} ${r.text.slice(0, 120)}`);
    }

    // --- clients that leave ----------------------------------------------------------

    /* Headers and part of the body, then gone. */
    async disconnectMidRequest() {
        this.fault('client_gone_mid_request');
        const body = this.body(this.between(100, 5000));
        const head = `POST /v1/payment_intents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${this.tokens.shopper}\r\n`
            + `Content-Type: ${FORM}\r\nIdempotency-Key: ${this.newKey('gone')}\r\nContent-Length: ${body.length}\r\n\r\n`;
        const cut = this.between(0, body.length - 1);
        const wait = this.between(0, 300);
        await new Promise((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port: this.port });
            this.sockets.add(s);
            const done = () => { this.sockets.delete(s); s.destroy(); resolve(); };
            s.on('error', done);
            s.on('connect', () => {
                s.write(head + body.slice(0, cut));
                setTimeout(done, wait);
            });
        });
        this.count('client_gone_mid_request', 'left');
    }

    /* A whole payment sent; the agent leaves while the rail takes its time.
     * The key then waits for a retry like any unknown outcome. */
    async disconnectWaiting() {
        this.fault('client_gone_waiting');
        const rec = { kind: 'client_gone_waiting', agent: 'shopper', key: this.newKey('gone_waiting'),
                      body: this.body(this.between(100, 20000)), accept: ['paid'], attempts: 1, outcome: null,
                      status: null, resBody: null, id: null, nextAt: 0, busy: true };
        this.book.set(rec.key, rec);
        const leaveAfter = this.between(50, 400);
        const res = await new Promise((resolve) => {
            const req = http.request({
                host: '127.0.0.1', port: this.port, method: 'POST', path: '/v1/payment_intents', agent: false,
                headers: { Authorization: `Bearer ${this.tokens.shopper}`, 'Content-Type': FORM,
                           'Idempotency-Key': rec.key, 'X-Mock-Delay-Ms': String(this.between(300, 1500)) },
            }, (r) => {
                // Answered before we left (payguard was quick to refuse): keep it.
                const chunks = [];
                r.on('data', (c) => chunks.push(c));
                r.on('end', () => {
                    clearTimeout(timer);
                    const text = Buffer.concat(chunks).toString('utf8');
                    let json;
                    try { json = JSON.parse(text); } catch { json = undefined; }
                    resolve({ status: r.statusCode, headers: r.headers, body: text, json });
                });
                r.on('error', () => resolve(null));
            });
            const timer = setTimeout(() => { req.destroy(); resolve(null); }, leaveAfter);
            req.on('error', () => { clearTimeout(timer); resolve(null); });
            req.end(rec.body);
        });
        rec.busy = false;
        const c = classify(res);
        if (c.definite) {
            this.count('client_gone_waiting', c.definite);
            this.resolve(rec, c.definite, res);
            return;
        }
        this.count('client_gone_waiting', res ? c.transient : 'left');
        this.leaveUnresolved(rec, 2000);
    }

    /* A long, chunked answer; the agent leaves on its first bytes. */
    async disconnectMidResponse() {
        this.fault('client_gone_mid_response');
        const outcome = await new Promise((resolve) => {
            const req = http.request({
                host: '127.0.0.1', port: this.port, path: '/v1/payment_intents?limit=100', agent: false,
                headers: { Authorization: `Bearer ${this.tokens.shopper}`, 'X-Mock-Chunked': '1' },
            }, (r) => {
                r.once('data', () => { req.destroy(); resolve(`left_after_${r.statusCode}`); });
                r.on('end', () => resolve(`whole_${r.statusCode}`));
                r.on('error', () => resolve(`left_after_${r.statusCode}`));
            });
            req.setTimeout(this.waitMs, () => { req.destroy(); resolve('timeout'); });
            req.on('error', () => resolve('conn_error'));
            req.end();
        });
        this.count('client_gone_mid_response', outcome);
    }

    /* Right after a start: a burst of everything at once, so what a process
     * sets up once (thread-pool threads and their stacks running bcrypt,
     * malloc arenas, its busiest moment's heap) is set up before memory is
     * first measured. Distinct wrong tokens, so each is a bcrypt of its own. */
    async warmup() {
        const tasks = [];
        for (let i = 0; i < 8; i++) {
            tasks.push(request(this.port, { path: '/v1/balance', localAddress: '127.0.0.10',
                                            headers: { Authorization: `Bearer pgt_${String(i).repeat(43).slice(0, 43)}` } })
                .then((r) => this.count('warmup_bad_token', String(r.status)), () => this.count('warmup_bad_token', 'conn_error')));
        }
        for (let i = 0; i < 120; i++) tasks.push(this.track(() => this.payShopper(), 'warmup'));
        for (let i = 0; i < 16; i++) tasks.push(this.track(() => this.payCapped(), 'warmup'));
        for (let i = 0; i < 40; i++) tasks.push(this.track(() => this.read('read_balance', '/v1/balance'), 'warmup'));
        for (const fn of [this.hold, this.decline, this.merchant, this.overLimit, this.noKey, this.badAmount,
                          this.badHttp, this.badHttp, this.disconnectMidResponse, this.readPaid, this.replay]) {
            tasks.push(this.track(() => fn.call(this), 'warmup'));
        }
        await Promise.all(tasks);
    }

    /* Slow clients: n connections that trickle their headers (or, for half
     * of them, their body) one byte at a time. payguard should answer 408 and
     * close each one when its header or body timeout runs out; how long that
     * took is reported, not asserted. Resolves when all are closed or after
     * capMs. */
    async slowloris(n, everyMs, capMs) {
        this.fault('slowloris', n);
        const one = (i) => new Promise((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port: this.port });
            this.sockets.add(s);
            const started = Date.now();
            let got = '';
            let timer = null;
            const bodyPhase = i % 2 === 1;
            const head = bodyPhase
                ? `POST /v1/payment_intents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${this.tokens.shopper}\r\nContent-Type: ${FORM}\r\nIdempotency-Key: ${this.newKey('slow')}\r\nContent-Length: 1000\r\n\r\n`
                : 'GET /v1/balance HTTP/1.1\r\nHost: x\r\nX-Slow: ';
            const finish = (how) => {
                clearInterval(timer);
                clearTimeout(cap);
                this.sockets.delete(s);
                s.destroy();
                resolve({ how, ms: Date.now() - started, status: /^HTTP\/1\.1 (\d+)/.exec(got)?.[1] });
            };
            const cap = setTimeout(() => finish('still_open_at_cap'), capMs);
            s.on('data', (d) => { got += d.toString('latin1'); });
            s.on('end', () => finish('closed_by_payguard'));
            s.on('close', () => finish('closed_by_payguard'));
            s.on('error', () => finish(got ? 'closed_by_payguard' : 'conn_error'));
            s.on('connect', () => {
                s.write(head);
                timer = setInterval(() => { if (!s.destroyed) s.write('a'); }, everyMs);
            });
        });
        const results = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
        for (const r of results) this.count('slowloris', r.how === 'closed_by_payguard' ? `closed_${r.status ?? 'without_answer'}` : r.how);
        return results;
    }
}
