// The signed-in chat: the list of conversations (contacts and groups, with
// presence and unread counts), requests and invitations, search, and the
// open conversation. On a phone the list and the conversation are two
// screens; on a desktop they sit side by side.
import { useEffect, useState } from 'preact/hooks';
import { ArrowLeft, Bell, LogOut, Search, UserPlus, Users } from 'lucide-preact';
import type { ChatItem } from '../../lib';
import { t } from '../i18n';
import { ErrorText } from '../notice';
import { ConversationView } from './conversation';
import { preview } from './model';
import type { ChatStore, Contact } from './store';

export function ChatApp({ store, onSignOut }: { store: ChatStore; onSignOut: () => void }) {
  const active = store.active.value;
  const unread = store.totalUnread.value;
  const [dialog, setDialog] = useState<'contact' | 'group' | null>(null);
  useEffect(() => {
    document.title = unread > 0 ? t('chatApp.titleUnread', { count: unread }) : t('chatApp.title');
  }, [unread]);
  useEffect(() => {
    const seen = () => {
      const a = store.active.value;
      if (a !== null && document.visibilityState === 'visible') void store.open(a);
    };
    document.addEventListener('visibilitychange', seen);
    return () => document.removeEventListener('visibilitychange', seen);
  }, [store]);
  return (
    <div class={`chat-app${active !== null ? ' has-active' : ''}`}>
      <aside class="chat-side" aria-label={t('chatApp.conversations')}>
        <header class="chat-side-head">
          <h1>{t('chatApp.title')}</h1>
          <span class="me" title={store.me}>
            {store.me}
          </span>
          <button type="button" class="icon" aria-label={t('chatApp.signOut')} title={t('chatApp.signOut')} onClick={onSignOut}>
            <LogOut aria-hidden="true" size={18} />
          </button>
        </header>
        {store.status.value === 'reconnecting' && (
          <p class="banner" role="status">
            {t('meeting.reconnecting')}
          </p>
        )}
        <SearchBox store={store} />
        <div class="row side-actions">
          <button type="button" class="small" onClick={() => setDialog('contact')}>
            <UserPlus aria-hidden="true" size={16} /> {t('chatApp.addContact')}
          </button>
          <button type="button" class="small" onClick={() => setDialog('group')}>
            <Users aria-hidden="true" size={16} /> {t('chatApp.newGroup')}
          </button>
          {!store.notificationsAllowed.value && typeof Notification !== 'undefined' && Notification.permission !== 'denied' && (
            <button type="button" class="small" onClick={() => void store.enableNotifications()}>
              <Bell aria-hidden="true" size={16} /> {t('chatApp.enableNotifications')}
            </button>
          )}
        </div>
        {dialog === 'contact' && <AddContact store={store} onClose={() => setDialog(null)} />}
        {dialog === 'group' && <NewGroup store={store} onClose={() => setDialog(null)} />}
        <Requests store={store} />
        <ConversationList store={store} />
      </aside>
      <main class="chat-main">
        {store.search.value !== null ? (
          <SearchResults store={store} />
        ) : active !== null ? (
          <ConversationView key={active} store={store} jid={active} />
        ) : (
          <div class="chat-empty">
            <h2>{t('chatApp.pickTitle')}</h2>
            <p>{t('chatApp.pickBody')}</p>
          </div>
        )}
      </main>
    </div>
  );
}

function Presence({ contact }: { contact: Contact | undefined }) {
  if (contact === undefined) return null;
  const label = t(`presence.${contact.show}`);
  return <span class={`presence p-${contact.show}`} role="img" aria-label={label} title={label} />;
}

function ConversationList({ store }: { store: ChatStore }) {
  const convs = [...store.conversations.value.values()];
  const contacts = store.contacts.value;
  const last = (jid: string) => {
    const c = store.conversations.value.get(jid);
    return c !== undefined ? (preview(c)?.stamp ?? 0) : 0;
  };
  convs.sort((a, b) => last(b.jid) - last(a.jid) || store.nameOf(a.jid).localeCompare(store.nameOf(b.jid)));
  if (convs.length === 0) return <p class="side-empty">{t('chatApp.noConversations')}</p>;
  return (
    <nav aria-label={t('chatApp.conversations')}>
      <ul class="conv-list">
        {convs.map((c) => {
          const p = preview(c);
          const contact = contacts.get(c.jid);
          const muted = store.muted.value.has(c.jid);
          return (
            <li key={c.jid}>
              <button
                type="button"
                class="conv"
                aria-current={store.active.value === c.jid ? 'true' : undefined}
                onClick={() => void store.open(c.jid)}
              >
                {c.groupchat ? <Users aria-hidden="true" size={16} /> : <Presence contact={contact} />}
                <span class="conv-text">
                  <span class="conv-name">{store.nameOf(c.jid)}</span>
                  {contact?.pending === true && <span class="conv-preview">{t('chatApp.pending')}</span>}
                  {p !== undefined && <span class="conv-preview">{p.file !== undefined ? t('chatApp.sentFile') : p.text}</span>}
                </span>
                {c.unread > 0 && (
                  <span class={`unread${muted ? ' muted' : ''}`} aria-label={t('chatApp.unread', { count: c.unread })}>
                    {c.unread}
                  </span>
                )}
              </button>
            </li>
          );
        })}
      </ul>
    </nav>
  );
}

function Requests({ store }: { store: ChatStore }) {
  const requests = store.requests.value;
  const invites = store.invites.value;
  if (requests.length === 0 && invites.length === 0) return null;
  return (
    <section class="requests" aria-labelledby="requests-title">
      <h2 id="requests-title">{t('chatApp.requests')}</h2>
      <ul>
        {requests.map((jid) => (
          <Ask key={jid} text={t('chatApp.wantsToConnect', { jid })} yes={t('chatApp.accept')} onAnswer={(ok) => void store.answerRequest(jid, ok)} />
        ))}
        {invites.map((inv) => (
          <Ask
            key={inv.room}
            text={t('chatApp.invitedTo', { name: inv.reason !== '' ? inv.reason : inv.room, from: store.nameOf(inv.from) })}
            yes={t('chatApp.joinGroup')}
            onAnswer={(ok) => void store.answerInvite(inv, ok)}
          />
        ))}
      </ul>
    </section>
  );
}

/** A question with a yes and a "Decline". */
function Ask({ text, yes, onAnswer }: { text: string; yes: string; onAnswer: (yes: boolean) => void }) {
  return (
    <li>
      <span>{text}</span>
      <span class="row">
        <button type="button" class="small primary" onClick={() => onAnswer(true)}>
          {yes}
        </button>
        <button type="button" class="small" onClick={() => onAnswer(false)}>
          {t('chatApp.decline')}
        </button>
      </span>
    </li>
  );
}

function SearchBox({ store }: { store: ChatStore }) {
  const [text, setText] = useState('');
  return (
    <form
      class="search"
      role="search"
      onSubmit={(e) => {
        e.preventDefault();
        void store.runSearch(text);
      }}
    >
      <label for="chat-search" class="visually-hidden">
        {t('chatApp.search')}
      </label>
      <input id="chat-search" type="search" placeholder={t('chatApp.searchPlaceholder')} value={text} onInput={(e) => setText(e.currentTarget.value)} />
      <button type="submit" class="icon" aria-label={t('chatApp.search')}>
        <Search aria-hidden="true" size={18} />
      </button>
    </form>
  );
}

function SearchResults({ store }: { store: ChatStore }) {
  const s = store.search.value;
  if (s === null) return null;
  return (
    <section class="search-results" aria-labelledby="search-title">
      <header class="conv-head">
        <button type="button" class="icon" aria-label={t('chatApp.closeSearch')} onClick={() => (store.search.value = null)}>
          <ArrowLeft aria-hidden="true" size={18} />
        </button>
        <h2 id="search-title">{t('chatApp.resultsFor', { text: s.text })}</h2>
      </header>
      {s.results === null ? (
        <p role="status">{t('chatApp.searching')}</p>
      ) : s.results.length === 0 ? (
        <p role="status">{t('chatApp.noResults')}</p>
      ) : (
        <ul class="results">
          {s.results.map((r: ChatItem) => (
            <li key={`${r.conversation}-${r.stanzaId ?? r.id}`}>
              <button type="button" class="result" onClick={() => void store.open(r.conversation)}>
                <span class="meta">
                  <b>{store.nameOf(r.conversation)}</b> · {store.senderName(r)} ·{' '}
                  <time dateTime={new Date(r.stamp).toISOString()}>{new Date(r.stamp).toLocaleString()}</time>
                </span>
                <span class="text">{r.text}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

const JID = /^[^@\s/]+@[^@\s/]+$/;

function AddContact({ store, onClose }: { store: ChatStore; onClose: () => void }) {
  const [jid, setJid] = useState('');
  const [name, setName] = useState('');
  const [error, setError] = useState('');
  const submit = (e: Event) => {
    e.preventDefault();
    const j = jid.trim().includes('@') ? jid.trim() : `${jid.trim()}@${store.me.split('@')[1] ?? ''}`;
    if (!JID.test(j)) {
      setError(t('chatApp.badAddress', { domain: store.me.split('@')[1] ?? '' }));
      return;
    }
    if (j.toLowerCase() === store.me) {
      setError(t('chatApp.notYourself'));
      return;
    }
    store.addContact(j, name.trim()).then(onClose, () => setError(t('chatApp.addFailed')));
  };
  return (
    <form class="side-form" onSubmit={submit} aria-labelledby="add-contact-title" noValidate>
      <h2 id="add-contact-title">{t('chatApp.addContact')}</h2>
      <label for="contact-jid">{t('chatApp.contactAddress')}</label>
      <input id="contact-jid" autocapitalize="none" spellcheck={false} value={jid} onInput={(e) => setJid(e.currentTarget.value)} />
      <label for="contact-name">{t('chatApp.contactName')}</label>
      <input id="contact-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      <ErrorText text={error} />
      <div class="row">
        <button type="submit" class="primary small">
          {t('chatApp.add')}
        </button>
        <button type="button" class="small" onClick={onClose}>
          {t('chatApp.cancel')}
        </button>
      </div>
    </form>
  );
}

function NewGroup({ store, onClose }: { store: ChatStore; onClose: () => void }) {
  const [name, setName] = useState('');
  const [members, setMembers] = useState<readonly string[]>([]);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const contacts = [...store.contacts.value.values()];
  const submit = (e: Event) => {
    e.preventDefault();
    if (name.trim() === '') {
      setError(t('chatApp.groupNameMissing'));
      return;
    }
    setBusy(true);
    store.createGroup(name.trim(), [...members]).then(onClose, () => {
      setBusy(false);
      setError(t('chatApp.groupFailed'));
    });
  };
  return (
    <form class="side-form" onSubmit={submit} aria-labelledby="new-group-title" noValidate>
      <h2 id="new-group-title">{t('chatApp.newGroup')}</h2>
      <label for="group-name">{t('chatApp.groupName')}</label>
      <input id="group-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      <fieldset>
        <legend>{t('chatApp.members')}</legend>
        {contacts.length === 0 && <p class="detail">{t('chatApp.noContacts')}</p>}
        {contacts.map((c) => (
          <label key={c.jid} class="check">
            <input
              type="checkbox"
              checked={members.includes(c.jid)}
              onChange={(e) => setMembers(e.currentTarget.checked ? [...members, c.jid] : members.filter((m) => m !== c.jid))}
            />
            {store.nameOf(c.jid)}
          </label>
        ))}
      </fieldset>
      <ErrorText text={error} />
      <div class="row">
        <button type="submit" class="primary small" disabled={busy}>
          {t('chatApp.create')}
        </button>
        <button type="button" class="small" onClick={onClose}>
          {t('chatApp.cancel')}
        </button>
      </div>
    </form>
  );
}
