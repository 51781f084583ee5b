// Who is here: raised hands first (in the order they went up), then the
// others by name, each with a way to write to them privately.
import { Hand, Mic, MicOff, Video, VideoOff } from 'lucide-preact';
import { t } from '../i18n';
import { displayName } from './tile';
import type { MeetingStore, PeerView } from './store';

function byHandThenName(a: PeerView, b: PeerView): number {
  if (a.raisedHand !== null || b.raisedHand !== null) {
    if (a.raisedHand === null) return 1;
    if (b.raisedHand === null) return -1;
    return a.raisedHand - b.raisedHand;
  }
  return a.name.localeCompare(b.name);
}

export function ParticipantsPanel({
  store,
  local,
  onMessage,
}: {
  store: MeetingStore;
  local: PeerView;
  onMessage: (id: string) => void;
}) {
  const everyone = [local, ...[...store.peers.value.values()].sort(byHandThenName)];
  return (
    <section class="panel participants" aria-labelledby="participants-title">
      <h2 id="participants-title">{t('participants.title', { count: everyone.length })}</h2>
      <ul class="people">
        {everyone.map((p) => (
          <li key={p.id} data-endpoint={p.id}>
            <span class="who">
              <span class="name">{displayName(p)}</span>
              {p.moderator && <span class="tag">{t('participants.moderator')}</span>}
            </span>
            <span class="state">
              {p.raisedHand !== null && (
                <span role="img" aria-label={t('tile.handRaised')}>
                  <Hand size={18} aria-hidden="true" />
                </span>
              )}
              <span role="img" aria-label={p.audioMuted ? t('participants.micOff') : t('participants.micOn')}>
                {p.audioMuted ? <MicOff size={18} aria-hidden="true" /> : <Mic size={18} aria-hidden="true" />}
              </span>
              <span role="img" aria-label={p.videoMuted ? t('participants.cameraOff') : t('participants.cameraOn')}>
                {p.videoMuted ? <VideoOff size={18} aria-hidden="true" /> : <Video size={18} aria-hidden="true" />}
              </span>
            </span>
            {!p.local && (
              <button type="button" class="small" onClick={() => onMessage(p.id)}>
                {t('participants.message', { name: displayName(p) })}
              </button>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}
