// The conference request to the focus (Jitsi's `http://jitsi.org/protocol/focus`).
import { xml, type Element } from '@xmpp/client';
import { NS_FOCUS } from './ns';

export interface ConferenceRequestOptions {
  startAudioMuted?: boolean;
  startVideoMuted?: boolean;
}

/** `<iq type=set to=focus><conference room machine-uid><property/>...` */
export function conferenceRequest(
  focus: string,
  roomJid: string,
  machineUid: string,
  opts: ConferenceRequestOptions = {},
): Element {
  const props: [string, string][] = [
    ['startAudioMuted', String(opts.startAudioMuted ?? false)],
    ['startVideoMuted', String(opts.startVideoMuted ?? false)],
    ['rtcstatsEnabled', 'false'],
  ];
  return xml(
    'iq',
    { type: 'set', to: focus },
    xml(
      'conference',
      { xmlns: NS_FOCUS, room: roomJid, 'machine-uid': machineUid },
      ...props.map(([name, value]) => xml('property', { name, value })),
    ),
  );
}

export interface ConferenceResult {
  ready: boolean;
  focusJid?: string;
}

/** Reads the focus's answer (the IQ result or its `<conference/>` child). */
export function parseConferenceResult(el: Element): ConferenceResult {
  const c = el.is('conference', NS_FOCUS) ? el : el.getChild('conference', NS_FOCUS);
  if (!c) throw new Error('focus answered without <conference/>');
  const out: ConferenceResult = { ready: c.attrs.ready === 'true' };
  if (c.attrs.focusjid !== undefined) out.focusJid = c.attrs.focusjid;
  return out;
}

/** Retry delay after the n-th not-ready answer (0-based). */
export function retryDelay(attempt: number): number {
  return Math.min(500 * 2 ** attempt, 8000);
}
