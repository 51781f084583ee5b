// One conversation: its history (paged back through the archive), each
// message's reply, reactions, edit and delete, files with their progress,
// the composer, and "Start a call".
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ArrowLeft, Bell, BellOff, Pencil, Phone, Reply, Trash, X } from 'lucide-preact';
import type { ChatItem } from '../../lib';
import { VirtualLog, type LogControl, type RowProps } from '../log';
import { ComposeRow } from '../compose';
import { EmojiPicker } from '../emoji';
import { DropZone, FileView, UploadProgress } from '../files';
import { t } from '../i18n';
import { ErrorText } from '../notice';
import type { ChatStore, PendingUpload } from './store';

const MAX_MESSAGE = 10000;
const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '🙏'];
const URL_RE = /(https?:\/\/[^\s<>"]+)/g;

/** Text with its web links made links; nothing else is interpreted. */
function Linked({ text }: { text: string }) {
  const parts = text.split(URL_RE);
  return (
    <>
      {parts.map((p, i) => {
        if (i % 2 === 0) return p;
        const same = p.startsWith(`${location.origin}/`);
        return (
          <a key={i} href={p} {...(same ? {} : { target: '_blank', rel: 'noopener noreferrer' })}>
            {p}
          </a>
        );
      })}
    </>
  );
}

/** A row of the log: a message, or a file on its way. */
type Row = { kind: 'message'; item: ChatItem } | { kind: 'upload'; upload: PendingUpload };

function rowKey(r: Row): string {
  if (r.kind === 'upload') return `upload|${r.upload.key}`;
  return `${r.item.stanzaId ?? ''}|${r.item.id}|${r.item.sender}`;
}

function timeOf(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function ConversationView({ store, jid }: { store: ChatStore; jid: string }) {
  const conv = store.conversations.value.get(jid);
  const contact = store.contacts.value.get(jid);
  const muted = store.muted.value.has(jid);
  const allUploads = store.uploads.value;
  const [text, setText] = useState('');
  const [replyTo, setReplyTo] = useState<ChatItem | null>(null);
  const [editing, setEditing] = useState<ChatItem | null>(null);
  const [error, setError] = useState('');
  const loadingEarlier = store.loadingEarlier.value.has(jid);
  const log = useRef<LogControl>(null);
  const input = useRef<HTMLTextAreaElement>(null);
  const items = conv?.items ?? [];
  const rows = useMemo(
    (): Row[] => [
      ...items.map((item): Row => ({ kind: 'message', item })),
      ...allUploads.filter((u) => u.conversation === jid).map((upload): Row => ({ kind: 'upload', upload })),
    ],
    [items, allUploads, jid],
  );

  useEffect(() => {
    input.current?.focus();
  }, [jid, replyTo, editing]);

  // The log keeps the message being read in place as older ones arrive.
  const earlier = () => void store.loadEarlier(jid);

  const send = (ev?: Event) => {
    ev?.preventDefault();
    const body = text.trim();
    if (body === '') return;
    setText('');
    setError('');
    const done = editing !== null ? store.edit(editing, body) : store.send(jid, body, replyTo ?? undefined);
    setEditing(null);
    setReplyTo(null);
    log.current?.toEnd();
    done.catch(() => {
      setText(body);
      setError(t('chat.sendFailed'));
    });
  };

  const call = () => {
    store.startCall(jid).then(
      (room) => location.assign(`/${encodeURIComponent(room)}`),
      () => setError(t('chatApp.callFailed')),
    );
  };

  const name = store.nameOf(jid);
  return (
    <section class="conversation" aria-labelledby="conv-title">
      <header class="conv-head">
        <button type="button" class="icon back" aria-label={t('chatApp.back')} onClick={() => (store.active.value = null)}>
          <ArrowLeft aria-hidden="true" size={18} />
        </button>
        <h2 id="conv-title">{name}</h2>
        {contact !== undefined && <span class="detail">{t(`presence.${contact.show}`)}</span>}
        <span class="spacer" />
        <button
          type="button"
          class="icon"
          aria-pressed={muted}
          aria-label={muted ? t('chatApp.unmuteNotifications') : t('chatApp.muteNotifications')}
          title={muted ? t('chatApp.unmuteNotifications') : t('chatApp.muteNotifications')}
          onClick={() => store.toggleMute(jid)}
        >
          {muted ? <BellOff aria-hidden="true" size={18} /> : <Bell aria-hidden="true" size={18} />}
        </button>
        <button type="button" class="primary small" onClick={call}>
          <Phone aria-hidden="true" size={16} /> <span class="call-label">{t('chatApp.startCall')}</span>
        </button>
      </header>
      <DropZone class="conv-body" onFiles={(f) => store.sendFiles(jid, f)}>
        <VirtualLog
          key={jid}
          class="messages"
          label={t('chatApp.messagesWith', { name })}
          items={rows}
          keyOf={rowKey}
          onNearStart={earlier}
          head={
            conv?.complete === true ? (
              <span class="detail">{t('chatApp.historyStart')}</span>
            ) : (
              <button type="button" class="small" disabled={loadingEarlier} onClick={earlier}>
                {loadingEarlier ? t('chatApp.loading') : t('chatApp.loadEarlier')}
              </button>
            )
          }
          control={log}
          row={(r, props) => {
            if (r.kind === 'upload') {
              const u = r.upload;
              return (
                <li class="msg mine" {...props}>
                  <div class="meta">
                    <b>{t('chat.you')}</b>
                  </div>
                  <UploadProgress name={u.name} progress={u.progress} error={u.error} />
                  {u.error !== undefined && (
                    <button type="button" class="small" onClick={() => store.dismissUpload(u.key)}>
                      {t('common.dismiss')}
                    </button>
                  )}
                </li>
              );
            }
            const m = r.item;
            return (
              <Message
                store={store}
                item={m}
                row={props}
                onReply={() => {
                  setEditing(null);
                  setReplyTo(m);
                }}
                onEdit={() => {
                  setReplyTo(null);
                  setEditing(m);
                  setText(m.text);
                }}
              />
            );
          }}
        />
        <form class="chat-form" onSubmit={send}>
          {(replyTo !== null || editing !== null) && (
            <div class="composing">
              <span>
                {editing !== null
                  ? t('chatApp.editing')
                  : t('chatApp.replyingTo', { name: replyTo !== null ? store.senderName(replyTo) : '' })}
              </span>
              {replyTo !== null && <q>{replyTo.text.slice(0, 80)}</q>}
              <button
                type="button"
                class="icon"
                aria-label={t('chatApp.cancel')}
                onClick={() => {
                  if (editing !== null) setText('');
                  setEditing(null);
                  setReplyTo(null);
                }}
              >
                <X aria-hidden="true" size={16} />
              </button>
            </div>
          )}
          <label for="compose" class="visually-hidden">
            {t('chatApp.messageTo', { name })}
          </label>
          <ComposeRow
            id="compose"
            class="compose"
            inputRef={input}
            value={text}
            maxLength={MAX_MESSAGE}
            placeholder={t('chatApp.messageTo', { name })}
            submitLabel={editing !== null ? t('chatApp.save') : t('chat.send')}
            onInput={(v) => {
              setText(v);
              setError('');
            }}
            onSend={send}
            onFiles={(f) => store.sendFiles(jid, f)}
            onKeyDown={(e) => {
              if (e.key === 'Escape') {
                setEditing(null);
                setReplyTo(null);
              }
              if (e.key === 'ArrowUp' && text === '') {
                const last = [...items].reverse().find((x) => x.outgoing && !x.retracted && x.file === undefined);
                if (last !== undefined) {
                  e.preventDefault();
                  setEditing(last);
                  setText(last.text);
                }
              }
            }}
          />
          <ErrorText text={error} />
        </form>
      </DropZone>
    </section>
  );
}

function Message({
  store,
  item,
  row,
  onReply,
  onEdit,
}: {
  store: ChatStore;
  item: ChatItem;
  row: RowProps;
  onReply: () => void;
  onEdit: () => void;
}) {
  const [picking, setPicking] = useState(false);
  const [more, setMore] = useState(false);
  const who = store.senderName(item);
  if (item.retracted === true) {
    return (
      <li class="msg retracted" {...row}>
        <div class="meta">
          <b>{who}</b>
          <time dateTime={new Date(item.stamp).toISOString()}>{timeOf(item.stamp)}</time>
        </div>
        <p class="text detail">{t('chatApp.deleted')}</p>
      </li>
    );
  }
  const reactions = Object.entries(item.reactions ?? {});
  return (
    <li class={`msg${item.outgoing ? ' mine' : ''}`} data-id={item.id} {...row}>
      <div class="meta">
        <b>{who}</b>
        <time dateTime={new Date(item.stamp).toISOString()}>{timeOf(item.stamp)}</time>
        {item.edited === true && <span class="detail">{t('chatApp.edited')}</span>}
        {item.inCall !== undefined && <span class="detail in-call">{t('chatApp.inCall')}</span>}
      </div>
      {item.reply?.quote !== undefined && <blockquote class="quote">{item.reply.quote}</blockquote>}
      {item.file !== undefined ? (
        <FileView file={item.file} />
      ) : (
        <p class="text">
          <Linked text={item.text} />
        </p>
      )}
      {reactions.length > 0 && (
        <ul class="reaction-list" aria-label={t('chatApp.reactions')}>
          {reactions.map(([emoji, who]) => (
            <li key={emoji}>
              <button
                type="button"
                class="small reaction"
                aria-pressed={who.includes(item.groupchat ? (store.client.nicks.get(item.conversation) ?? '') : store.me)}
                aria-label={t('chatApp.reactionCount', { emoji, count: who.length })}
                onClick={() => void store.react(item, emoji)}
              >
                {emoji} {who.length}
              </button>
            </li>
          ))}
        </ul>
      )}
      {item.inCall === undefined && (
        <div class="msg-actions">
          <button type="button" class="small" aria-label={t('chatApp.replyTo', { name: who })} onClick={onReply}>
            <Reply aria-hidden="true" size={14} />
          </button>
          <button type="button" class="small" aria-expanded={picking} aria-label={t('chatApp.react')} onClick={() => setPicking(!picking)}>
            +😀
          </button>
          {item.outgoing && item.file === undefined && (
            <button type="button" class="small" aria-label={t('chatApp.edit')} onClick={onEdit}>
              <Pencil aria-hidden="true" size={14} />
            </button>
          )}
          {item.outgoing && (
            <button
              type="button"
              class="small"
              aria-label={t('chatApp.delete')}
              onClick={() => {
                if (confirm(t('chatApp.confirmDelete'))) void store.retract(item);
              }}
            >
              <Trash aria-hidden="true" size={14} />
            </button>
          )}
        </div>
      )}
      {picking && (
        <div class="picker" role="group" aria-label={t('chatApp.react')}>
          {QUICK_REACTIONS.map((e) => (
            <button
              key={e}
              type="button"
              class="small"
              aria-label={t('chatApp.reactWith', { emoji: e })}
              onClick={() => {
                setPicking(false);
                void store.react(item, e);
              }}
            >
              {e}
            </button>
          ))}
          <button type="button" class="small" aria-expanded={more} onClick={() => setMore(!more)}>
            {t('emoji.more')}
          </button>
        </div>
      )}
      {picking && more && (
        <EmojiPicker
          label={t('emoji.pickReaction')}
          onPick={(e) => {
            setMore(false);
            setPicking(false);
            void store.react(item, e);
          }}
          onClose={() => setMore(false)}
        />
      )}
    </li>
  );
}
