// What /proc says about a running payguard: its memory, and its open
// descriptors with every TCP socket told apart by where it leads (the agent
// or admin listener, the rail, a listening socket), so a leak shows as a
// count that does not come back when the process is idle.
import fs from 'node:fs/promises';

/* VmRSS, RssAnon (heap, stacks: where leaks live), RssFile (mapped files:
 * LMDB's map grows with the ledger by design) and VmHWM, in KiB. */
export async function memory(pid) {
    const s = await fs.readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
    return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), hwm: kb('VmHWM') };
}

/* inode → {local, remote, state} for every TCP socket of pid's namespace. */
async function tcpSockets(pid) {
    const out = new Map();
    for (const f of ['tcp', 'tcp6']) {
        let text;
        try {
            text = await fs.readFile(`/proc/${pid}/net/${f}`, 'utf8');
        } catch {
            continue;
        }
        for (const line of text.split('\n').slice(1)) {
            const c = line.trim().split(/\s+/);
            if (c.length < 10) continue;
            const port = (a) => parseInt(a.split(':')[1], 16);
            out.set(c[9], { local: port(c[1]), remote: port(c[2]), state: parseInt(c[3], 16) });
        }
    }
    return out;
}

const TCP_LISTEN = 0x0a;

/* Counts pid's descriptors: `agent`/`admin` (accepted on those ports),
 * `rail` (connected to the rail's port), `listen`, `otherTcp`, `otherSock`
 * (unix, netlink...), and `nonSocket` with their targets (files, pipes,
 * eventfd, epoll) so two idle moments can be compared name by name. */
export async function descriptors(pid, { agentPort, adminPort, railPort }) {
    const names = await fs.readdir(`/proc/${pid}/fd`);
    const tcp = await tcpSockets(pid);
    const r = { total: 0, agent: 0, admin: 0, rail: 0, listen: 0, otherTcp: 0, otherSock: 0,
                nonSocket: 0, targets: {} };
    for (const n of names) {
        let target;
        try {
            target = await fs.readlink(`/proc/${pid}/fd/${n}`);
        } catch {
            continue; // closed while we looked
        }
        r.total++;
        const m = /^socket:\[(\d+)\]$/.exec(target);
        if (!m) {
            r.nonSocket++;
            const key = target.replace(/\[\d+\]$/, '[]').replace(/^pipe:.*/, 'pipe');
            r.targets[key] = (r.targets[key] ?? 0) + 1;
            continue;
        }
        const s = tcp.get(m[1]);
        if (!s) r.otherSock++;
        else if (s.state === TCP_LISTEN) r.listen++;
        else if (s.local === agentPort) r.agent++;
        else if (s.local === adminPort) r.admin++;
        else if (s.remote === railPort) r.rail++;
        else r.otherTcp++;
    }
    return r;
}

/* Soft and hard RLIMIT_NOFILE of pid. */
export async function fdLimit(pid) {
    const s = await fs.readFile(`/proc/${pid}/limits`, 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(s);
    return m ? { soft: Number(m[1]) || Infinity, hard: Number(m[2]) || Infinity } : null;
}
