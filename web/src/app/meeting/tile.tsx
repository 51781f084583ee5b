// One person's tile: their video (or initials), name, and what they are
// doing (muted, hand up, speaking, link quality). Remote audio does not
// play here but in <RemoteAudio>, so it goes on whatever the layout shows.
import { Hand, MicOff, Monitor, Pin } from 'lucide-preact';
import { useEffect, useRef } from 'preact/hooks';
import { t } from '../i18n';
import type { PeerView } from './store';

function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter((p) => p !== '');
  const first = parts[0]?.[0] ?? '';
  const last = parts.length > 1 ? (parts[parts.length - 1]?.[0] ?? '') : '';
  return (first + last).toUpperCase() || '?';
}

export function displayName(p: PeerView): string {
  if (p.local) return p.name !== '' ? t('tile.you', { name: p.name }) : t('tile.youAlone');
  return p.name !== '' ? p.name : t('tile.guest');
}

export function Tile(props: {
  peer: PeerView;
  speaking: boolean;
  pinned: boolean;
  onPin?: (() => void) | undefined;
  stage?: boolean;
}) {
  const { peer } = props;
  const video = useRef<HTMLVideoElement>(null);
  const track = peer.videoMuted ? null : peer.video;
  useEffect(() => {
    const v = video.current;
    if (!v) return;
    if (track) {
      const s = v.srcObject instanceof MediaStream ? v.srcObject : null;
      if (s?.getVideoTracks()[0] !== track) v.srcObject = new MediaStream([track]);
      void v.play().catch(() => undefined);
    } else {
      v.srcObject = null;
    }
  }, [track]);
  const name = displayName(peer);
  const mirrored = peer.local && peer.videoType === 'camera';
  return (
    <figure
      class={`tile${props.stage === true ? ' on-stage' : ''}`}
      data-endpoint={peer.id}
      data-local={peer.local ? 'true' : undefined}
      data-speaking={String(props.speaking)}
      data-audio-muted={String(peer.audioMuted)}
      data-video-type={peer.videoType}
    >
      <video
        ref={video}
        data-endpoint={peer.id}
        autoplay
        playsInline
        muted
        class={mirrored ? 'mirrored' : undefined}
        hidden={!track}
        aria-label={peer.local ? t('tile.yourVideo') : t('tile.videoOf', { name })}
      />
      {!track && (
        <div class="avatar" aria-hidden="true">
          <span>{initials(peer.name)}</span>
        </div>
      )}
      <figcaption>
        {peer.raisedHand !== null && (
          <span class="badge hand" role="img" aria-label={t('tile.handRaised')}>
            <Hand size={16} aria-hidden="true" />
          </span>
        )}
        {peer.audioMuted && (
          <span class="badge muted" role="img" aria-label={t('tile.micMuted')}>
            <MicOff size={16} aria-hidden="true" />
          </span>
        )}
        <span class="name">{name}</span>
        {peer.videoType === 'desktop' && (
          <span class="badge" role="img" aria-label={t('tile.screen')}>
            <Monitor size={16} aria-hidden="true" />
          </span>
        )}
        {peer.quality !== null && (
          <span
            class={`quality q-${peer.quality}`}
            role="img"
            aria-label={t('quality.label', { quality: t(`quality.${peer.quality}`) })}
          />
        )}
      </figcaption>
      {props.onPin && (
        <button
          type="button"
          class="pin icon"
          aria-pressed={props.pinned}
          aria-label={t('tile.pin', { name })}
          title={t('tile.pin', { name })}
          onClick={props.onPin}
        >
          <Pin size={18} aria-hidden="true" />
        </button>
      )}
    </figure>
  );
}

/** Every remote participant's audio, whatever the layout shows. */
export function RemoteAudio({ peers }: { peers: readonly PeerView[] }) {
  return (
    <div hidden>
      {peers.map((p) => (p.audio ? <AudioOut key={p.id} track={p.audio} /> : null))}
    </div>
  );
}

function AudioOut({ track }: { track: MediaStreamTrack }) {
  const el = useRef<HTMLAudioElement>(null);
  useEffect(() => {
    const a = el.current;
    if (!a) return;
    a.srcObject = new MediaStream([track]);
    void a.play().catch(() => undefined);
    return () => {
      a.srcObject = null;
    };
  }, [track]);
  return <audio ref={el} autoplay />;
}
