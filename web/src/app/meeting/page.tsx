// `/<room>`: the server's settings, then the pre-join screen, then the
// meeting. Every way this can fail ends on a page that says what happened
// and what to do, never a blank one.
import { useEffect, useRef, useState } from 'preact/hooks';
import { JoinError, loadMeetConfig, type Conference, type MeetConfig } from '../../lib';
import { AutoJoin, attachEmbed, embedPasswordPrompt, reportEmbedError, skipsPrejoin } from '../embed';
import { t } from '../i18n';
import { stopStream } from '../media';
import { ErrorText, HomeLink, Notice } from '../notice';
import { PreJoin, type PreJoinResult } from '../prejoin';
import { savedCredentials } from '../session';
import { Meeting } from './meeting';
import { MeetingStore } from './store';

declare global {
  interface Window {
    /** For scripted tests (Playwright): the meeting, once joined. */
    conclave?: { readonly conference: Conference; ready: Promise<Conference>; store: MeetingStore };
  }
}

type State =
  | { kind: 'loading' }
  | { kind: 'unreachable'; detail: string }
  | { kind: 'prejoin'; config: MeetConfig }
  | { kind: 'joining'; store: MeetingStore }
  | { kind: 'failed'; detail: string; config: MeetConfig }
  | { kind: 'password'; store: MeetingStore; wrong: boolean }
  | { kind: 'lobby'; store: MeetingStore }
  | { kind: 'denied' }
  | { kind: 'in'; store: MeetingStore };

export function MeetingPage({ room }: { room: string }) {
  const [state, setState] = useState<State>({ kind: 'loading' });
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    document.title = t('meeting.title', { room });
  }, [room]);
  useEffect(() => {
    let live = true;
    loadMeetConfig()
      .then((config) => live && setState({ kind: 'prejoin', config }))
      .catch((err: unknown) => live && setState({ kind: 'unreachable', detail: String(err) }));
    return () => {
      live = false;
    };
  }, [attempt]);

  // An embedding site hears of each failure shown here, and may answer a
  // password request itself.
  useEffect(() => {
    embedPasswordPrompt(state.kind === 'password' ? (pw) => retry.current(pw) : null);
    switch (state.kind) {
      case 'unreachable':
        reportEmbedError({ name: 'connection.otherError', type: 'CONNECTION', message: state.detail, isFatal: true });
        break;
      case 'failed':
        reportEmbedError({ name: 'conference.setupFailed', type: 'CONFERENCE', message: state.detail, isFatal: true });
        break;
      case 'password':
        reportEmbedError({
          name: 'conference.authenticationRequired',
          type: 'CONFERENCE',
          message: state.wrong ? 'wrong password' : 'the meeting is locked with a password',
          isFatal: false,
        });
        break;
      case 'denied':
        reportEmbedError({ name: 'conference.conferenceAccessDenied', type: 'CONFERENCE', message: 'denied by the lobby', isFatal: true });
        break;
    }
  }, [state]);

  const join = (config: MeetConfig, r: PreJoinResult) => {
    // ?codec=VP9 or AV1: send that codec (SVC) instead of VP8 simulcast.
    const asked = new URLSearchParams(location.search).get('codec')?.toUpperCase();
    const videoCodec = asked === 'VP9' || asked === 'AV1' ? asked : 'VP8';
    // Signed in to chat in this tab: join as the account (groups' rooms are
    // members-only, and only accounts may share files).
    const credentials = savedCredentials();
    const store = new MeetingStore({ config, room, ...r, videoCodec, ...(credentials !== null ? { credentials } : {}) });
    attachEmbed(store, room);
    let admitted: (c: Conference) => void = () => undefined;
    const ready = new Promise<Conference>((resolve) => {
      admitted = resolve;
    });
    window.conclave = {
      get conference() {
        return store.conference;
      },
      ready,
      store,
    };
    setState({ kind: 'joining', store });
    const settle = (p: Promise<void>, wrongPassword = false): void => {
      p.then(
        () => {
          admitted(store.conference);
          setState({ kind: 'in', store });
        },
        (err: unknown) => {
          if (err instanceof JoinError && err.needsPassword) {
            setState({ kind: 'password', store, wrong: wrongPassword });
          } else if (err instanceof JoinError && err.lobby) {
            setState({ kind: 'lobby', store });
            settle(store.knock());
          } else if (err instanceof Error && err.message === 'denied') {
            void store.leave();
            setState({ kind: 'denied' });
          } else {
            void store.leave();
            stopStream(r.stream);
            setState({ kind: 'failed', detail: err instanceof Error ? err.message : String(err), config });
          }
        },
      );
    };
    retry.current = (password: string) => settle(store.retryJoin(password), true);
    settle(store.start());
  };
  const retry = useRef<(password: string) => void>(() => undefined);

  switch (state.kind) {
    case 'loading':
      return <Notice title={t('meeting.loading')} busy />;
    case 'unreachable':
      return (
        <Notice title={t('errors.unreachableTitle')} body={t('errors.unreachableBody')} detail={state.detail}>
          <button type="button" class="primary" onClick={() => setAttempt(attempt + 1)}>
            {t('errors.retry')}
          </button>
        </Notice>
      );
    case 'prejoin':
      if (skipsPrejoin()) return <AutoJoin room={room} onJoin={(r) => join(state.config, r)} />;
      return <PreJoin room={room} onJoin={(r) => join(state.config, r)} />;
    case 'joining':
      return <Notice title={t('meeting.joining', { room })} busy />;
    case 'failed':
      return (
        <Notice title={t('errors.joinFailedTitle')} body={t('errors.joinFailedBody')} detail={state.detail}>
          <button type="button" class="primary" onClick={() => setState({ kind: 'prejoin', config: state.config })}>
            {t('errors.retry')}
          </button>
        </Notice>
      );
    case 'in':
      return <Meeting store={state.store} room={room} />;
    case 'password':
      return <PasswordPrompt wrong={state.wrong} onSubmit={(pw) => retry.current(pw)} />;
    case 'lobby':
      return (
        <Notice title={t('lobby.waitingTitle')} body={t('lobby.waitingBody')} busy>
          <button type="button" onClick={() => void state.store.leave().then(() => setState({ kind: 'denied' }))}>
            {t('lobby.cancel')}
          </button>
        </Notice>
      );
    case 'denied':
      return <Notice title={t('lobby.deniedTitle')} body={t('lobby.deniedBody')} />;
  }
}

function PasswordPrompt(props: { wrong: boolean; onSubmit: (password: string) => void }) {
  const [password, setPassword] = useState('');
  return (
    <main class="centered">
      <form
        class="card"
        aria-labelledby="password-title"
        onSubmit={(e) => {
          e.preventDefault();
          if (password !== '') props.onSubmit(password);
        }}
      >
        <h1 id="password-title">{t('password.title')}</h1>
        <p>{t('password.body')}</p>
        <label for="room-password">{t('password.label')}</label>
        <div class="row">
          <input
            id="room-password"
            type="password"
            autocomplete="off"
            value={password}
            aria-invalid={props.wrong}
            aria-describedby={props.wrong ? 'password-wrong' : undefined}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
          <button type="submit" class="primary">
            {t('password.join')}
          </button>
          <HomeLink />
        </div>
        <ErrorText id="password-wrong" text={props.wrong ? t('password.wrong') : ''} />
      </form>
    </main>
  );
}
