// The signed-in account, for this tab only: the chat and the meetings
// opened from it (same tab) join as the account; closing the tab signs
// out. Kept in sessionStorage, never localStorage: a password must not
// outlive the tab on a shared computer.
import type { Credentials } from '../lib';

const KEY = 'conclave.session';

export function savedCredentials(): Credentials | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (raw === null) return null;
    const v = JSON.parse(raw) as unknown;
    if (typeof v !== 'object' || v === null) return null;
    const { username, password } = v as Record<string, unknown>;
    return typeof username === 'string' && typeof password === 'string' ? { username, password } : null;
  } catch {
    return null;
  }
}

export function saveCredentials(c: Credentials | null): void {
  try {
    if (c === null) sessionStorage.removeItem(KEY);
    else sessionStorage.setItem(KEY, JSON.stringify(c));
  } catch {
    // Storage refused (private mode): signed in until reload only.
  }
}
