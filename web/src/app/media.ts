// Cameras and microphones: opening them with a reason a person can act on
// when that fails, listing them, and measuring how loud the microphone is.

/** Why a device could not be opened, as the page explains it. */
export type MediaProblem = 'denied' | 'not-found' | 'in-use' | 'insecure' | 'failed';

export interface OpenedMedia {
  stream: MediaStream | null;
  /** Per kind, what went wrong; absent when that kind opened (or was not asked for). */
  audioProblem?: MediaProblem;
  videoProblem?: MediaProblem;
}

export function classify(err: unknown): MediaProblem {
  const name = err instanceof DOMException ? err.name : '';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'denied';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'not-found';
    case 'NotReadableError':
    case 'AbortError':
      return 'in-use';
    default:
      return 'failed';
  }
}

export interface DeviceChoice {
  audio: boolean;
  video: boolean;
  audioDeviceId?: string | undefined;
  videoDeviceId?: string | undefined;
}

function videoConstraints(deviceId?: string): MediaTrackConstraints {
  const c: MediaTrackConstraints = { width: { ideal: 1280 }, height: { ideal: 720 } };
  if (deviceId !== undefined && deviceId !== '') c.deviceId = { exact: deviceId };
  return c;
}

function audioConstraints(deviceId?: string): MediaTrackConstraints | boolean {
  return deviceId !== undefined && deviceId !== '' ? { deviceId: { exact: deviceId } } : true;
}

/**
 * Opens what is asked for. Each kind is tried on its own after a joint
 * failure, so a refused camera still leaves the microphone (and the
 * reverse), and the problem of each is reported.
 */
export async function openMedia(choice: DeviceChoice): Promise<OpenedMedia> {
  const md = (navigator as Partial<Navigator>).mediaDevices;
  if (md?.getUserMedia === undefined) {
    const out: OpenedMedia = { stream: null };
    if (choice.audio) out.audioProblem = 'insecure';
    if (choice.video) out.videoProblem = 'insecure';
    return out;
  }
  if (!choice.audio && !choice.video) return { stream: null };
  const audio = choice.audio ? audioConstraints(choice.audioDeviceId) : false;
  const video = choice.video ? videoConstraints(choice.videoDeviceId) : false;
  try {
    return { stream: await md.getUserMedia({ audio, video }) };
  } catch (err) {
    if (!(choice.audio && choice.video)) {
      const problem = classify(err);
      return choice.audio ? { stream: null, audioProblem: problem } : { stream: null, videoProblem: problem };
    }
  }
  const out: OpenedMedia = { stream: null };
  const tracks: MediaStreamTrack[] = [];
  try {
    tracks.push(...(await md.getUserMedia({ audio })).getTracks());
  } catch (err) {
    out.audioProblem = classify(err);
  }
  try {
    tracks.push(...(await md.getUserMedia({ video })).getTracks());
  } catch (err) {
    out.videoProblem = classify(err);
  }
  if (tracks.length > 0) out.stream = new MediaStream(tracks);
  return out;
}

export interface Devices {
  audioInputs: MediaDeviceInfo[];
  videoInputs: MediaDeviceInfo[];
}

export async function listDevices(): Promise<Devices> {
  const all = await navigator.mediaDevices.enumerateDevices().catch(() => []);
  return {
    audioInputs: all.filter((d) => d.kind === 'audioinput' && d.deviceId !== ''),
    videoInputs: all.filter((d) => d.kind === 'videoinput' && d.deviceId !== ''),
  };
}

export function stopStream(stream: MediaStream | null): void {
  for (const t of stream?.getTracks() ?? []) t.stop();
}

/**
 * The level (0..1) of an audio track, read by `poll` as often as the
 * caller draws it; `close` frees the audio graph.
 */
export class LevelMeter {
  private readonly ctx: AudioContext;
  private readonly analyser: AnalyserNode;
  private readonly buf: Float32Array<ArrayBuffer>;

  constructor(track: MediaStreamTrack) {
    this.ctx = new AudioContext();
    const src = this.ctx.createMediaStreamSource(new MediaStream([track]));
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 512;
    this.buf = new Float32Array(this.analyser.fftSize);
    src.connect(this.analyser);
    // Created before any click, the context starts suspended in some browsers.
    if (this.ctx.state === 'suspended') void this.ctx.resume().catch(() => undefined);
  }

  poll(): number {
    this.analyser.getFloatTimeDomainData(this.buf);
    let sum = 0;
    for (const x of this.buf) sum += x * x;
    const rms = Math.sqrt(sum / this.buf.length);
    // About -60 dBFS to 0 dBFS onto 0..1, as meters show speech.
    const db = 20 * Math.log10(rms + 1e-9);
    return Math.min(1, Math.max(0, (db + 60) / 60));
  }

  close(): void {
    void this.ctx.close().catch(() => undefined);
  }
}
