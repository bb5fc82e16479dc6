// The "data directory's filesystem is full" fault: the soak puts payguard's
// data_dir on a small tmpfs of its own (root only) and fills it to the last
// byte with a filler file for a while. The mount is always taken down when
// the process exits, however it exits.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { closeSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';

const mounted = new Set();

function unmountSync(dir) {
    try {
        execFileSync('umount', [dir], { stdio: 'ignore' });
    } catch {
        try {
            execFileSync('umount', ['-l', dir], { stdio: 'ignore' }); // still busy: detach
        } catch { /* not mounted any more */ }
    }
    mounted.delete(dir);
}

process.on('exit', () => {
    for (const d of [...mounted]) unmountSync(d);
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
        for (const d of [...mounted]) unmountSync(d);
        process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 })[sig]);
    });
}

/* Mounts a tmpfs of sizeMb at dir. Resolves {ok: true}, or {ok: false, why}
 * when this process may not mount (not root, or no CAP_SYS_ADMIN). */
export async function mountTmpfs(dir, sizeMb) {
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
        return { ok: false, why: 'not running as root, so no tmpfs can be mounted' };
    }
    await fs.mkdir(dir, { recursive: true });
    try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0700`, 'tmpfs', dir],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
        return { ok: false, why: `mount -t tmpfs failed: ${String(e.stderr ?? e.message).trim()}` };
    }
    mounted.add(dir);
    return { ok: true };
}

export function unmount(dir) {
    if (mounted.has(dir)) unmountSync(dir);
}

const FILLER = '.soak-filler';

/* Writes a filler file in dir until the filesystem refuses another byte.
 * Returns the bytes written. Synchronous on purpose: nothing else should
 * grab the space we are freeing up on the way. */
export function fill(dir) {
    const fd = openSync(path.join(dir, FILLER), 'w');
    let total = 0;
    try {
        for (let chunk = 1 << 20; chunk >= 512; chunk >>= 1) {
            const buf = Buffer.alloc(chunk, 0x5a);
            for (;;) {
                try {
                    total += writeSync(fd, buf);
                } catch (e) {
                    if (e.code === 'ENOSPC') break;
                    throw e;
                }
            }
        }
    } finally {
        closeSync(fd);
    }
    return total;
}

export async function unfill(dir) {
    await fs.rm(path.join(dir, FILLER), { force: true });
}

/* Free bytes on dir's filesystem. */
export async function freeBytes(dir) {
    const s = await fs.statfs(dir);
    return s.bavail * s.bsize;
}
