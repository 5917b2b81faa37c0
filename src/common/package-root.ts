import fs from 'node:fs';
import path from 'node:path';

let cached: string | undefined;

/** The directory holding berth's package.json, whether running from src/ (ts) or dist/src/ (compiled). */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = __dirname;
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (fs.existsSync(candidate) && fs.existsSync(path.join(dir, 'proto'))) return (cached = dir);
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find berth's package root above ${__dirname}`);
    dir = parent;
  }
}

export function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}
