// What the embedding page (external_api.ts) and the meeting page in its
// iframe (app/embed.tsx) say to each other, shared by both sides: the
// parameters in the iframe's URL hash, and the postMessage envelopes.
//
// The hash carries the options as Jitsi Meet's does
// (`#conclave_api_id=0&userInfo.displayName="Ada"&config.prejoinPageEnabled=false`),
// each value JSON-encoded; a bare word is read as a string, so that a
// hand-written link works too. `parentOrigin` names the embedding page's
// origin: the meeting posts only to it and takes commands only from it.

/** The hash parameter that switches the meeting page into embedded mode. */
export const API_ID_PARAM = 'conclave_api_id';
export const PARENT_ORIGIN_PARAM = 'parentOrigin';

/** Every envelope carries this tag, so other postMessage traffic is ignored. */
export const TAG = 'conclave-meet-api';

/** Longest display name the app keeps (as its pre-join screen). */
export const MAX_NAME = 64;

export interface EmbedOptions {
  displayName?: string;
  startWithAudioMuted?: boolean;
  startWithVideoMuted?: boolean;
  /** false: no pre-join screen, join at once (with a display name). */
  prejoinPageEnabled?: boolean;
  lang?: string;
}

export interface EmbedParams extends EmbedOptions {
  apiId: string;
  parentOrigin: string;
}

/** Parent → meeting. */
export type ToFrame =
  | { tag: typeof TAG; apiId: string; kind: 'command'; name: string; args: unknown[] }
  | { tag: typeof TAG; apiId: string; kind: 'request'; reqId: number; name: string; args: unknown[] };

/** Meeting → parent. */
export type ToParent =
  | { tag: typeof TAG; apiId: string; kind: 'ready' }
  | { tag: typeof TAG; apiId: string; kind: 'event'; name: string; data: Record<string, unknown> }
  | { tag: typeof TAG; apiId: string; kind: 'response'; reqId: number; ok: boolean; result?: unknown; error?: string };

/**
 * `scheme://host[:port]` as `URL.origin` writes it, or null: nothing with
 * a path, credentials or an opaque origin can be a postMessage target.
 */
export function normalOrigin(s: string): string | null {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return null;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return null;
  return u.origin === s ? s : null;
}

function encodeValue(v: string | boolean): string {
  return encodeURIComponent(JSON.stringify(v));
}

/** The hash for the iframe's URL (with its leading '#'). */
export function buildHash(p: EmbedParams): string {
  const parts: [string, string | boolean | undefined][] = [
    [API_ID_PARAM, p.apiId],
    [PARENT_ORIGIN_PARAM, p.parentOrigin],
    ['userInfo.displayName', p.displayName],
    ['config.startWithAudioMuted', p.startWithAudioMuted],
    ['config.startWithVideoMuted', p.startWithVideoMuted],
    ['config.prejoinPageEnabled', p.prejoinPageEnabled],
    ['lang', p.lang],
  ];
  return `#${parts
    .filter((e): e is [string, string | boolean] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${encodeValue(v)}`)
    .join('&')}`;
}

function decodeValue(raw: string): unknown {
  let s: string;
  try {
    s = decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return s;
  }
}

function asBool(v: unknown): boolean | undefined {
  return typeof v === 'boolean' ? v : undefined;
}

/**
 * The embedding parameters in a URL hash, or null when it carries no API
 * id or no usable parent origin (then the page is not embedded).
 */
export function parseHash(hash: string): EmbedParams | null {
  const values = new Map<string, unknown>();
  for (const part of hash.replace(/^#/, '').split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    values.set(part.slice(0, eq), decodeValue(part.slice(eq + 1)));
  }
  const id = values.get(API_ID_PARAM);
  const apiId = typeof id === 'number' ? String(id) : id;
  const origin = values.get(PARENT_ORIGIN_PARAM);
  if (typeof apiId !== 'string' || apiId === '' || apiId.length > 64 || typeof origin !== 'string') return null;
  const parentOrigin = normalOrigin(origin);
  if (parentOrigin === null) return null;
  const out: EmbedParams = { apiId, parentOrigin };
  const name = values.get('userInfo.displayName');
  if (typeof name === 'string' && name.trim() !== '') out.displayName = name.trim().slice(0, MAX_NAME);
  const audio = asBool(values.get('config.startWithAudioMuted'));
  if (audio !== undefined) out.startWithAudioMuted = audio;
  const video = asBool(values.get('config.startWithVideoMuted'));
  if (video !== undefined) out.startWithVideoMuted = video;
  const prejoin = asBool(values.get('config.prejoinPageEnabled'));
  if (prejoin !== undefined) out.prejoinPageEnabled = prejoin;
  const lang = values.get('lang');
  if (typeof lang === 'string' && /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(lang)) out.lang = lang;
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function envelope(data: unknown, apiId: string): Record<string, unknown> | null {
  if (!isRecord(data) || data.tag !== TAG || data.apiId !== apiId) return null;
  return data;
}

/** A parent's message for the API instance `apiId`, or null for anything else. */
export function asToFrame(data: unknown, apiId: string): ToFrame | null {
  const d = envelope(data, apiId);
  if (d === null || typeof d.name !== 'string' || d.name.length > 64) return null;
  const args = Array.isArray(d.args) ? (d.args as unknown[]) : [];
  if (d.kind === 'command') return { tag: TAG, apiId, kind: 'command', name: d.name, args };
  if (d.kind === 'request' && typeof d.reqId === 'number' && Number.isSafeInteger(d.reqId)) {
    return { tag: TAG, apiId, kind: 'request', reqId: d.reqId, name: d.name, args };
  }
  return null;
}

/** The meeting's message for the API instance `apiId`, or null for anything else. */
export function asToParent(data: unknown, apiId: string): ToParent | null {
  const d = envelope(data, apiId);
  if (d === null) return null;
  if (d.kind === 'ready') return { tag: TAG, apiId, kind: 'ready' };
  if (d.kind === 'event' && typeof d.name === 'string' && isRecord(d.data)) {
    return { tag: TAG, apiId, kind: 'event', name: d.name, data: d.data };
  }
  if (d.kind === 'response' && typeof d.reqId === 'number' && typeof d.ok === 'boolean') {
    const r: ToParent = { tag: TAG, apiId, kind: 'response', reqId: d.reqId, ok: d.ok, result: d.result };
    if (typeof d.error === 'string') r.error = d.error;
    return r;
  }
  return null;
}
