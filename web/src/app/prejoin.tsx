// Before joining: a name, a look at oneself, the devices to use and a
// level meter that shows the microphone hears something. A refused or
// missing device is explained, and joining without it stays possible.
import { useEffect, useRef, useState } from 'preact/hooks';
import { MAX_NAME } from '../embed/protocol';
import { embedded } from './embed';
import { t } from './i18n';
import { LevelMeter, listDevices, openMedia, stopStream, type Devices, type MediaProblem } from './media';

export interface PreJoinResult {
  displayName: string;
  stream: MediaStream | null;
  audioMuted: boolean;
  videoMuted: boolean;
}

const NAME_KEY = 'conclave.displayName';

function storedName(): string {
  const fromUrl = new URLSearchParams(location.search).get('name') ?? embedded()?.displayName ?? null;
  if (fromUrl !== null) return fromUrl.slice(0, MAX_NAME);
  try {
    return localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

function problemText(kind: 'camera' | 'microphone', p: MediaProblem): string {
  return t(`prejoin.problem.${p}`, { device: t(`prejoin.deviceWord.${kind}`) });
}

export function PreJoin({ room, onJoin }: { room: string; onJoin: (r: PreJoinResult) => void }) {
  // ?media=none: join to watch only, opening no device (scripted load uses it).
  const noMedia = new URLSearchParams(location.search).get('media') === 'none';
  const [name, setName] = useState(storedName);
  // Muting here starts the meeting muted; the devices stay open so that
  // unmuting later needs no new permission.
  const [audioMuted, setAudioMuted] = useState(() => embedded()?.startWithAudioMuted === true);
  const [videoMuted, setVideoMuted] = useState(() => embedded()?.startWithVideoMuted === true);
  const [audioId, setAudioId] = useState<string | undefined>(undefined);
  const [videoId, setVideoId] = useState<string | undefined>(undefined);
  const [stream, setStream] = useState<MediaStream | null>(null);
  const [problems, setProblems] = useState<{ audio?: MediaProblem; video?: MediaProblem }>({});
  const [devices, setDevices] = useState<Devices>({ audioInputs: [], videoInputs: [] });
  const [level, setLevel] = useState(0);
  const [opening, setOpening] = useState(!noMedia);
  const video = useRef<HTMLVideoElement>(null);
  const handedOver = useRef(false);

  // (Re)open the devices whenever the choice changes; the previous stream stops.
  useEffect(() => {
    let live = true;
    let opened: MediaStream | null = null;
    setOpening(!noMedia);
    void openMedia({ audio: !noMedia, video: !noMedia, audioDeviceId: audioId, videoDeviceId: videoId }).then(
      async (m) => {
        if (!live) {
          stopStream(m.stream);
          return;
        }
        opened = m.stream;
        setStream(m.stream);
        const p: { audio?: MediaProblem; video?: MediaProblem } = {};
        if (m.audioProblem !== undefined) p.audio = m.audioProblem;
        if (m.videoProblem !== undefined) p.video = m.videoProblem;
        setProblems(p);
        setOpening(false);
        // Labels are only readable once a device was granted.
        if (m.stream) setDevices(await listDevices());
      },
    );
    return () => {
      live = false;
      if (!handedOver.current) stopStream(opened);
    };
  }, [noMedia, audioId, videoId]);

  useEffect(() => {
    if (video.current) video.current.srcObject = stream?.getVideoTracks()[0] ? stream : null;
  }, [stream]);

  useEffect(() => {
    for (const tr of stream?.getAudioTracks() ?? []) tr.enabled = !audioMuted;
    for (const tr of stream?.getVideoTracks() ?? []) tr.enabled = !videoMuted;
  }, [stream, audioMuted, videoMuted]);

  useEffect(() => {
    const track = stream?.getAudioTracks()[0];
    if (!track) {
      setLevel(0);
      return;
    }
    let meter: LevelMeter;
    try {
      meter = new LevelMeter(track);
    } catch {
      return;
    }
    let raf = 0;
    let last = 0;
    const tick = (now: number) => {
      // Ten readings a second are enough for a meter and cheap on a phone.
      if (now - last > 100) {
        last = now;
        setLevel(meter.poll());
      }
      raf = requestAnimationFrame(tick);
    };
    raf = requestAnimationFrame(tick);
    return () => {
      cancelAnimationFrame(raf);
      meter.close();
    };
  }, [stream]);

  const hasVideo = stream?.getVideoTracks()[0] !== undefined;
  const hasAudio = stream?.getAudioTracks()[0] !== undefined;
  const showVideo = hasVideo && !videoMuted;

  const submit = (ev: Event) => {
    ev.preventDefault();
    const displayName = name.trim().slice(0, MAX_NAME);
    try {
      if (displayName !== '') localStorage.setItem(NAME_KEY, displayName);
    } catch {
      // Private mode: the name is simply not remembered.
    }
    handedOver.current = true;
    onJoin({ displayName, stream, audioMuted: audioMuted || !hasAudio, videoMuted: videoMuted || !hasVideo });
  };

  return (
    <main class="prejoin">
      <h1 class="prejoin-title">{t('prejoin.title', { room })}</h1>
      <div class="prejoin-body">
        <figure class="preview" data-local="true">
          <video ref={video} autoplay playsInline muted aria-label={t('prejoin.preview')} hidden={!showVideo} />
          {!showVideo && (
            <figcaption class="preview-off">
              {opening ? t('prejoin.opening') : hasVideo ? t('prejoin.cameraOff') : t('prejoin.noCamera')}
            </figcaption>
          )}
        </figure>
        <form class="prejoin-form" onSubmit={submit}>
          <label for="display-name">{t('prejoin.name')}</label>
          <input
            id="display-name"
            name="name"
            autocomplete="nickname"
            maxLength={MAX_NAME}
            value={name}
            placeholder={t('prejoin.namePlaceholder')}
            onInput={(e) => setName(e.currentTarget.value)}
          />
          <div class="row toggles">
            <button type="button" class="mute" aria-pressed={audioMuted} disabled={!hasAudio} onClick={() => setAudioMuted(!audioMuted)}>
              {t('controls.muteMic')}
            </button>
            <button type="button" class="mute" aria-pressed={videoMuted} disabled={!hasVideo} onClick={() => setVideoMuted(!videoMuted)}>
              {t('controls.stopCamera')}
            </button>
          </div>
          <DeviceSelect id="camera-select" label={t('prejoin.camera')} devices={devices.videoInputs} value={videoId} onChange={setVideoId} />
          <DeviceSelect id="mic-select" label={t('prejoin.microphone')} devices={devices.audioInputs} value={audioId} onChange={setAudioId} />
          {hasAudio && !audioMuted && (
            <div class="level">
              <span id="level-label">{t('prejoin.level')}</span>
              <meter aria-labelledby="level-label" min={0} max={1} low={0.15} value={level} />
            </div>
          )}
          {(problems.video !== undefined || problems.audio !== undefined) && (
            <div class="problems" role="alert">
              {problems.video !== undefined && <p>{problemText('camera', problems.video)}</p>}
              {problems.audio !== undefined && <p>{problemText('microphone', problems.audio)}</p>}
              <p>{t('prejoin.canStillJoin')}</p>
            </div>
          )}
          <button type="submit" class="primary join" disabled={opening}>
            {t('prejoin.join')}
          </button>
        </form>
      </div>
    </main>
  );
}

function DeviceSelect(props: {
  id: string;
  label: string;
  devices: MediaDeviceInfo[];
  value: string | undefined;
  onChange: (id: string | undefined) => void;
}) {
  if (props.devices.length === 0) return null;
  return (
    <>
      <label for={props.id}>{props.label}</label>
      <select id={props.id} value={props.value ?? ''} onChange={(e) => props.onChange(e.currentTarget.value || undefined)}>
        <option value="">{t('prejoin.defaultDevice')}</option>
        {props.devices.map((d, i) => (
          <option key={d.deviceId} value={d.deviceId}>
            {d.label !== '' ? d.label : t('prejoin.deviceN', { n: i + 1 })}
          </option>
        ))}
      </select>
    </>
  );
}
