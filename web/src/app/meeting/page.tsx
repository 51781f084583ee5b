// `/<room>`: the server's settings, then the pre-join screen, then the
// meeting. Every way this can fail ends on a page that says what happened
// and what to do, never a blank one.
import { useEffect, useState } from 'preact/hooks';
import { loadMeetConfig, type Conference, type MeetConfig } from '../../lib';
import { t } from '../i18n';
import { stopStream } from '../media';
import { Notice } from '../notice';
import { PreJoin, type PreJoinResult } from '../prejoin';
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

  const join = (config: MeetConfig, r: PreJoinResult) => {
    // ?codec=VP9 or AV1: send that codec (SVC) instead of VP8 simulcast.
    const asked = new URLSearchParams(location.search).get('codec')?.toUpperCase();
    const videoCodec = asked === 'VP9' || asked === 'AV1' ? asked : 'VP8';
    const store = new MeetingStore({ config, room, ...r, videoCodec });
    const ready = store.start().then(() => store.conference);
    window.conclave = {
      get conference() {
        return store.conference;
      },
      ready,
      store,
    };
    setState({ kind: 'joining', store });
    ready.then(
      () => setState({ kind: 'in', store }),
      (err: unknown) => {
        stopStream(r.stream);
        setState({ kind: 'failed', detail: err instanceof Error ? err.message : String(err), config });
      },
    );
  };

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
  }
}
