// The bare meeting page: joins the room named by the path on load.
import './style.css';
import { Conference, loadMeetConfig, roomFromPath } from '../lib';
import { Tiles } from './tiles';

declare global {
  interface Window {
    /** For scripted tests (Playwright): the conference and when it has joined. */
    conclave?: { conference: Conference; ready: Promise<Conference> };
  }
}

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el;
}

const status = $('status');
const nameInput = $('display-name') as HTMLInputElement;
const muteAudio = $('mute-audio') as HTMLButtonElement;
const muteVideo = $('mute-video') as HTMLButtonElement;
const leave = $('leave') as HTMLButtonElement;
const chatLog = $('chat-log');
const chatForm = $('chat-form') as HTMLFormElement;
const chatInput = $('chat-input') as HTMLInputElement;
const tiles = new Tiles($('tiles'));

function setStatus(text: string): void {
  status.textContent = text;
}

function randomRoom(): string {
  const b = new Uint8Array(5);
  crypto.getRandomValues(b);
  return `room-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

async function getLocalStream(): Promise<MediaStream | null> {
  // ?media=none: join to watch only (scripted tests use it to save CPU).
  if (params.get('media') === 'none') return null;
  const attempts: MediaStreamConstraints[] = [
    { audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } },
    { audio: true, video: false },
    { audio: false, video: true },
  ];
  for (const c of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch (err) {
      console.warn('getUserMedia failed', c, err);
    }
  }
  return null;
}

function appendChat(who: string, text: string): void {
  const li = document.createElement('li');
  const b = document.createElement('b');
  b.textContent = `${who}: `;
  li.append(b, document.createTextNode(text));
  chatLog.append(li);
  chatLog.scrollTop = chatLog.scrollHeight;
}

const params = new URLSearchParams(location.search);
let room = roomFromPath(location.pathname);
if (room === null) {
  room = randomRoom();
  history.replaceState(null, '', `/${room}${location.search}`);
}
$('room-name').textContent = room;
document.title = `${room} · Conclave`;
nameInput.value = params.get('name') ?? '';

const conference = new Conference();
let resolveReady: (c: Conference) => void = () => undefined;
let rejectReady: (e: unknown) => void = () => undefined;
const ready = new Promise<Conference>((resolve, reject) => {
  resolveReady = resolve;
  rejectReady = reject;
});
// Unobserved failures are shown on the page, not as unhandled rejections.
ready.catch(() => undefined);
window.conclave = { conference, ready };

function labelOf(endpointId: string): string {
  const p = conference.getParticipants().find((x) => x.endpointId === endpointId);
  return p?.displayName !== undefined && p.displayName !== '' ? p.displayName : endpointId;
}

conference.on('participant-joined', (p) => {
  tiles.ensure(p.endpointId, labelOf(p.endpointId));
  tiles.setAttr(p.endpointId, 'audioMuted', String(p.sources[`${p.endpointId}-a0`]?.muted ?? false));
  setStatus(`${labelOf(p.endpointId)} joined`);
});
conference.on('participant-updated', (p) => {
  tiles.setLabel(p.endpointId, labelOf(p.endpointId));
  tiles.setAttr(p.endpointId, 'audioMuted', String(p.sources[`${p.endpointId}-a0`]?.muted ?? false));
  tiles.setAttr(p.endpointId, 'videoMuted', String(p.sources[`${p.endpointId}-v0`]?.muted ?? false));
});
conference.on('participant-left', (p) => {
  tiles.remove(p.endpointId);
  setStatus(`${p.displayName ?? p.endpointId} left`);
});
conference.on('remote-track', (t) => tiles.addTrack(t.endpointId, labelOf(t.endpointId), t.track));
conference.on('remote-track-removed', (t) => tiles.removeTrack(t.endpointId, t.track));
conference.on('dominant-speaker', (d) => tiles.setSpeaker(d.endpointId));
conference.on('chat', (m) => appendChat(m.displayName ?? m.from, m.text));
conference.on('ice-state', ({ state }) => {
  if (state === 'connected' || state === 'completed') setStatus('Connected');
  else if (state === 'failed' || state === 'disconnected') setStatus(`Media ${state}, reconnecting…`);
});
conference.on('media-failed', () => setStatus('Media setup failed'));
conference.on('kicked', (k) => setStatus(`You were removed from the meeting${k.reason !== undefined ? `: ${k.reason}` : ''}`));
conference.on('conference-failed', (f) => setStatus(`Meeting failed: ${f.reason}`));
conference.on('left', () => {
  tiles.clear();
  for (const b of [muteAudio, muteVideo, leave]) b.disabled = true;
});

function renderMute(): void {
  muteAudio.setAttribute('aria-pressed', String(conference.audioMuted));
  muteAudio.textContent = conference.audioMuted ? 'Unmute microphone' : 'Mute microphone';
  muteVideo.setAttribute('aria-pressed', String(conference.videoMuted));
  muteVideo.textContent = conference.videoMuted ? 'Turn camera on' : 'Turn camera off';
}

muteAudio.addEventListener('click', () => {
  conference.setAudioMuted(!conference.audioMuted);
  renderMute();
});
muteVideo.addEventListener('click', () => {
  conference.setVideoMuted(!conference.videoMuted);
  renderMute();
});
leave.addEventListener('click', () => {
  void conference.leave().then(() => setStatus('You left the meeting. Reload to rejoin.'));
});
nameInput.addEventListener('change', () => {
  const name = nameInput.value.trim();
  if (conference.endpointId !== '') tiles.setLabel(conference.endpointId, name === '' ? 'You' : `${name} (you)`);
  conference.setDisplayName(name);
});
chatForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = chatInput.value.trim();
  if (text === '') return;
  chatInput.value = '';
  conference
    .sendChat(text)
    .then(() => appendChat('You', text))
    .catch((err: unknown) => setStatus(`Chat failed: ${err instanceof Error ? err.message : String(err)}`));
});
window.addEventListener('pagehide', () => void conference.leave());

async function start(roomName: string): Promise<void> {
  setStatus('Loading configuration…');
  const config = await loadMeetConfig();
  setStatus('Opening camera and microphone…');
  const stream = await getLocalStream();
  setStatus('Joining…');
  const displayName = nameInput.value.trim();
  const asked = params.get('codec')?.toUpperCase();
  const videoCodec = asked === 'VP9' || asked === 'AV1' ? asked : 'VP8';
  await conference.join({ config, room: roomName, displayName, localStream: stream, videoCodec });
  const self = tiles.ensure(conference.endpointId, displayName === '' ? 'You' : `${displayName} (you)`, true);
  for (const t of stream?.getTracks() ?? []) if (t.kind === 'video') tiles.addTrack(self.endpointId, '', t, true);
  tiles.setLabel(self.endpointId, displayName === '' ? 'You' : `${displayName} (you)`);
  renderMute();
  setStatus(conference.getParticipants().length === 0 ? 'Waiting for others to join' : 'Joined');
}

start(room)
  .then(() => resolveReady(conference))
  .catch((err: unknown) => {
    setStatus(`Could not join: ${err instanceof Error ? err.message : String(err)}`);
    rejectReady(err);
  });
