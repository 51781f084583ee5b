// Files in chat (XEP-0363 HTTP File Upload): a slot from the server's
// upload service, then one PUT whose progress the page shows. The GET URL
// is what goes into the message.
import { xml, type Element, type XmppClient } from '@xmpp/client';

export const NS_HTTP_UPLOAD = 'urn:xmpp:http:upload:0';

export interface UploadSlot {
  put: string;
  get: string;
  headers: Record<string, string>;
}

/** Why an upload could not start, in words for a person (the server's text when it gave one). */
export class UploadError extends Error {
  constructor(
    /** `quota`, `too-large`, `forbidden`, `unavailable` or `failed`. */
    readonly reason: 'quota' | 'too-large' | 'forbidden' | 'unavailable' | 'failed',
    message: string,
  ) {
    super(message);
    this.name = 'UploadError';
  }
}

export function slotRequest(service: string, file: { name: string; size: number; type: string }): Element {
  return xml(
    'iq',
    { type: 'get', to: service },
    xml('request', {
      xmlns: NS_HTTP_UPLOAD,
      filename: file.name,
      size: String(file.size),
      'content-type': file.type || 'application/octet-stream',
    }),
  );
}

/** Only the headers XEP-0363 §4 lets a PUT carry from the slot. */
const ALLOWED_HEADERS = new Set(['authorization', 'cookie', 'expires']);

export function parseSlot(iq: Element): UploadSlot {
  const slot = iq.getChild('slot', NS_HTTP_UPLOAD);
  const put = slot?.getChild('put');
  const get = slot?.getChild('get')?.attrs.url;
  if (put?.attrs.url === undefined || get === undefined) throw new UploadError('failed', 'The server gave no upload address');
  const headers: Record<string, string> = {};
  for (const h of put.getChildren('header')) {
    const name = h.attrs.name ?? '';
    if (ALLOWED_HEADERS.has(name.toLowerCase())) headers[name] = h.getText().replace(/[\r\n]/g, '');
  }
  for (const u of [put.attrs.url, get]) {
    if (!/^https?:\/\//.test(u)) throw new UploadError('failed', 'The server gave an upload address that is not HTTP');
  }
  return { put: put.attrs.url, get, headers };
}

interface StanzaErrorShape {
  condition?: unknown;
  text?: unknown;
  element?: Element;
}

/** A refused slot request as an UploadError. */
export function slotRefusal(err: unknown): UploadError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as StanzaErrorShape;
  const condition = typeof e.condition === 'string' ? e.condition : '';
  const text = typeof e.text === 'string' && e.text !== '' ? e.text : '';
  // `element` is the <error/> itself.
  if (e.element?.getChild('file-too-large', NS_HTTP_UPLOAD) !== undefined || condition === 'not-acceptable') {
    return new UploadError('too-large', text || 'The file is too large');
  }
  if (condition === 'resource-constraint' || (condition === 'not-allowed' && /quota/i.test(text))) {
    return new UploadError('quota', text || 'Upload quota reached');
  }
  if (condition === 'forbidden') return new UploadError('forbidden', text || 'You may not upload files here');
  if (condition === 'service-unavailable' || condition === 'item-not-found' || condition === 'remote-server-not-found') {
    return new UploadError('unavailable', 'This server does not take files');
  }
  return new UploadError('failed', text || (err instanceof Error ? err.message : 'The upload was refused'));
}

/** PUTs `file` to the slot, reporting the fraction sent; resolves when the server has it all. */
export function put(slot: UploadSlot, file: Blob, onProgress: (fraction: number) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    // fetch() reports no upload progress; XMLHttpRequest does.
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', slot.put);
    for (const [k, v] of Object.entries(slot.headers)) xhr.setRequestHeader(k, v);
    if (file.type !== '') xhr.setRequestHeader('Content-Type', file.type);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
      } else {
        reject(new UploadError(xhr.status === 413 ? 'too-large' : 'failed', `The server refused the file (HTTP ${xhr.status})`));
      }
    };
    xhr.onerror = () => reject(new UploadError('failed', 'The connection broke during the upload'));
    xhr.onabort = () => reject(new UploadError('failed', 'The upload was cancelled'));
    signal?.addEventListener('abort', () => xhr.abort());
    xhr.send(file);
  });
}

/** A slot for `file` from `service` on `xmpp`, then the PUT; resolves with the URL to share. */
export async function uploadFile(
  xmpp: XmppClient,
  service: string,
  file: File,
  onProgress: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<string> {
  let slot: UploadSlot;
  try {
    slot = parseSlot(await xmpp.iqCaller.request(slotRequest(service, file), 15000));
  } catch (err) {
    if (err instanceof UploadError) throw err;
    throw slotRefusal(err);
  }
  onProgress(0);
  await put(slot, file, onProgress, signal);
  return slot.get;
}
