// The meeting screen: the layout, the side panel (chat or participants),
// the toolbar, reactions, and banners for what is going on.
import {
  Hand,
  MessageSquare,
  Mic,
  MicOff,
  MonitorUp,
  PhoneOff,
  Presentation,
  Smile,
  Users,
  Video,
  VideoOff,
} from 'lucide-preact';
import { useEffect, useState } from 'preact/hooks';
import { t } from '../i18n';
import { ErrorText, Notice } from '../notice';
import { ChatPanel } from './chat';
import { Grid, Stage } from './layout';
import { ParticipantsPanel } from './participants';
import { REACTIONS, type MeetingStore, type PeerView } from './store';
import { RemoteAudio } from './tile';

/** Jitsi Meet's keys, so its users' fingers already know them. */
const SHORTCUTS: Record<string, (s: MeetingStore) => void> = {
  m: (s) => s.toggleAudio(),
  v: (s) => void s.toggleVideo(),
  r: (s) => s.toggleHand(),
  c: (s) => s.openPanel('chat'),
  p: (s) => s.openPanel('participants'),
  w: (s) => (s.layout.value = s.layout.value === 'tile' ? 'stage' : 'tile'),
};

function isTyping(target: EventTarget | null): boolean {
  return target instanceof HTMLElement && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
}

export function Meeting({ store, room }: { store: MeetingStore; room: string }) {
  const phase = store.phase.value;
  const [reactionsOpen, setReactionsOpen] = useState(false);
  const [shareError, setShareError] = useState('');

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target)) return;
      const f = SHORTCUTS[e.key.toLowerCase()];
      if (f) {
        e.preventDefault();
        f(store);
      }
    };
    const onHide = () => void store.leave();
    window.addEventListener('keydown', onKey);
    window.addEventListener('pagehide', onHide);
    return () => {
      window.removeEventListener('keydown', onKey);
      window.removeEventListener('pagehide', onHide);
    };
  }, [store]);

  if (phase === 'left' || phase === 'kicked' || phase === 'ended') return <Ended store={store} />;

  const local: PeerView = {
    id: store.localId.value,
    name: store.displayName.value,
    local: true,
    audioMuted: store.audioMuted.value,
    videoMuted: store.videoMuted.value,
    videoType: store.sharing.value ? 'desktop' : 'camera',
    raisedHand: store.handRaised.value ? 0 : null,
    moderator: false,
    video: store.localStream.value?.getVideoTracks()[0] ?? null,
    audio: null,
    quality: store.quality.value,
  };
  const peers = [...store.peers.value.values()];
  const layout = store.layout.value;
  const panel = store.panel.value;
  const unread = store.unread.value;
  const hasAudio = (store.localStream.value?.getAudioTracks().length ?? 0) > 0;
  const hasVideo = (store.localStream.value?.getVideoTracks().length ?? 0) > 0;
  // Phones' browsers have no screen capture.
  const md = navigator.mediaDevices as MediaDevices | undefined;
  const canShare = md !== undefined && 'getDisplayMedia' in md;

  const toggleShare = () => {
    setShareError('');
    if (store.sharing.value) void store.stopScreenShare();
    else
      store.startScreenShare().catch((err: unknown) => {
        // Closing the browser's picker is a choice, not an error.
        if (!(err instanceof DOMException && err.name === 'NotAllowedError')) setShareError(t('controls.shareFailed'));
      });
  };

  return (
    <div class={`meeting${panel !== null ? ' with-panel' : ''}`} data-layout={layout}>
      <header class="meeting-bar">
        <h1 class="room">{room}</h1>
        <span class="count">{t('meeting.count', { count: peers.length + 1 })}</span>
        {store.quality.value !== null && (
          <span class={`quality q-${store.quality.value}`} role="img" aria-label={t('quality.yours', { quality: t(`quality.${store.quality.value}`) })} />
        )}
      </header>
      {phase === 'reconnecting' && (
        <p class="banner warn" role="status">
          {t('meeting.reconnecting')}
        </p>
      )}
      {store.notice.value !== '' && (
        <p class="banner" role="status">
          {store.notice.value}{' '}
          <button type="button" class="link" onClick={() => (store.notice.value = '')}>
            {t('common.dismiss')}
          </button>
        </p>
      )}
      {store.isModerator.value && store.knockers.value.length > 0 && panel !== 'participants' && (
        <div class="banner" role="status">
          {t('lobby.knocking', { name: store.knockers.value[0]?.displayName || t('tile.guest'), count: store.knockers.value.length })}{' '}
          <button type="button" class="small" onClick={() => store.openPanel('participants')}>
            {t('lobby.show')}
          </button>
        </div>
      )}
      <ErrorText text={shareError} banner />
      <ErrorText text={store.mediaError.value} banner />
      <main class="view" aria-label={t('layout.label')}>
        {layout === 'tile' ? <Grid store={store} local={local} /> : <Stage store={store} local={local} />}
        {store.peers.value.size === 0 && panel !== 'participants' && (
          <div class="alone">
            <span>{t('invite.alone')}</span>
            <button type="button" class="small primary" onClick={() => store.openPanel('participants')}>
              {t('invite.aloneAction')}
            </button>
          </div>
        )}
        <ol class="reactions" aria-live="polite">
          {store.reactions.value.map((r) => (
            <li key={r.key}>
              <span aria-hidden="true">{r.emoji}</span>{' '}
              <span>{r.from === local.id ? t('chat.you') : store.nameOf(r.from) || t('tile.guest')}</span>
            </li>
          ))}
        </ol>
      </main>
      {panel === 'chat' && <ChatPanel store={store} />}
      {panel === 'participants' && (
        <ParticipantsPanel store={store} local={local} onMessage={(id) => store.messagePrivately(id)} />
      )}
      <nav class="toolbar" aria-label={t('controls.label')}>
        <button type="button" class="mute" aria-pressed={local.audioMuted} aria-keyshortcuts="M" disabled={!hasAudio} onClick={() => store.toggleAudio()}>
          {local.audioMuted ? <MicOff aria-hidden="true" /> : <Mic aria-hidden="true" />}
          <span class="label">{t('controls.muteMic')}</span>
        </button>
        <button type="button" class="mute" aria-pressed={local.videoMuted} aria-keyshortcuts="V" disabled={!hasVideo} onClick={() => void store.toggleVideo()}>
          {local.videoMuted ? <VideoOff aria-hidden="true" /> : <Video aria-hidden="true" />}
          <span class="label">{t('controls.stopCamera')}</span>
        </button>
        {canShare && (
          <button type="button" aria-pressed={store.sharing.value} onClick={toggleShare}>
            <MonitorUp aria-hidden="true" />
            <span class="label">{t('controls.share')}</span>
          </button>
        )}
        <button type="button" aria-pressed={store.handRaised.value} aria-keyshortcuts="R" onClick={() => store.toggleHand()}>
          <Hand aria-hidden="true" />
          <span class="label">{t('controls.raiseHand')}</span>
        </button>
        <div class="menu-anchor">
          <button type="button" aria-expanded={reactionsOpen} aria-controls="reactions-menu" onClick={() => setReactionsOpen(!reactionsOpen)}>
            <Smile aria-hidden="true" />
            <span class="label">{t('controls.react')}</span>
          </button>
          {reactionsOpen && (
            <div id="reactions-menu" class="menu" role="group" aria-label={t('controls.react')}>
              {Object.entries(REACTIONS).map(([name, emoji]) => (
                <button
                  key={name}
                  type="button"
                  class="icon"
                  aria-label={t(`reactions.${name}`)}
                  title={t(`reactions.${name}`)}
                  onClick={() => {
                    store.react(name);
                    setReactionsOpen(false);
                  }}
                >
                  {emoji}
                </button>
              ))}
            </div>
          )}
        </div>
        <button type="button" aria-pressed={panel === 'chat'} aria-keyshortcuts="C" onClick={() => store.openPanel('chat')}>
          <MessageSquare aria-hidden="true" />
          <span class="label">{t('controls.chat')}</span>
          {unread > 0 && <span class="unread">{t('controls.unread', { count: unread })}</span>}
        </button>
        <button type="button" aria-pressed={panel === 'participants'} aria-keyshortcuts="P" onClick={() => store.openPanel('participants')}>
          <Users aria-hidden="true" />
          <span class="label">{t('controls.participants')}</span>
        </button>
        <button
          type="button"
          aria-pressed={layout === 'stage'}
          aria-keyshortcuts="W"
          onClick={() => (store.layout.value = layout === 'tile' ? 'stage' : 'tile')}
        >
          <Presentation aria-hidden="true" />
          <span class="label">{t('controls.stageView')}</span>
        </button>
        <button type="button" class="danger" onClick={() => void store.leave()}>
          <PhoneOff aria-hidden="true" />
          <span class="label">{t('controls.leave')}</span>
        </button>
      </nav>
      <RemoteAudio peers={peers} />
    </div>
  );
}

function Ended({ store }: { store: MeetingStore }) {
  const phase = store.phase.value;
  const reason = store.failure.value;
  const title = phase === 'kicked' ? t('ended.kicked') : phase === 'ended' ? t('ended.ended') : t('ended.left');
  return (
    <Notice title={title} body={phase === 'kicked' && reason !== '' ? t('ended.reason', { reason }) : undefined}>
      <button type="button" class="primary" onClick={() => location.reload()}>
        {t('ended.rejoin')}
      </button>
    </Notice>
  );
}
