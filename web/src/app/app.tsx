import { useEffect, useState } from 'preact/hooks';
import { t } from './i18n';
import { ChatPage } from './chat/page';
import { Home } from './home';
import { MeetingPage } from './meeting/page';
import { routeOf, type Route } from './route';

export function App() {
  const [route, setRoute] = useState<Route>(() => routeOf(location.pathname));
  useEffect(() => {
    const onPop = () => setRoute(routeOf(location.pathname));
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  switch (route.kind) {
    case 'home':
      return <Home />;
    case 'chat':
      return <ChatPage conversation={route.conversation} />;
    case 'bad-room':
      return <BadRoom raw={route.raw} />;
    case 'meeting':
      return <MeetingPage room={route.room} />;
  }
}

function BadRoom({ raw }: { raw: string }) {
  useEffect(() => {
    document.title = t('badRoom.title');
  }, []);
  return (
    <main class="centered">
      <section class="card" aria-labelledby="bad-room-title">
        <h1 id="bad-room-title">{t('badRoom.title')}</h1>
        <p>{t('badRoom.body', { name: raw })}</p>
        <p>{t('badRoom.hint')}</p>
        <a class="button primary" href="/">
          {t('badRoom.home')}
        </a>
      </section>
    </main>
  );
}
