// payguard soak: real payguard and mockrail processes under a steady, seeded
// mix of agent traffic for SOAK_SECONDS (default 600), with faults injected
// all along: the rail resets, answers 500, answers after 40 s or answers
// garbage; clients leave mid-request and mid-response or trickle bytes; the
// data directory's filesystem fills up; SIGHUP reloads; kill -9 and restart.
// Invariants are checked at idle moments in every process lifetime and at the
// end; the figures are printed and the exit status is non-zero when any
// invariant failed. docs/SOAK.md says what runs and how to replay a seed.
//
//   SOAK_SECONDS=600 SOAK_MODE=release|asan SOAK_SEED=N SOAK_RATE=20 node tests/soak/soak.mjs
import path from 'node:path';
import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MODE = process.env.SOAK_MODE ?? 'release';
if (!['release', 'asan'].includes(MODE)) {
    console.error(`soak: SOAK_MODE must be release or asan, not ${MODE}`);
    process.exit(2);
}
// The integration harness reads these when it loads.
process.env.PAYGUARD_MODE = MODE;
process.env.PAYGUARD_BIN ??= path.join(repo, 'build', MODE, 'payguard');
process.env.MOCKRAIL_BIN ??= path.join(repo, 'build', MODE, 'mockrail');
// Smaller quarantine under ASan, so memory growth stays readable.
process.env.ASAN_OPTIONS ??= 'detect_leaks=1:abort_on_error=0:exitcode=86:quarantine_size_mb=16';

const H = await import('../integration/lib/harness.mjs');
const L = await import('../integration/lib/ledger.mjs');
const { Mix } = await import('./lib/mix.mjs');
const P = await import('./lib/procfs.mjs');
const D = await import('./lib/diskfull.mjs');

const num = (v, d) => (v === undefined || v === '' ? d : Number(v));
const SECONDS = num(process.env.SOAK_SECONDS, 600);
const RATE = num(process.env.SOAK_RATE, 20);
const SEED = num(process.env.SOAK_SEED, Date.now() % 2147483647) >>> 0;
if (!(SECONDS >= 30) || !(RATE > 0)) {
    console.error('soak: SOAK_SECONDS must be at least 30 and SOAK_RATE positive');
    process.exit(2);
}
const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

// Every interval scales with the run, so a short run still sees each fault.
const KILL_EVERY = num(process.env.SOAK_LIFETIME, clamp(SECONDS / 10, 30, 60)) * 1000; // one process lifetime
const HUP_EVERY = clamp(SECONDS / 60, 2, 10) * 1000;
const RAIL_TIMEOUT = clamp(KILL_EVERY / 4, 5000, 15000);      // below the rail's 40 s
const SLOW_TIMEOUT = clamp(Math.round(KILL_EVERY / 12), 2000, 5000); // header/body timeouts
const WARM = clamp(KILL_EVERY / 4, 10000, 15000);             // then idle moment A
const IDLE_B = KILL_EVERY - 6000;                             // idle moment B
const QUIESCE_CAP = 4000;                                     // wait for zero in flight
const DISK_FULL_MS = clamp(KILL_EVERY / 10, 4000, 6000);
const POOL = 8;                                               // rail pool_size
const LIFETIMES = Math.ceil(SECONDS * 1000 / KILL_EVERY);
const DISK_LIVES = new Set(LIFETIMES >= 7 ? [1, 4, 7] : [Math.min(1, LIFETIMES - 1)]);
const SWEEP_MS = clamp(SECONDS * 100, 15000, 60000);
const RSS_LIMIT = 0.05;

const log = (...a) => console.log(...a);
const t0 = Date.now();
const at = () => `[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s]`;
const sleep = H.sleep;

log(`soak: seed ${SEED}, mode ${MODE}, ${SECONDS} s at ${RATE} actions/s (replay: SOAK_SEED=${SEED} SOAK_SECONDS=${SECONDS} SOAK_MODE=${MODE} make soak)`);
log(`soak: ${LIFETIMES} payguard lifetimes of ${KILL_EVERY / 1000} s (kill -9 between), SIGHUP every ${HUP_EVERY / 1000} s, `
    + `rail timeout ${RAIL_TIMEOUT / 1000} s, header/body timeouts ${SLOW_TIMEOUT / 1000} s, disk full in lifetimes ${[...DISK_LIVES].join(',')}`);

// --- invariants -------------------------------------------------------------

const checks = {};            // name → {passed, failed}
const failures = [];
function invariant(name, ok, detail) {
    const c = (checks[name] ??= { passed: 0, failed: 0 });
    if (ok) {
        c.passed++;
        return true;
    }
    c.failed++;
    if (c.failed <= 5) {
        failures.push(`${name}: ${detail}`);
        log(`${at()} INVARIANT FAILED ${name}: ${String(detail).slice(0, 400)}`);
    }
    return false;
}

// --- set-up -------------------------------------------------------------------

const dir = process.env.SOAK_TMP ? await fs.mkdtemp(path.join(process.env.SOAK_TMP, 'soak-')) : await H.makeTmp('soak');
const dataDir = path.join(dir, 'data');
const tmpfs = await D.mountTmpfs(dataDir, SECONDS >= 300 ? 512 : 256);
if (!tmpfs.ok) log(`soak: SKIPPING the disk-full fault: ${tmpfs.why}`);

const mock = await H.startMockrail();
const agents = ['shopper', 'bulk', 'cap0', 'cap1', 'cap2', 'cap3', 'history'];
const tokens = {};
const hashes = {};
for (const a of agents) {
    const t = await H.newToken(a);
    tokens[a] = t.token;
    hashes[a] = t.hash;
}

// Calendar windows start at local midnight: put the org where it is about
// noon now, so no run of under 11 hours sees a window roll over.
const offset = 12 - new Date().getUTCHours();
const zone = offset === 0 ? 'UTC' : offset > 0 ? `Etc/GMT-${offset}` : `Etc/GMT+${-offset}`;

// Each capped agent pays during a quarter of the run, with a daily limit it
// reaches about half-way through its quarter: limits are raced all along.
const weightOfCapped = 14 / 94;
const capPays = RATE * weightOfCapped * (SECONDS / 4);
const CAP_LIMIT = Math.max(10000, Math.round(capPays * 1050 * 0.5));
const caps = ['cap0', 'cap1', 'cap2', 'cap3'];
let runStart = null; // set once the run proper begins
const capAgent = () => caps[Math.min(3, Math.floor((Date.now() - (runStart ?? Date.now())) / (SECONDS * 250)))];
const money = (minor) => (minor / 100).toFixed(2);

const agentPort = await H.closedPort();
const adminPort = await H.closedPort();
let idleToggle = false;
async function writeSoakConfig() {
    const cfg = H.configObject(dir, {
        limits: { header_timeout_ms: SLOW_TIMEOUT, body_timeout_ms: SLOW_TIMEOUT,
                  // toggled by every reload, so each SIGHUP loads a changed file
                  idle_timeout_ms: idleToggle ? 30001 : 30000 },
        rails: { stripe: H.httpRail(mock.url, { timeout_ms: RAIL_TIMEOUT, connect_timeout_ms: 2000, pool_size: POOL }) },
        orgs: { acme: { timezone: zone } },
        policies: {
            shop: { currency: 'usd', per_transaction: '500.00', daily: '1000000.00', approval_above: '250.00',
                    merchants: { deny: ['acct_1Blocked*'] } },
            capped: { currency: 'usd', per_transaction: '50.00', daily: money(CAP_LIMIT),
                      merchants: { allow: ['acct_1Trusted*'] } },
            bulk: { currency: 'usd', daily: '1000000.00' },
        },
        agents: agents.map((a) => ({ id: a, org: 'acme', token: hashes[a], rails: ['stripe'],
                                     policy: { shopper: 'shop', bulk: 'bulk', history: H.OPEN_POLICY }[a] ?? 'capped' })),
    });
    cfg.data_dir = dataDir;
    cfg.listen = { agents: `127.0.0.1:${agentPort}`, admin: `127.0.0.1:${adminPort}` };
    return H.writeConfig(dir, cfg);
}
const file = await writeSoakConfig();
log(`soak: org zone ${zone}, capped agents' daily limit ${money(CAP_LIMIT)} usd, data_dir ${dataDir}${tmpfs.ok ? ' (tmpfs)' : ''}`);

// --- payguard lifetimes --------------------------------------------------------

let pg = null;
const lifetimes = [];          // {n, pid, startedAt, A, B (idle measures), peakRss, peakFds, requests}
let life = null;
const stderrBad = [];          // non-JSON stderr lines: sanitizer reports, crashes
const logCounts = {};          // "level msg" → n, for warnings and errors payguard logged

function scanLines(p) {
    for (; p.scanned < p.lines.length; p.scanned++) {
        const line = p.lines[p.scanned];
        let o = null;
        try { o = JSON.parse(line); } catch { /* below */ }
        if (!o || typeof o !== 'object') {
            if (line.startsWith('[stdout] ')) continue;
            if (stderrBad.length < 200) stderrBad.push(line);
            continue;
        }
        if (o.level === 'warn' || o.level === 'error' || o.level === 'fatal') {
            const k = `${o.level} ${o.msg}`;
            logCounts[k] = (logCounts[k] ?? 0) + 1;
        }
    }
}

async function startPg() {
    let lastErr;
    for (let i = 0; i < 40; i++) {
        try {
            const p = await H.startPayguard(file, { env: { MOCK_STRIPE_SECRET: mock.secret } });
            p.scanned = 0;
            p.deliberate = false;
            p.waitExit().then((e) => {
                if (!p.deliberate) {
                    scanLines(p);
                    invariant('no crash', false, `payguard pid ${p.proc.pid} exited on its own: ${JSON.stringify(e)}\n${p.tail(60)}`);
                }
            });
            return p;
        } catch (e) {
            lastErr = e; // the port may be held for a moment after a kill
            await sleep(250);
        }
    }
    throw lastErr;
}

/* mdb_copy -c of the data file (payguard stopped), copied back in place. */
async function compactLedger() {
    const tmp = await fs.mkdtemp(path.join(dir, 'compact-'));
    const r = await new Promise((resolve) => execFile('mdb_copy', ['-c', dataDir, tmp], (err, so, se) => resolve({ err, se })));
    if (r.err) {
        await fs.rm(tmp, { recursive: true, force: true });
        return `not compacted (mdb_copy: ${String(r.se || r.err.message).trim().slice(0, 120)})`;
    }
    const before = (await fs.stat(path.join(dataDir, 'data.mdb'))).size;
    await fs.rm(path.join(dataDir, 'data.mdb'));
    await fs.copyFile(path.join(tmp, 'data.mdb'), path.join(dataDir, 'data.mdb'));
    await fs.chmod(path.join(dataDir, 'data.mdb'), 0o600);
    const after = (await fs.stat(path.join(dataDir, 'data.mdb'))).size;
    await fs.rm(tmp, { recursive: true, force: true });
    return `compacted from ${(before / 1048576).toFixed(1)} to ${(after / 1048576).toFixed(1)} MiB`;
}

async function measure(p) {
    const pid = p.proc.pid;
    const mem = await P.memory(pid);
    const fds = await P.descriptors(pid, { agentPort, adminPort, railPort: mock.port });
    return { mem, fds };
}

let quiescing = false;
/* Stops new traffic, waits for nothing in flight, closes our idle
 * connections and measures payguard; then lets traffic go again. */
async function quiesce(mix, label) {
    quiescing = true;
    mix.pause();
    const end = Date.now() + QUIESCE_CAP;
    while (mix.inflight > 0 && Date.now() < end) await sleep(25);
    const idle = mix.inflight === 0;
    mix.dropConnections();
    await sleep(400);
    let m = null;
    if (idle && pg && !pg.exited()) {
        try { m = await measure(pg); } catch { m = null; }
    }
    mix.resume();
    quiescing = false;
    if (!m) log(`${at()} idle moment ${label}: not idle (in flight: ${JSON.stringify(mix.inflightBy)}), not measured`);
    return m;
}

/* The descriptor invariants at an idle moment, against this lifetime's
 * first idle moment (same files, pipes and listeners; no agent connection;
 * rail connections within the pool). */
function checkFds(m, base, label) {
    const f = m.fds;
    invariant('no agent connection left open when idle', f.agent === 0 && f.admin === 0,
              `${label}: ${f.agent} agent and ${f.admin} admin sockets open with no client`);
    invariant('rail connections within the pool when idle', f.rail <= POOL,
              `${label}: ${f.rail} rail sockets, pool_size ${POOL}`);
    if (base) {
        const same = JSON.stringify(Object.entries(f.targets).sort()) === JSON.stringify(Object.entries(base.fds.targets).sort())
            && f.listen === base.fds.listen && f.otherSock === base.fds.otherSock && f.otherTcp === 0;
        invariant('descriptor count back to baseline when idle', same,
                  `${label}: ${JSON.stringify(f)} vs baseline ${JSON.stringify(base.fds)}`);
    }
}

/* What the rail charged: GET /__mock/charges. */
async function railCharges() {
    const r = await fetch(`${mock.url}/__mock/charges`);
    return r.json();
}

/* Sums what the rail charged per agent (through the derived keys). */
function chargedByAgent(charges, byDerived) {
    const sum = {};
    for (const c of charges) {
        const rec = byDerived.get(c.idempotency_key);
        const a = rec?.agent ?? '?';
        sum[a] = (sum[a] ?? 0) + c.amount;
    }
    return sum;
}

function derivedIndex(mix) {
    const m = new Map();
    for (const rec of mix.book.values()) m.set(L.derivedKey(rec.agent, rec.key), rec);
    return m;
}

async function limitChecks(mix, when) {
    const charges = await railCharges();
    const sums = chargedByAgent(charges, derivedIndex(mix));
    for (const a of caps) {
        invariant('nothing charged past a limit', (sums[a] ?? 0) <= CAP_LIMIT,
                  `${when}: the rail charged ${money(sums[a] ?? 0)} for ${a}, daily limit ${money(CAP_LIMIT)}`);
    }
    return { charges, sums };
}

async function auditVerify(when) {
    const v = await L.auditVerify(file);
    invariant('payguard audit verify passes', v.code === 0, `${when}: ${v.text.slice(0, 600)}`);
    return v;
}

// --- the run ------------------------------------------------------------------

const mix = new Mix({ port: agentPort, tokens, rnd: L.prng(SEED), seed: SEED, rate: RATE,
                      railTimeoutMs: RAIL_TIMEOUT, waitMs: H.WAIT_MS, capAgent, invariant });
const diskWindows = [];
let reloadsSent = 0;
let reloadsLogged = 0;
const slowResults = [];
const pending = new Set();     // fault tasks running in the background
const bg = (p) => { pending.add(p); p.finally(() => pending.delete(p)); };

function sum503() {
    let n = 0;
    for (const k of Object.values(mix.requests)) for (const [o, c] of Object.entries(k)) if (o.startsWith('503:')) n += c;
    return n;
}

/* Fills the data directory's filesystem for DISK_FULL_MS, and longer (up to
 * capMs) until payguard has had to refuse something: LMDB first reuses the
 * free pages its file has, so bursts of payments are sent meanwhile until
 * records need pages the file does not have. */
async function diskFull(capMs) {
    mix.fault('disk_full');
    const before = sum503();
    const t = Date.now();
    const bytes = D.fill(dataDir);
    const logged = () => pg.events.filter((e) => e.level === 'error').length;
    const errorsBefore = logged();
    while (Date.now() - t < capMs) {
        await Promise.all(Array.from({ length: 20 }, () => mix.track(() => mix.payShopper(), 'disk_full_burst')));
        if (Date.now() - t >= DISK_FULL_MS && (sum503() > before || logged() > errorsBefore)) break;
        await sleep(250);
    }
    await D.unfill(dataDir);
    diskWindows.push({ at: Math.round((t - t0) / 1000), ms: Date.now() - t, filledMiB: +(bytes / 1048576).toFixed(1),
                       refused503: sum503() - before });
    log(`${at()} disk full for ${((Date.now() - t) / 1000).toFixed(1)} s: ${sum503() - before} requests refused with 503 meanwhile`);
}

async function schedRailDrops() {
    // The next three rail requests, whatever they are, are reset unanswered.
    mix.fault('rail_drop_scheduled', 3);
    await fetch(`${mock.url}/__mock/faults?kind=drop&count=3`, { method: 'POST' });
}

const hup = setInterval(async () => {
    if (!runStart || !pg || pg.exited() || quiescing) return;
    idleToggle = !idleToggle;
    await writeSoakConfig();
    if (!pg || pg.exited()) return;
    pg.signal('SIGHUP');
    reloadsSent++;
    mix.fault('sighup');
}, HUP_EVERY);

const sampler = setInterval(async () => {
    if (!pg || pg.exited() || !life) return;
    try {
        const m = await P.memory(pg.proc.pid);
        life.peakRss = Math.max(life.peakRss, m.rss);
        const fds = (await fs.readdir(`/proc/${pg.proc.pid}/fd`)).length;
        life.peakFds = Math.max(life.peakFds, fds);
    } catch { /* exiting */ }
}, 1000);

pg = await startPg();

// A ledger with a history, as in production: payguard's in-memory indexes
// (idempotency keys, rail objects) are then sized for it at start, and the
// memory measured in each lifetime is not their first doublings.
const PREFILL_S = MODE === 'asan' ? 5 : 6;
const prefill = await new Promise((resolve) => {
    const bin = path.join(repo, 'build', 'release', 'bench', 'loadgen');
    execFile(bin, ['-c', '32', '-w', '0', '-d', String(PREFILL_S), '-m', 'POST', '-p', '/v1/payment_intents',
                   '-b', 'amount=100&currency=usd&confirm=true&payment_method=pm_card_visa', '--unique-idempotency', '-q',
                   '-H', `Authorization: Bearer ${tokens.history}`, `127.0.0.1:${agentPort}`],
             { timeout: (PREFILL_S + 30) * 1000 }, (err, stdout) => {
        try { resolve(JSON.parse(stdout)); } catch { resolve({ ok: 0, error: String(err?.message ?? stdout).slice(0, 200) }); }
    });
});
log(`soak: the ledger starts with ${prefill.ok ?? 0} payments of agent history (${PREFILL_S} s of loadgen${prefill.error ? `: ${prefill.error}` : ''})`);
pg.deliberate = true;
await pg.stop();
await mock.reset(); // what the rail charged from here on is the run's
// Compacted, as a restored backup would be: with no free pages left in the
// file, new records need new disk space, so the disk-full fault bites.
const compacted = await compactLedger();
log(`soak: ledger ${compacted}`);
pg = await startPg(); // the indexes are rebuilt from it, as after any restart
runStart = Date.now();
mix.start();
const tEnd = runStart + SECONDS * 1000;
let firstBase = null;

for (let n = 0; n < LIFETIMES; n++) {
    const ls = Date.now();
    const lend = Math.min(ls + KILL_EVERY, tEnd);
    const last = n === LIFETIMES - 1 || lend >= tEnd;
    life = { n, pid: pg.proc.pid, startedAt: Math.round((ls - t0) / 1000), peakRss: 0, peakFds: 0,
             A: null, B: null, requests: 0 };
    lifetimes.push(life);
    const reqAtStart = Object.values(mix.requests).reduce((s, k) => s + Object.values(k).reduce((a, b) => a + b, 0), 0);
    const until = async (t) => { while (Date.now() < t) await sleep(Math.min(200, t - Date.now())); };

    // Slow clients first: they are closed before idle moment A.
    bg(mix.warmup());
    if (ls + 1000 + SLOW_TIMEOUT * 2 < Math.min(ls + WARM, lend) - 500) {
        bg((async () => {
            await sleep(1000);
            slowResults.push(...await mix.slowloris(6, Math.max(200, SLOW_TIMEOUT / 8), SLOW_TIMEOUT * 3));
        })());
    }
    await until(Math.min(ls + WARM, lend));
    life.A = await quiesce(mix, `A of lifetime ${n}`);
    if (life.A) {
        checkFds(life.A, null, `lifetime ${n} A`);
        if (firstBase) {
            invariant('descriptor count back to baseline when idle', life.A.fds.nonSocket === firstBase.fds.nonSocket,
                      `lifetime ${n} A: ${life.A.fds.nonSocket} non-socket fds, first lifetime ${firstBase.fds.nonSocket}`);
        } else {
            firstBase = life.A;
        }
    }
    const roomFor = (offset, len) => ls + WARM + offset + len < Math.min(ls + IDLE_B, lend) - 500;
    if (roomFor(1500, RAIL_TIMEOUT + 1000)) bg((async () => { await sleep(1500); await mix.railSlow(); })());
    if (tmpfs.ok && DISK_LIVES.has(n) && roomFor(3000, DISK_FULL_MS)) {
        const cap = Math.min(ls + IDLE_B, lend) - 1500 - (Date.now() + 3000);
        bg((async () => { await sleep(3000); await diskFull(Math.max(DISK_FULL_MS, cap)); })());
    }
    if (roomFor(5000, 1000)) bg((async () => { await sleep(5000); await schedRailDrops(); })());

    await until(Math.min(ls + IDLE_B, lend));
    if (!last || lend - ls >= IDLE_B) {
        life.B = await quiesce(mix, `B of lifetime ${n}`);
        if (life.B && life.A) {
            checkFds(life.B, life.A, `lifetime ${n} B`);
            // Under ASan the quarantine and shadow memory grow for minutes by
            // design: reported, and LeakSanitizer at the clean stop is the check.
            const g = (life.B.mem.anon - life.A.mem.anon) / life.A.mem.anon;
            if (MODE === 'release') {
                invariant('RSS growth under 5% after warm-up', g < RSS_LIMIT,
                          `lifetime ${n}: anonymous RSS ${life.A.mem.anon} KiB at A, ${life.B.mem.anon} KiB at B (+${(g * 100).toFixed(1)}%)`);
            }
        }
        await auditVerify(`lifetime ${n}`);
        await limitChecks(mix, `lifetime ${n}`);
    }
    scanLines(pg);
    await until(lend);
    life.requests = Object.values(mix.requests).reduce((s, k) => s + Object.values(k).reduce((a, b) => a + b, 0), 0) - reqAtStart;
    const fmtMem = (m) => (m ? `${(m.mem.rss / 1024).toFixed(1)}/${(m.mem.anon / 1024).toFixed(1)} MiB` : 'n/a');
    log(`${at()} lifetime ${n} (pid ${life.pid}): ${life.requests} requests, RSS/anon at A ${fmtMem(life.A)}, at B ${fmtMem(life.B)}, `
        + `fds at A ${life.A?.fds.total ?? 'n/a'}, at B ${life.B?.fds.total ?? 'n/a'}, peak RSS ${(life.peakRss / 1024).toFixed(1)} MiB`);
    if (last) break;
    // Under load: a kill lands wherever requests happen to be.
    reloadsLogged += pg.events.filter((e) => e.msg === 'config reloaded').length;
    pg.deliberate = true;
    pg.kill();
    const e = await pg.waitExit();
    invariant('no crash', e.signal === 'SIGKILL', `the kill -9'd payguard exited with ${JSON.stringify(e)}`);
    mix.fault('kill9');
    pg = await startPg();
}

// --- the end ----------------------------------------------------------------------

clearInterval(hup);
log(`${at()} stopping the traffic; retrying every key still without an answer`);
mix.pause();
await Promise.all([...pending]);
const unresolved = await mix.sweep(Date.now() + SWEEP_MS);
await mix.stop();
clearInterval(sampler);
invariant('every payment key resolved', unresolved.length === 0,
          `${unresolved.length} keys without a definite answer: ${unresolved.slice(0, 5).map((r) => `${r.key} (${r.attempts} attempts)`).join(', ')}`);
for (const u of mix.unexpected.slice(0, 40)) invariant('answers as expected', false, u);
if (mix.unexpected.length === 0) invariant('answers as expected', true);

// What the rail charged against what the agents were told and the ledger holds.
const byDerived = derivedIndex(mix);
const { charges, sums } = await limitChecks(mix, 'end');
const seenKeys = new Map();
for (const c of charges) {
    const rec = byDerived.get(c.idempotency_key);
    invariant('the rail charged only what agents asked for', !!rec, `charge ${c.id} under key ${c.idempotency_key} matches no agent request`);
    if (!rec) continue;
    seenKeys.set(c.idempotency_key, (seenKeys.get(c.idempotency_key) ?? 0) + 1);
    invariant('every rail charge was answered 200 to its agent', rec.outcome === 'paid' && rec.id === c.id,
              `charge ${c.id} (${rec.kind} ${rec.key}): the agent's answer was ${rec.outcome} ${rec.id}`);
    if (rec.agent === 'shopper') {
        invariant('nothing charged past a limit', c.amount <= 25000,
                  `shopper was charged ${money(c.amount)} (per-transaction 500.00, approval above 250.00)`);
    }
}
for (const [k, n] of seenKeys) invariant('one charge per key', n === 1, `${n} charges under ${k}`);

// Every charge is in the ledger: its key replays the agent's answer, byte for byte.
const paid = [...byDerived.entries()].filter(([k]) => seenKeys.has(k)).map(([, r]) => r);
let replayed = 0;
for (let i = 0; i < paid.length; i += 16) {
    await Promise.all(paid.slice(i, i + 16).map(async (rec) => {
        let res = null;
        try {
            res = await L.pay(agentPort, tokens[rec.agent], rec.body, rec.key);
        } catch { /* below */ }
        replayed++;
        invariant('every rail charge is in the ledger', res?.status === 200 && res.body === rec.resBody,
                  `${rec.key}: replay ${res?.status} ${res?.body?.slice(0, 160)}; first answer ${rec.resBody?.slice(0, 160)}`);
    }));
}
const ledgerRows = {};
for (const a of agents) {
    const show = await L.ledgerShow(file, a);
    const day = L.parseWindow(show.stdout, 'daily');
    const counted = day ? (day.posted ?? 0) + (day.pending ?? 0) : null;
    ledgerRows[a] = day ? { posted: day.posted, pending: day.pending } : show.text.slice(0, 300);
    invariant('every rail charge is in the ledger', counted !== null && counted >= (sums[a] ?? 0),
              `${a}: the ledger counts ${counted} today, the rail charged ${sums[a] ?? 0}: ${day?.line ?? show.text.slice(0, 300)}`);
    if (caps.includes(a)) {
        invariant('nothing charged past a limit', counted !== null && counted <= CAP_LIMIT,
                  `${a}: the ledger counts ${counted} against a limit of ${CAP_LIMIT}`);
    }
}

pg.deliberate = true;
const stop = await pg.stop();
scanLines(pg);
reloadsLogged += pg.events.filter((e) => e.msg === 'config reloaded').length;
invariant('no crash', stop.signal === null && stop.code === 0,
          `SIGTERM at the end: exit ${JSON.stringify(stop)} (86: a leak under ASan)\n${pg.tail(60)}`);
await auditVerify('end');
const railStats = await mock.stats();
const mockStop = await mock.stop();
invariant('no crash', mockStop.code === 0 || mockStop.signal === 'SIGTERM', `mockrail exited ${JSON.stringify(mockStop)}\n${mock.stderr().slice(-2000)}`);
const sanitizer = stderrBad.filter((l) => /Sanitizer|runtime error|SUMMARY:|==\d+==/.test(l));
invariant('no sanitizer report', sanitizer.length === 0, sanitizer.slice(0, 20).join('\n'));
invariant('nothing but JSON on payguard stderr', stderrBad.length === 0, stderrBad.slice(0, 10).join('\n'));

// --- figures -----------------------------------------------------------------------

const lines = [];
const out = (s = '') => lines.push(s);
out(`== soak figures: seed ${SEED}, mode ${MODE}, ${SECONDS} s at ${RATE} actions/s, ${((Date.now() - t0) / 1000).toFixed(0)} s wall`);
out(`ledger history before the run: ${prefill.ok ?? 0} payments of agent history`);
out(`payguard lifetimes ${lifetimes.length} (kill -9 ${mix.faults.kill9 ?? 0}), reloads ${reloadsSent} sent / ${reloadsLogged} logged "config reloaded"`);
out('requests served, by kind and outcome:');
let total = 0;
for (const [kind, o] of Object.entries(mix.requests).sort()) {
    const n = Object.values(o).reduce((a, b) => a + b, 0);
    total += n;
    out(`  ${kind.padEnd(26)} ${String(n).padStart(6)}  ${Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
}
out(`  ${'total'.padEnd(26)} ${String(total).padStart(6)}`);
out('faults injected, by kind:');
for (const [k, v] of Object.entries(mix.faults).sort()) out(`  ${k.padEnd(26)} ${String(v).padStart(6)}`);
if (!tmpfs.ok) out(`  disk_full                  skipped: ${tmpfs.why}`);
out(`  seen by the rail: ${Object.entries(railStats.faults).map(([k, v]) => `${k} ${v}`).join(', ')} (of ${railStats.requests} requests)`);
out(`payment keys ${mix.book.size}: ${Object.entries([...mix.book.values()].reduce((m, r) => { m[r.outcome ?? 'unresolved'] = (m[r.outcome ?? 'unresolved'] ?? 0) + 1; return m; }, {})).map(([k, v]) => `${k} ${v}`).join(', ')}; `
    + `retried ${[...mix.book.values()].filter((r) => r.attempts > 1).length}`);
out(`rail charges ${charges.length} (${Object.entries(sums).map(([a, s]) => `${a} ${money(s)}`).join(', ')}); replayed at the end ${replayed}`);
out(`ledger today (posted/pending): ${Object.entries(ledgerRows).map(([a, r]) => (typeof r === 'string' ? `${a} ?` : `${a} ${money(r.posted ?? 0)}/${money(r.pending ?? 0)}`)).join(', ')}; capped limit ${money(CAP_LIMIT)}`);
out('memory and descriptors per lifetime (RSS/anonymous MiB at idle moments A and B, growth of anonymous):');
for (const l of lifetimes) {
    const f = (m) => (m ? `${(m.mem.rss / 1024).toFixed(1)}/${(m.mem.anon / 1024).toFixed(1)}` : '-');
    const g = l.A && l.B ? `${(((l.B.mem.anon - l.A.mem.anon) / l.A.mem.anon) * 100).toFixed(1)}%` : '-';
    out(`  #${l.n} pid ${l.pid} from ${l.startedAt}s: ${l.requests} requests; A ${f(l.A)}, B ${f(l.B)}, growth ${g}; `
        + `peak RSS ${(l.peakRss / 1024).toFixed(1)}; fds at A ${l.A?.fds.total ?? '-'}, at B ${l.B?.fds.total ?? '-'}, peak ${l.peakFds}`);
}
if (diskWindows.length) out(`disk full windows: ${diskWindows.map((w) => `at ${w.at}s for ${w.ms} ms (filled ${w.filledMiB} MiB): ${w.refused503} refused with 503`).join('; ')}`);
if (slowResults.length) {
    const closed = slowResults.filter((r) => r.how === 'closed_by_payguard').map((r) => r.ms).sort((a, b) => a - b);
    out(`slow clients: ${slowResults.length}, closed by payguard ${closed.length} (after ${closed.length ? `${(closed[0] / 1000).toFixed(1)}-${(closed[closed.length - 1] / 1000).toFixed(1)}` : '-'} s; timeout ${SLOW_TIMEOUT / 1000} s)`);
}
if (Object.keys(logCounts).length) out(`payguard warnings and errors logged: ${Object.entries(logCounts).map(([k, v]) => `"${k}" ${v}`).join(', ')}`);
let passed = 0;
let failed = 0;
out('invariant checks:');
for (const [name, c] of Object.entries(checks).sort()) {
    passed += c.passed;
    failed += c.failed;
    out(`  ${name.padEnd(52)} ${String(c.passed).padStart(6)} passed ${c.failed ? `${c.failed} FAILED` : ''}`);
}
out(`${passed} invariant checks passed, ${failed} failed`);
if (failures.length) {
    out('failures:');
    for (const f of failures) out(`  ${f.slice(0, 1500)}`);
}
out(failed ? `soak: FAIL (replay: SOAK_SEED=${SEED} SOAK_SECONDS=${SECONDS} SOAK_MODE=${MODE} make soak)` : 'soak: PASS');
log(lines.join('\n'));
if (process.env.SOAK_REPORT) await fs.writeFile(process.env.SOAK_REPORT, `${lines.join('\n')}\n`);
D.unmount(dataDir);
await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
process.exit(failed ? 1 : 0);
