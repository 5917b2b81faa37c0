// Request header validation (RFC 9113 §8.3): a malformed request gets RST_STREAM(PROTOCOL_ERROR).
import type { Headers } from './stream';

/** Why a request's header list is malformed (RFC 9113 §8.3), or undefined when it is well formed. */
export function checkRequestHeaders(headers: Headers): string | undefined {
  let regular = false;
  let method = false;
  let path = false;
  let scheme = false;
  let seen = 0;
  for (const [name, value] of headers) {
    if (name.startsWith(':')) {
      if (regular) return 'pseudo-header after a regular header';
      const bit = name === ':method' ? 1 : name === ':path' ? 2 : name === ':scheme' ? 4 : name === ':authority' ? 8 : 0;
      if (bit === 0) return `unknown pseudo-header ${name}`;
      // Each pseudo-header at most once (§8.3).
      if (seen & bit) return `${name} twice`;
      seen |= bit;
      if (name === ':method') method = value.length > 0;
      else if (name === ':path') path = value.length > 0;
      else if (name === ':scheme') scheme = value.length > 0;
    } else {
      regular = true;
      if (name !== name.toLowerCase()) return `upper-case header name ${name}`;
      if (name === 'connection' || name === 'transfer-encoding' || name === 'keep-alive' || name === 'upgrade') return `connection-specific header ${name}`;
      // TE may only say "trailers" (§8.2.2).
      if (name === 'te' && value !== 'trailers') return `te: ${value}`;
    }
  }
  // :method, :scheme and :path exactly once each (§8.3.1).
  if (!method || !path || !scheme) return 'missing :method, :scheme or :path';
  return undefined;
}
