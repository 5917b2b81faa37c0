// Keep-alive HTTP(S) agents for registry connections, shared by identical TLS material, and that material itself: per
// host, CAs and a client certificate from a certs.d directory (docker's layout), re-read every few seconds.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { BerthError } from '../common/errors';

export interface TlsMaterial {
  ca: string[];
  cert?: Buffer;
  key?: Buffer;
  /** Content hash: agents are shared by identical material. */
  id: string;
}

const CERTS_TTL_MS = 5_000;

/** `<dir>/<host[:port]>/`: *.crt are CAs (added to the system roots), *.cert with the matching *.key a client pair. */
function loadCertsDir(dir: string, host: string): Promise<TlsMaterial | undefined> {
  // Hosts come from validated references, config or a parsed URL; refuse anything that could leave the directory.
  if (!dir || host === '' || host.startsWith('.') || /[/\\\0]/.test(host)) return Promise.resolve(undefined);
  return readCertsDir(join(dir, host));
}

async function readCertsDir(hostDir: string): Promise<TlsMaterial | undefined> {
  let names: string[];
  try {
    names = (await readdir(hostDir)).sort();
  } catch {
    return undefined; // no directory: system roots only
  }
  const ca: string[] = [];
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  for (const name of names) {
    if (name.endsWith('.crt')) ca.push(await readFile(join(hostDir, name), 'utf8'));
    else if (name.endsWith('.cert') && cert === undefined) {
      const keyName = `${name.slice(0, -'.cert'.length)}.key`;
      if (!names.includes(keyName)) {
        throw new BerthError('FAILED_PRECONDITION', `client certificate ${join(hostDir, name)} has no matching ${keyName}`);
      }
      cert = await readFile(join(hostDir, name));
      key = await readFile(join(hostDir, keyName));
    }
  }
  if (ca.length === 0 && cert === undefined) return undefined;
  const hash = createHash('sha256');
  for (const c of ca) hash.update(c);
  if (cert && key) hash.update(cert).update(key);
  return { ca, ...(cert && key ? { cert, key } : {}), id: hash.digest('hex') };
}

/** Keep-alive agents by TLS material, and the certs.d material itself (re-read after a few seconds: it is live). */
export class AgentPool {
  private readonly agents = new Map<string, http.Agent>();
  private readonly certs = new Map<string, { at: number; value: Promise<TlsMaterial | undefined> }>();

  tlsFor(dir: string, host: string): Promise<TlsMaterial | undefined> {
    const key = `${dir}\0${host}`;
    const hit = this.certs.get(key);
    if (hit && Date.now() - hit.at < CERTS_TTL_MS) return hit.value;
    const value = loadCertsDir(dir, host);
    this.certs.set(key, { at: Date.now(), value });
    if (this.certs.size > 256) this.certs.delete(this.certs.keys().next().value as string);
    return value;
  }

  get(protocol: string, material: TlsMaterial | undefined, skipVerify: boolean): http.Agent {
    const id = protocol === 'https:' ? `https|${skipVerify}|${material?.id ?? ''}` : 'http';
    let agent = this.agents.get(id);
    if (!agent) {
      agent =
        protocol === 'https:'
          ? new https.Agent({
              keepAlive: true,
              rejectUnauthorized: !skipVerify,
              ...(material?.ca.length ? { ca: [...rootCertificates, ...material.ca] } : {}),
              ...(material?.cert ? { cert: material.cert, key: material.key } : {}),
            })
          : new http.Agent({ keepAlive: true });
      this.agents.set(id, agent);
    }
    return agent;
  }

  destroy(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }
}
