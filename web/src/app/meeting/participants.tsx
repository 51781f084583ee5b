// Who is here: raised hands first (in the order they went up), then the
// others by name, each with a way to write to them privately.
import { Hand, Mic, MicOff, Video, VideoOff } from 'lucide-preact';
import { useState } from 'preact/hooks';
import { t } from '../i18n';
import { ErrorText } from '../notice';
import { InvitePeople } from './invite';
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
  const mod = store.isModerator.value;
  const act = (f: () => Promise<void>) => () => void f().catch(() => (store.notice.value = t('moderation.failed')));
  return (
    <section class="panel participants" aria-labelledby="participants-title">
      <h2 id="participants-title">{t('participants.title', { count: everyone.length })}</h2>
      <InvitePeople room={store.room} />
      {mod && <ModeratorTools store={store} />}
      {store.knockers.value.length > 0 && (
        <section class="lobby-list" aria-labelledby="lobby-title">
          <h3 id="lobby-title">{t('lobby.listTitle')}</h3>
          <ul class="people">
            {store.knockers.value.map((k) => {
              const name = k.displayName !== '' ? k.displayName : t('tile.guest');
              return (
                <li key={k.id}>
                  <span class="who">{name}</span>
                  <button type="button" class="small primary" onClick={act(() => store.admit(k.id))}>
                    {t('lobby.admit', { name })}
                  </button>
                  <button type="button" class="small" onClick={act(() => store.deny(k.id))}>
                    {t('lobby.deny', { name })}
                  </button>
                </li>
              );
            })}
          </ul>
        </section>
      )}
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
              <div class="actions">
                <button type="button" class="small" onClick={() => onMessage(p.id)}>
                  {t('participants.message', { name: displayName(p) })}
                </button>
                {mod && !p.audioMuted && (
                  <button type="button" class="small" onClick={act(() => store.muteParticipant(p.id))}>
                    {t('moderation.mute', { name: displayName(p) })}
                  </button>
                )}
                {mod && !p.moderator && (
                  <button type="button" class="small" onClick={act(() => store.grantModerator(p.id))}>
                    {t('moderation.makeModerator', { name: displayName(p) })}
                  </button>
                )}
                {mod && (
                  <button type="button" class="small danger" onClick={act(() => store.kick(p.id))}>
                    {t('moderation.remove', { name: displayName(p) })}
                  </button>
                )}
              </div>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** A moderator's controls for the whole meeting. */
function ModeratorTools({ store }: { store: MeetingStore }) {
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const run = (f: () => Promise<void>) => {
    setError('');
    f().catch(() => setError(t('moderation.failed')));
  };
  const locked = store.locked.value;
  return (
    <section class="moderator" aria-labelledby="moderator-title">
      <h3 id="moderator-title">{t('moderation.title')}</h3>
      <div class="row">
        <button type="button" class="small" onClick={() => run(() => store.muteAll())}>
          {t('moderation.muteAll')}
        </button>
        <button type="button" class="small" aria-pressed={store.lobbyOn.value} onClick={() => run(() => store.setLobby(!store.lobbyOn.value))}>
          {t('moderation.lobby')}
        </button>
        <button type="button" class="small danger" onClick={() => run(() => store.endForAll())}>
          {t('moderation.endForAll')}
        </button>
      </div>
      {locked ? (
        <div class="row">
          <span>{t('moderation.locked')}</span>
          <button type="button" class="small" onClick={() => run(() => store.setPassword(''))}>
            {t('moderation.unlock')}
          </button>
        </div>
      ) : (
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            if (password !== '') run(() => store.setPassword(password).then(() => setPassword('')));
          }}
        >
          <label for="lock-password">{t('moderation.passwordLabel')}</label>
          <input id="lock-password" type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
          <button type="submit" class="small">
            {t('moderation.lock')}
          </button>
        </form>
      )}
      <ErrorText text={error} />
    </section>
  );
}
