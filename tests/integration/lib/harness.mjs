// Process harness for the integration tests: starts the real mock rail and
// the real payguard binary on loopback with port 0, writes their config into
// a fresh temp dir, collects payguard's JSON log lines, and makes sure every
// child is gone when the test file ends (even when it fails).
//
// Binaries come from PAYGUARD_BIN / MOCKRAIL_BIN (tools/test.sh sets them),
// defaulting to build/release/. PAYGUARD_MODE=asan|tsan|valgrind stretches
// the waits.
import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import http from 'node:http';
import https from 'node:https';

import { WAIT_MS } from './http.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const MODE = process.env.PAYGUARD_MODE ?? 'release';
export const PAYGUARD_BIN = path.resolve(process.env.PAYGUARD_BIN ?? path.join(repo, 'build', MODE, 'payguard'));
export const MOCKRAIL_BIN = path.resolve(process.env.MOCKRAIL_BIN ?? path.join(repo, 'build', MODE, 'mockrail'));
export { WAIT_MS };

// Under ASan a leak makes the process exit 86, under TSan a race exits 66 at
// once (tools/test.sh sets the same, and also collects every TSan report).
const childEnv = {
    ...process.env,
    ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=0:exitcode=86',
    UBSAN_OPTIONS: process.env.UBSAN_OPTIONS ?? 'halt_on_error=1:print_stacktrace=1',
    TSAN_OPTIONS: process.env.TSAN_OPTIONS ?? 'halt_on_error=1:exitcode=66',
};

// Every child we start, so a crashed test file still leaves nothing behind.
const children = new Set();
process.on('exit', () => {
    for (const c of children) {
        try { c.kill('SIGKILL'); } catch { /* already gone */ }
    }
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Polls `fn` until it returns a truthy value; throws `what` after timeoutMs. */
export async function waitFor(fn, what, timeoutMs = WAIT_MS, everyMs = 25) {
    const end = Date.now() + timeoutMs;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await sleep(everyMs);
    }
}

/* Resolves what `promise` resolves, or throws `what` after timeoutMs. */
export async function within(promise, what, timeoutMs = WAIT_MS) {
    let timer;
    const expire = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
    });
    try {
        return await Promise.race([promise, expire]);
    } finally {
        clearTimeout(timer);
    }
}

export async function makeTmp(name) {
    return fs.mkdtemp(path.join(os.tmpdir(), `payguard-it-${name}-`));
}

export function randomSecret() {
    return `sk_test_${randomBytes(12).toString('hex')}`;
}

function run(bin, args, opts = {}) {
    return new Promise((resolve) => {
        execFile(bin, args, { env: childEnv, timeout: WAIT_MS * 3, ...opts }, (err, stdout, stderr) => {
            resolve({ code: err ? (err.code ?? 1) : 0, signal: err?.signal ?? null, stdout, stderr });
        });
    });
}

/* `payguard token new --agent ID` → {token, hash}. Checks the exit code, so a
 * leak in the CLI fails too under ASan. */
export async function newToken(agent) {
    const r = await run(PAYGUARD_BIN, ['token', 'new', '--agent', agent]);
    if (r.code !== 0) throw new Error(`payguard token new exited ${r.code}: ${r.stderr}`);
    const token = /^token: (pgt_\S+)$/m.exec(r.stdout)?.[1];
    const hash = /token: "(\$2[aby]\$[^"]+)"/.exec(r.stdout)?.[1];
    if (!token || !hash) throw new Error(`cannot parse payguard token output:\n${r.stdout}`);
    return { token, hash };
}

export async function payguardCheck(file, extra = []) {
    return run(PAYGUARD_BIN, ['check', '-c', file, ...extra]);
}

/* A port nothing listens on: bind port 0, note it, close. */
export async function closedPort() {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address();
    await new Promise((r) => srv.close(r));
    return port;
}

// --- TLS material --------------------------------------------------------

/* Writes a test CA, a server cert for localhost/127.0.0.1 signed by it, a
 * cert for the wrong host name (wrong.example) signed by it, and a second,
 * unrelated CA, all with the openssl CLI. */
export async function makeTls(dir) {
    const f = (n) => path.join(dir, n);
    const ossl = async (...args) => {
        const r = await run('openssl', args, { cwd: dir });
        if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
    };
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    for (const ca of ['ca', 'other-ca']) {
        await ossl('req', '-x509', ...ec, '-keyout', f(`${ca}.key`), '-out', f(`${ca}.pem`), '-days', '3',
                   '-subj', `/CN=payguard ${ca} for tests`,
                   '-addext', 'basicConstraints=critical,CA:TRUE',
                   '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    }
    const leaf = async (name, san) => {
        await fs.writeFile(f(`${name}.ext`),
            `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`);
        await ossl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`),
                   '-subj', `/CN=${name}`);
        await ossl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
                   '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '3', '-extfile', f(`${name}.ext`));
    };
    await leaf('server', 'DNS:localhost,IP:127.0.0.1');
    await leaf('wrong', 'DNS:wrong.example');
    return {
        ca: f('ca.pem'), otherCa: f('other-ca.pem'),
        cert: f('server.pem'), key: f('server.key'),
        wrongCert: f('wrong.pem'), wrongKey: f('wrong.key'),
    };
}

// --- the mock rail -------------------------------------------------------

/* Starts tools/mockrail on 127.0.0.1:0. With `tls` ({cert, key, ca}) it
 * serves HTTPS and the control client trusts `ca` (host name not checked,
 * so the wrong-host rail can be inspected too). */
export async function startMockrail({ secret = randomSecret(), tls } = {}) {
    const args = ['--listen', '127.0.0.1:0', '--secret', secret, '--quiet'];
    if (tls) args.push('--tls-cert', tls.cert, '--tls-key', tls.key);
    const proc = spawn(MOCKRAIL_BIN, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(proc);
    let out = '';
    let err = '';
    proc.stderr.on('data', (d) => { err += d; });
    const exited = new Promise((r) => proc.on('exit', (code, signal) => {
        children.delete(proc);
        r({ code, signal });
    }));
    const addr = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`mockrail did not say it was listening within ${WAIT_MS} ms\nstdout: ${out}\nstderr: ${err}`)), WAIT_MS);
        proc.stdout.on('data', (d) => {
            out += d;
            const m = /mockrail listening on ([\d.]+):(\d+)/.exec(out);
            if (m) { clearTimeout(timer); resolve({ host: m[1], port: Number(m[2]) }); }
        });
        proc.on('error', (e) => { clearTimeout(timer); reject(e); });
        proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`mockrail exited ${code} before listening\n${err}`)); });
    });
    const mod = tls ? https : http;
    // One keep-alive socket for inspection, so counting the rail's
    // connections is not disturbed by our own control requests.
    const agent = new mod.Agent({ keepAlive: true, maxSockets: 1 });
    const control = (method, p) => new Promise((resolve, reject) => {
        const opts = { host: '127.0.0.1', port: addr.port, method, path: p, agent };
        if (tls) Object.assign(opts, { ca: tls.ca ? [tls.caPem] : undefined, checkServerIdentity: () => undefined, servername: 'localhost' });
        const req = mod.request(opts, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { body += d; });
            res.on('end', () => {
                clearTimeout(timer);
                if (res.statusCode !== 200) return reject(new Error(`mockrail ${method} ${p} → ${res.statusCode}: ${body}`));
                try { resolve(body ? JSON.parse(body) : null); } catch (e) { reject(new Error(`mockrail ${p}: bad JSON ${body}`)); }
            });
        });
        const timer = setTimeout(() => req.destroy(new Error(`mockrail ${method} ${p}: no answer`)), WAIT_MS);
        req.on('error', (e) => { clearTimeout(timer); reject(e); });
        req.end();
    });
    if (tls?.ca) tls.caPem = await fs.readFile(tls.ca);
    const rail = {
        proc, secret, host: addr.host, port: addr.port,
        url: `${tls ? 'https' : 'http'}://127.0.0.1:${addr.port}`,
        requests: () => control('GET', '/__mock/requests'),
        stats: () => control('GET', '/__mock/stats'),
        reset: () => control('POST', '/__mock/reset'),
        /* Resolves the rail's request count, for "the rail saw nothing". */
        count: async () => (await control('GET', '/__mock/stats')).requests,
        stderr: () => err,
        async stop() {
            agent.destroy();
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
            const timer = setTimeout(() => proc.kill('SIGKILL'), WAIT_MS);
            const r = await exited;
            clearTimeout(timer);
            return r;
        },
    };
    return rail;
}

/* Value(s) of a header in a request mockrail recorded ([[name, value], ...]). */
export function headerValues(req, name) {
    return req.headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
}
export function headerValue(req, name) {
    const v = headerValues(req, name);
    return v.length ? v[0] : undefined;
}

// --- configuration -------------------------------------------------------

/* A tiny YAML writer: maps become block mappings, arrays of scalars flow
 * sequences, arrays of maps block sequences; strings are double-quoted
 * (JSON escapes are valid YAML). */
export function toYaml(v, indent = '') {
    const scalar = (x) => (typeof x === 'string' ? JSON.stringify(x) : String(x));
    const isMap = (x) => x && typeof x === 'object' && !Array.isArray(x);
    let out = '';
    for (const [k, val] of Object.entries(v)) {
        if (val === undefined) continue;
        if (isMap(val) && Object.keys(val).length === 0) {
            out += `${indent}${k}: {}\n`;
        } else if (isMap(val)) {
            out += `${indent}${k}:\n${toYaml(val, indent + '  ')}`;
        } else if (Array.isArray(val) && val.some(isMap)) {
            out += `${indent}${k}:\n`;
            for (const item of val) {
                const body = toYaml(item, indent + '    ');
                out += `${indent}  - ${body.slice(indent.length + 4)}`;
            }
        } else if (Array.isArray(val)) {
            out += `${indent}${k}: [${val.map(scalar).join(', ')}]\n`;
        } else {
            out += `${indent}${k}: ${scalar(val)}\n`;
        }
    }
    return out;
}

export const DEFAULT_LIMITS = {
    header_bytes: 8192,
    max_headers: 50,
    body_bytes: 65536,
    header_timeout_ms: 5000,
    body_timeout_ms: 5000,
    idle_timeout_ms: 30000,
    drain_timeout_ms: 5000,
    max_connections: 2000,
    auth_failures: 20,
};

/* A plain-HTTP rail entry pointing at a mock rail. */
export function httpRail(url, extra = {}) {
    return { preset: 'stripe', upstream: url, allow_http: true, secret: 'env:MOCK_STRIPE_SECRET',
             timeout_ms: 5000, connect_timeout_ms: 2000, ...extra };
}

/* A policy that allows every operation kind with no limits: these tests are
 * about the proxy; the policy's own rules have their own tests. */
export const OPEN_POLICY = 'open';

/* The config object payguard reads; `rails` and `agents` as in payguard.yaml.
 * Agents without a `policy` get the open one (without any, payguard lets an
 * agent read only). `policies` adds named policies. */
export function configObject(dir, { limits = {}, rails, agents, orgs, policies = {} }) {
    return {
        listen: { agents: '127.0.0.1:0', admin: '127.0.0.1:0' },
        data_dir: path.join(dir, 'data'),
        limits: { ...DEFAULT_LIMITS, ...limits },
        rails,
        orgs: orgs ?? { acme: { timezone: 'UTC' } },
        agents: agents.map((a) => ('policy' in a ? a : { ...a, policy: OPEN_POLICY })),
        policies: { [OPEN_POLICY]: {}, ...policies },
    };
}

export async function writeConfig(dir, obj, name = 'payguard.yaml') {
    await fs.mkdir(obj.data_dir ?? path.join(dir, 'data'), { recursive: true });
    const file = path.join(dir, name);
    await fs.writeFile(file, toYaml(obj));
    return file;
}

// --- payguard --------------------------------------------------------------

/* Starts `payguard run -c file`; resolves once both listeners logged their
 * address. `env` adds environment variables (the rail secrets).
 * `ulimitN` raises the open-file limit through bash first. */
export async function startPayguard(file, { env = {}, ulimitN, hostsFile } = {}) {
    let cmd = ulimitN ? 'bash' : PAYGUARD_BIN;
    let args = ulimitN
        ? ['-c', `ulimit -n ${ulimitN} && exec "$0" run -c "$1"`, PAYGUARD_BIN, file]
        : ['run', '-c', file];
    if (hostsFile) {
        /* A test resolver: payguard runs in its own mount namespace where
         * /etc/hosts is the test's file (the network stays loopback only). */
        cmd = 'unshare';
        args = ['-m', 'sh', '-c', 'mount --bind "$0" /etc/hosts && exec "$1" run -c "$2"', hostsFile, PAYGUARD_BIN, file];
    }
    const proc = spawn(cmd, args, { env: { ...childEnv, ...env }, cwd: path.dirname(file),
                                    stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(proc);
    const lines = [];     // every stderr line, raw
    const events = [];    // the ones that parse as JSON objects
    const waiters = new Set();
    let partial = '';
    let exitInfo = null;
    proc.stdout.on('data', (d) => { for (const l of String(d).split('\n')) if (l) lines.push(`[stdout] ${l}`); });
    proc.stderr.on('data', (d) => {
        partial += d;
        let i;
        while ((i = partial.indexOf('\n')) >= 0) {
            const line = partial.slice(0, i);
            partial = partial.slice(i + 1);
            lines.push(line);
            try {
                const o = JSON.parse(line);
                if (o && typeof o === 'object') events.push(o);
            } catch { /* not JSON: a sanitizer report or a config error */ }
            for (const w of waiters) w();
        }
    });
    const exited = new Promise((r) => proc.on('exit', (code, signal) => {
        children.delete(proc);
        exitInfo = { code, signal };
        for (const w of waiters) w();
        r(exitInfo);
    }));

    /* Resolves the first logged event for which pred(event) holds, among
     * those logged from index `from` on. */
    const waitEvent = (pred, what, { from = 0, timeoutMs = WAIT_MS } = {}) => new Promise((resolve, reject) => {
        const check = () => {
            for (let i = from; i < events.length; i++) {
                if (pred(events[i])) { cleanup(); resolve(events[i]); return true; }
            }
            if (exitInfo) { cleanup(); reject(new Error(`payguard exited (${exitInfo.code ?? exitInfo.signal}) while waiting for ${what}\n${tail()}`)); return true; }
            return false;
        };
        const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${what}\n${tail()}`)); }, timeoutMs);
        const cleanup = () => { clearTimeout(timer); waiters.delete(check); };
        if (!check()) waiters.add(check);
    });
    const tail = (n = 40) => `--- payguard stderr (last ${n} lines) ---\n${lines.slice(-n).join('\n')}`;

    const listening = {};
    try {
        for (const which of ['agents', 'admin']) {
            const ev = await waitEvent((e) => e.msg === 'listening' && e.listener === which,
                                       `the ${which} listener`);
            listening[which] = Number(/:(\d+)$/.exec(ev.addr)[1]);
        }
    } catch (e) {
        proc.kill('SIGKILL');
        throw e;
    }

    const handle = {
        proc, file, lines, events,
        port: listening.agents,
        adminPort: listening.admin,
        tail,
        waitEvent,
        /* Request log lines (they carry a "status" and no "msg"). */
        requestLogs: () => events.filter((e) => e.msg === undefined && 'status' in e),
        exited: () => exitInfo,
        signal: (sig) => proc.kill(sig),
        /* SIGTERM and wait; resolves {code, signal}. */
        async stop(sig = 'SIGTERM', timeoutMs = WAIT_MS * 2) {
            if (!exitInfo) proc.kill(sig);
            const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
            const r = await exited;
            clearTimeout(timer);
            return r;
        },
        kill() { if (!exitInfo) proc.kill('SIGKILL'); },
        waitExit: () => exited,
        /* Resolves once every ledger request is answered: the settlement of
         * each answer already given is durable (payguard answers before it
         * is, unless ledger.settle_before_answer). */
        async settled(timeoutMs = WAIT_MS) {
            const end = Date.now() + timeoutMs;
            let last = '';
            while (!exitInfo) {
                last = await metricsText(listening.admin).catch((e) => String(e));
                if (/^payguard_ledger_unanswered 0$/m.test(last)) return;
                if (Date.now() > end) {
                    throw new Error(`the ledger still has unanswered requests after ${timeoutMs} ms: ${/^payguard_ledger_unanswered .*$/m.exec(last)?.[0] ?? last.slice(0, 200)}`);
                }
                await sleep(5);
            }
        },
    };
    live.add(handle);
    exited.then(() => live.delete(handle));
    return handle;
}

/* Every payguard this file started and that still runs. */
const live = new Set();

function metricsText(port) {
    return new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: WAIT_MS }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve(body));
        });
        req.on('timeout', () => req.destroy(new Error('/metrics timed out')));
        req.on('error', reject);
    });
}

/* Waits until every running payguard has made durable what it answered, so
 * that a reader in another process (the CLI) sees all of it. */
export async function settledAll() {
    await Promise.all([...live].map((p) => p.settled()));
}

/* A test whose failure message ends with payguard's stderr tail.
 * `getPg` returns the payguard handle (or an array of them) at failure time. */
export function testWithLogs(getPg) {
    return (name, ...rest) => {
        const fn = rest.pop();
        const opts = rest[0] ?? {};
        return test(name, opts, async (t) => {
            try {
                await fn(t);
            } catch (e) {
                const pgs = [].concat(getPg() ?? []);
                const tails = pgs.filter(Boolean).map((p) => p.tail()).join('\n');
                if (tails) {
                    t.diagnostic(tails);
                    if (e && typeof e === 'object') {
                        try { e.message = `${e.message}\n${tails}`; } catch { /* read-only */ }
                    }
                }
                throw e;
            }
        });
    };
}

/* Checks that payguard's own error answer is Stripe-shaped. */
export function stripeShapedError(assert, res, status, code) {
    const get = (n) => (res.header ? res.header(n) : res.headers[n]);
    assert.equal(res.status, status, `status (body: ${res.body})`);
    assert.ok(res.json, `JSON body, got: ${res.body}`);
    assert.equal(typeof res.json.error?.type, 'string');
    assert.equal(res.json.error.code, code);
    assert.equal(typeof res.json.error.message, 'string');
    assert.ok(res.json.error.message.length > 10, 'a message a model can act on');
    assert.match(String(get('content-type')), /^application\/json/);
    assert.equal(get('payguard-decision'), 'deny');
    assert.equal(get('payguard-reason'), code.replace(/^payguard_/, ''));
    assert.equal(get('stripe-should-retry'), status === 409 || status === 503 ? 'true' : 'false');
}

export { existsSync };

/* The usual stack for one test file: a temp dir, one agent token, one mock
 * rail and payguard in front of it (rail "stripe", agent "shopper" of org
 * "acme"). `rails(mock)` may add rails; `agents` adds agents; `limits`
 * overrides limits. Returns everything plus close(), which stops both
 * processes and reports payguard's exit. */
export async function startStack(name, { limits, rails, agents = [], policies, tls, env = {}, ulimitN } = {}) {
    const dir = await makeTmp(name);
    const token = await newToken('shopper');
    const mock = await startMockrail(tls ? { tls } : {});
    const baseRail = tls
        ? { preset: 'stripe', upstream: `https://localhost:${mock.port}`, ca_file: tls.ca,
            secret: 'env:MOCK_STRIPE_SECRET', timeout_ms: 5000, connect_timeout_ms: 2000 }
        : httpRail(mock.url);
    const extra = rails ? await rails(mock, dir) : {};
    const cfg = configObject(dir, {
        limits,
        policies,
        rails: { stripe: baseRail, ...extra },
        agents: [{ id: 'shopper', org: 'acme', token: token.hash, rails: ['stripe', ...Object.keys(extra)] }, ...agents],
    });
    const file = await writeConfig(dir, cfg);
    const pg = await startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret, ...env }, ulimitN });
    return {
        dir, token, mock, pg, cfg, file,
        auth: { Authorization: `Bearer ${token.token}` },
        async close() {
            const r = await pg.stop();
            await mock.stop();
            return r;
        },
    };
}
