// Reading registry JSON (manifests, indexes, image configs) as hostile input: a document must be a JSON object, and
// each field is checked for its type, with errors that name the document and the field's path.
import { BerthError } from '../common/errors';

export type Json = Record<string, unknown>;

export function bad(what: string, path: string, why: string): BerthError {
  return new BerthError('INVALID_ARGUMENT', `invalid ${what}: ${path}: ${why}`);
}
export const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
export const show = (v: unknown): string => JSON.stringify(v)?.slice(0, 100) ?? String(v);

export function parseJsonObject(bytes: Buffer, what: string): Json {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new BerthError('INVALID_ARGUMENT', `invalid ${what}: not JSON (${(err as Error).message.slice(0, 100)})`);
  }
  if (!isObject(doc)) throw new BerthError('INVALID_ARGUMENT', `invalid ${what}: not a JSON object`);
  return doc;
}

export const join = (path: string, key: string): string => (path ? `${path}.${key}` : key);

export function optString(obj: Json, key: string, path: string, what: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(what, join(path, key), 'must be a string');
  return v;
}
