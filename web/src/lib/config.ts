/** What the server serves at /meet-config.json. */
export interface MeetConfig {
  /** The XMPP domain clients log in to anonymously, e.g. `localhost`. */
  domain: string;
  /** The MUC service, e.g. `conference.localhost`. */
  muc: string;
  /** The focus component, e.g. `focus.localhost`. */
  focus: string;
  /** XMPP over WebSocket (RFC 7395), e.g. `wss://localhost:8443/xmpp-websocket`. */
  websocket: string;
  /**
   * Optional: the host guests sign in to with SASL ANONYMOUS when it is not
   * `domain` (Conclave's `guest_host`, Jitsi's `hosts.anonymousdomain`).
   */
  guestDomain?: string;
  /**
   * Whether the page may register its service worker (and so be installed
   * as an app): false under a self-signed certificate, which browsers
   * refuse service workers from.
   */
  installable?: boolean;
  /** Whether the server takes files (XEP-0363) from accounts. */
  uploads?: boolean;
  /** Whether it takes them from guests too (`upload.guest_quota_bytes`). */
  guestUploads?: boolean;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks a parsed /meet-config.json; throws on anything missing. */
export function parseMeetConfig(v: unknown): MeetConfig {
  if (!isRecord(v)) throw new Error('meet-config.json is not an object');
  const out: Partial<MeetConfig> = {};
  for (const key of ['domain', 'muc', 'focus', 'websocket'] as const) {
    const value = v[key];
    if (typeof value !== 'string' || value === '') throw new Error(`meet-config.json: ${key} missing`);
    out[key] = value;
  }
  const cfg = out as MeetConfig;
  if (v.guestDomain !== undefined) {
    if (typeof v.guestDomain !== 'string' || v.guestDomain === '') throw new Error('meet-config.json: guestDomain is not a domain');
    cfg.guestDomain = v.guestDomain;
  }
  if (typeof v.installable === 'boolean') cfg.installable = v.installable;
  if (typeof v.uploads === 'boolean') cfg.uploads = v.uploads;
  if (typeof v.guestUploads === 'boolean') cfg.guestUploads = v.guestUploads;
  if (!/^wss?:\/\//.test(cfg.websocket)) throw new Error('meet-config.json: websocket is not a ws(s) URL');
  return cfg;
}

export async function loadMeetConfig(url = '/meet-config.json', fetchImpl: typeof fetch = fetch): Promise<MeetConfig> {
  const res = await fetchImpl(url, { cache: 'no-store' });
  if (!res.ok) throw new Error(`${url}: HTTP ${String(res.status)}`);
  return parseMeetConfig(await res.json());
}

// RFC 7622 localparts may not hold these; MUC rooms are localparts.
const FORBIDDEN = /["&'/:<>@\s\\]/;

/**
 * The room named by a page path: its first segment, URL-decoded and
 * lowercased (as the MUC JID's localpart), or null when there is none or it
 * cannot be a localpart.
 */
export function roomFromPath(pathname: string): string | null {
  const first = pathname.split('/').find((s) => s !== '');
  if (first === undefined) return null;
  let room: string;
  try {
    room = decodeURIComponent(first).toLowerCase();
  } catch {
    return null;
  }
  if (room === '' || room.length > 256 || FORBIDDEN.test(room)) return null;
  return room;
}
