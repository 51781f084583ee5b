// The meeting's chat: the room's messages (with its history on joining)
// and private ones, which say with whom.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ComposeRow } from '../compose';
import { DropZone, FileView, UploadProgress } from '../files';
import { t } from '../i18n';
import { ErrorText } from '../notice';
import { VirtualLog, type LogControl } from '../log';
import { MAX_CHAT_MESSAGE, type ChatEntry, type MeetingStore } from './store';

function senderOf(e: ChatEntry): string {
  if (e.mine) return t('chat.you');
  return e.fromName !== '' ? e.fromName : t('tile.guest');
}

function timeOf(d: Date): string {
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function ChatPanel({ store }: { store: MeetingStore }) {
  const entries = store.chat.value;
  const peers = store.peers.value;
  const [text, setText] = useState('');
  const to = store.chatTo.value;
  const setTo = (id: string) => (store.chatTo.value = id);
  const [error, setError] = useState('');
  const log = useRef<LogControl>(null);
  const input = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    input.current?.focus();
  }, []);
  // Whom a private reply goes to can leave; the message then goes nowhere.
  useEffect(() => {
    if (to !== '' && !peers.has(to)) setTo('');
  }, [peers, to]);

  const send = (ev?: Event) => {
    ev?.preventDefault();
    const body = text.trim();
    if (body === '') return;
    setText('');
    log.current?.toEnd();
    store.sendChat(body, to === '' ? undefined : to).catch(() => {
      setText(body);
      setError(t('chat.sendFailed'));
    });
  };

  const sendFiles = (files: File[]) => {
    for (const f of files) void store.sendFile(f, to === '' ? undefined : to);
  };

  return (
    <section class="panel chat" aria-labelledby="chat-title">
      <DropZone class="drop" onFiles={store.canShareFiles ? sendFiles : () => setError(t('files.forbidden'))}>
        <h2 id="chat-title">{t('chat.title')}</h2>
        {entries.length === 0 && <p class="chat-empty">{t('chat.empty')}</p>}
        {/* Mounted while empty too: the first message is news to announce. */}
        <VirtualLog
          class="chat-log"
          label={t('chat.title')}
          items={entries}
          keyOf={(e) => e.id}
          control={log}
          row={(e, props) => (
            <li class={`${e.mine ? 'mine' : ''}${e.privateWith !== undefined ? ' private' : ''}`} {...props}>
              <div class="meta">
                <b>{senderOf(e)}</b>
                <time dateTime={e.at.toISOString()}>{timeOf(e.at)}</time>
              </div>
              {e.privateWith !== undefined && (
                <div class="private-note">
                  {e.mine ? t('chat.privateTo', { name: e.privateWithName ?? '' }) : t('chat.privateFrom')}
                  {!e.mine && peers.has(e.from) && (
                    <button type="button" class="link" onClick={() => setTo(e.from)}>
                      {t('chat.reply')}
                    </button>
                  )}
                </div>
              )}
              {e.file !== undefined ? <FileView file={e.file} /> : <p class="text">{e.text}</p>}
              {e.progress !== undefined && <UploadProgress name={e.file?.name ?? e.text} progress={e.progress} error={e.error} />}
            </li>
          )}
        />
        <form class="chat-form" onSubmit={send}>
          <label for="chat-to">{t('chat.to')}</label>
          <select id="chat-to" value={to} onChange={(e) => setTo(e.currentTarget.value)}>
            <option value="">{t('chat.everyone')}</option>
            {[...peers.values()].map((p) => (
              <option key={p.id} value={p.id}>
                {t('chat.privately', { name: p.name !== '' ? p.name : t('tile.guest') })}
              </option>
            ))}
          </select>
          <label for="chat-input" class="visually-hidden">
            {t('chat.message')}
          </label>
          <ComposeRow
            id="chat-input"
            inputRef={input}
            value={text}
            maxLength={MAX_CHAT_MESSAGE}
            placeholder={to === '' ? t('chat.placeholder') : t('chat.placeholderPrivate', { name: store.nameOf(to) })}
            submitLabel={t('chat.send')}
            onInput={(v) => {
              setText(v);
              setError('');
            }}
            onSend={send}
            onFiles={store.canShareFiles ? sendFiles : undefined}
          />
          <ErrorText text={error} />
        </form>
      </DropZone>
    </section>
  );
}
