// What a runtime (runc, crun) or conmon says when it fails: its own message out of its output, and an explanation for
// the failures an operator can fix.
import fs from 'node:fs/promises';

/** The runtime's own message from its stderr or --log output: JSON lines ({"level","msg"}), logfmt
 *  (level=error msg="...") or plain text. Returns the last error (errorsOnly: ignore lines that are not errors). */
export function parseRuntimeError(text: string, errorsOnly = false): string {
  let last = '';
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    if (t.startsWith('{')) {
      try {
        const j = JSON.parse(t) as { msg?: unknown; level?: unknown };
        if (typeof j.msg === 'string') {
          if (j.level === undefined || j.level === 'error' || j.level === 'fatal') last = j.msg;
          continue;
        }
      } catch {
        // not JSON after all
      }
    }
    const m = /\blevel=(\w+)\s+msg="((?:[^"\\]|\\.)*)"/.exec(t);
    if (m) {
      if (m[1] === 'error' || m[1] === 'fatal') last = unquote(m[2] ?? '');
      continue;
    }
    if (!errorsOnly) last = t;
  }
  return last;
}

const HYBRID_CGROUPS = /cgroups in hybrid mode/;

/**
 * A runtime error with the fix appended where the runtime's own words do not give it. crun (1.x) refuses to run on
 * a hybrid v1 + v2 host while the v2 hierarchy has any controller; on Debian that is hugetlb until a v1 hugetlb
 * hierarchy is mounted. `controllersFile` is read to name the controllers (tests point it elsewhere).
 */
export async function explainRuntimeError(message: string, controllersFile = '/sys/fs/cgroup/unified/cgroup.controllers'): Promise<string> {
  if (!HYBRID_CGROUPS.test(message)) return message;
  const controllers = (await fs.readFile(controllersFile, 'utf8').catch(() => '')).trim().split(/\s+/).filter((x) => /^[a-z_]+$/.test(x));
  const mountCmd = (ctl: string): string => `mkdir -p /sys/fs/cgroup/${ctl} && mount -t cgroup -o ${ctl} cgroup /sys/fs/cgroup/${ctl}`;
  const named = controllers.length ? ` (now: ${controllers.join(', ')})` : '';
  const fixes = (controllers.length ? controllers : ['hugetlb']).map(mountCmd).join('; ');
  return (
    `${message} — crun does not run containers while the cgroup v2 hierarchy (/sys/fs/cgroup/unified) holds controllers${named}; ` +
    `mount each as a cgroup v1 hierarchy (${fixes}), or use the runc handler`
  );
}

function unquote(s: string): string {
  try {
    return JSON.parse(`"${s}"`) as string;
  } catch {
    return s.replace(/\\(.)/g, '$1');
  }
}
