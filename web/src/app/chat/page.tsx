// `/chat`: sign in, then the conversations. Signed in stays signed in for
// this tab (a reload signs in again from ../session.ts); signing out or
// closing the tab forgets the password.
import { useEffect, useState } from 'preact/hooks';
import { SignInError, loadMeetConfig, type MeetConfig } from '../../lib';
import { t } from '../i18n';
import { ErrorText, Notice } from '../notice';
import { savedCredentials, saveCredentials } from '../session';
import { ChatApp } from './app';
import { ChatStore } from './store';

declare global {
  interface Window {
    /** For scripted tests (Playwright): the signed-in chat. */
    conclaveChat?: ChatStore;
  }
}

type State =
  | { kind: 'loading' }
  | { kind: 'unreachable'; detail: string }
  | { kind: 'signin'; config: MeetConfig; error: string }
  | { kind: 'signing-in'; config: MeetConfig }
  | { kind: 'in'; store: ChatStore; config: MeetConfig };

export function ChatPage({ conversation }: { conversation?: string | undefined }) {
  const [state, setState] = useState<State>({ kind: 'loading' });
  const [attempt, setAttempt] = useState(0);

  const signIn = (config: MeetConfig, username: string, password: string) => {
    setState({ kind: 'signing-in', config });
    ChatStore.signIn(config, { username, password }).then(
      (store) => {
        window.conclaveChat = store;
        setState({ kind: 'in', store, config });
        if (conversation !== undefined) void store.open(conversation);
      },
      (err: unknown) => {
        saveCredentials(null);
        const why =
          err instanceof SignInError && err.reason === 'credentials'
            ? err.message === 'The username or password is wrong'
              ? t('signIn.wrong')
              : t('signIn.otherServer', { domain: config.domain })
            : t('signIn.unreachable');
        setState({ kind: 'signin', config, error: why });
      },
    );
  };

  useEffect(() => {
    document.title = t('chatApp.title');
    let live = true;
    loadMeetConfig().then(
      (config) => {
        if (!live) return;
        const saved = savedCredentials();
        if (saved !== null) signIn(config, saved.username, saved.password);
        else setState({ kind: 'signin', config, error: '' });
      },
      (err: unknown) => live && setState({ kind: 'unreachable', detail: String(err) }),
    );
    return () => {
      live = false;
    };
  }, [attempt]);

  switch (state.kind) {
    case 'loading':
    case 'signing-in':
      return <Notice title={t('signIn.signingIn')} busy />;
    case 'unreachable':
      return (
        <Notice title={t('errors.unreachableTitle')} detail={state.detail}>
          <p>{t('errors.unreachableBody')}</p>
          <button type="button" class="primary" onClick={() => setAttempt((n) => n + 1)}>
            {t('errors.retry')}
          </button>
        </Notice>
      );
    case 'signin':
      return <SignIn config={state.config} error={state.error} onSubmit={(u, p) => signIn(state.config, u, p)} />;
    case 'in':
      return (
        <ChatApp
          store={state.store}
          onSignOut={() => {
            void state.store.signOut();
            window.conclaveChat = undefined;
            setState({ kind: 'signin', config: state.config, error: '' });
          }}
        />
      );
  }
}

function SignIn({ config, error, onSubmit }: { config: MeetConfig; error: string; onSubmit: (u: string, p: string) => void }) {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [local, setLocal] = useState('');
  const submit = (ev: Event) => {
    ev.preventDefault();
    if (user.trim() === '' || password === '') {
      setLocal(t('signIn.missing'));
      return;
    }
    onSubmit(user, password);
  };
  const shown = local !== '' ? local : error;
  return (
    <main class="centered">
      <section class="card" aria-labelledby="signin-title">
        <h1 id="signin-title">{t('signIn.title')}</h1>
        <p>{t('signIn.body', { domain: config.domain })}</p>
        <form class="stack" onSubmit={submit} noValidate>
          <label for="signin-user">{t('signIn.username')}</label>
          <input
            id="signin-user"
            name="username"
            autocomplete="username"
            autocapitalize="none"
            spellcheck={false}
            value={user}
            onInput={(e) => {
              setUser(e.currentTarget.value);
              setLocal('');
            }}
          />
          <label for="signin-password">{t('signIn.password')}</label>
          <input
            id="signin-password"
            name="password"
            type="password"
            autocomplete="current-password"
            value={password}
            aria-invalid={shown !== ''}
            aria-describedby={shown !== '' ? 'signin-error' : undefined}
            onInput={(e) => {
              setPassword(e.currentTarget.value);
              setLocal('');
            }}
          />
          <button type="submit" class="primary">
            {t('signIn.submit')}
          </button>
        </form>
        <ErrorText id="signin-error" text={shown} />
        <p>
          <a href="/">{t('signIn.meetingsInstead')}</a>
        </p>
      </section>
    </main>
  );
}
