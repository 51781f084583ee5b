// `/`: start a meeting under a name nobody guesses, or join one by name.
import { useEffect, useState } from 'preact/hooks';
import { t } from './i18n';
import { ErrorText } from './notice';
import { CHAT_PATH, newMeetingName, roomFromInput } from './route';

function go(room: string): void {
  location.assign(`/${encodeURIComponent(room)}`);
}

export function Home() {
  const [name, setName] = useState('');
  const [error, setError] = useState('');
  useEffect(() => {
    document.title = t('home.title');
  }, []);
  const join = (ev: Event) => {
    ev.preventDefault();
    const room = roomFromInput(name);
    if (room === null) {
      const reserved = name.trim().toLowerCase() === CHAT_PATH;
      setError(name.trim() === '' ? t('home.joinEmpty') : reserved ? t('home.joinReserved') : t('home.joinInvalid'));
      return;
    }
    go(room);
  };
  return (
    <main class="home">
      <header class="home-head">
        <h1>{t('app.name')}</h1>
        <p class="tagline">{t('home.tagline')}</p>
      </header>
      <section class="card" aria-labelledby="start-title">
        <h2 id="start-title">{t('home.startTitle')}</h2>
        <p>{t('home.startBody')}</p>
        <button type="button" class="primary" onClick={() => go(newMeetingName())}>
          {t('home.start')}
        </button>
      </section>
      <section class="card" aria-labelledby="join-title">
        <h2 id="join-title">{t('home.joinTitle')}</h2>
        <form class="row" onSubmit={join} noValidate>
          <label for="join-name">{t('home.joinLabel')}</label>
          <input
            id="join-name"
            name="room"
            autocomplete="off"
            spellcheck={false}
            value={name}
            aria-invalid={error !== ''}
            aria-describedby={error !== '' ? 'join-error' : undefined}
            onInput={(e) => {
              setName(e.currentTarget.value);
              setError('');
            }}
          />
          <button type="submit">{t('home.join')}</button>
        </form>
        <ErrorText id="join-error" text={error} />
      </section>
      <section class="card" aria-labelledby="chat-title">
        <h2 id="chat-title">{t('home.chatTitle')}</h2>
        <p>{t('home.chatBody')}</p>
        <a class="button" href="/chat">
          {t('home.chatSignIn')}
        </a>
      </section>
    </main>
  );
}
