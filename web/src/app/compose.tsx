// The message box of both chats (a meeting's and the chat app's): attach,
// emoji, type, Enter sends (Shift+Enter is a new line), the send button.
import type { Ref } from 'preact';
import { Smile } from 'lucide-preact';
import { useState } from 'preact/hooks';
import { EmojiPicker } from './emoji';
import { AttachButton } from './files';
import { t } from './i18n';

export function ComposeRow(props: {
  id: string;
  inputRef: Ref<HTMLTextAreaElement>;
  value: string;
  placeholder: string;
  maxLength: number;
  submitLabel: string;
  class?: string;
  onInput: (text: string) => void;
  onSend: (ev: Event) => void;
  /** Without it, no attach button (files are not taken from us here). */
  onFiles?: ((files: File[]) => void) | undefined;
  /** Keys beyond Enter (editing the last message, cancelling a reply). */
  onKeyDown?: (ev: KeyboardEvent) => void;
}) {
  const [emoji, setEmoji] = useState(false);
  // Where the cursor is (or over what is selected), then back to typing.
  const insert = (e: string) => {
    const el = document.getElementById(props.id);
    const box = el instanceof HTMLTextAreaElement ? el : null;
    const start = box?.selectionStart ?? props.value.length;
    const end = box?.selectionEnd ?? start;
    props.onInput(props.value.slice(0, start) + e + props.value.slice(end));
    setEmoji(false);
    requestAnimationFrame(() => {
      box?.focus();
      box?.setSelectionRange(start + e.length, start + e.length);
    });
  };
  return (
    <div class="compose-wrap">
      {emoji && <EmojiPicker floating label={t('emoji.pickInsert')} onPick={insert} onClose={() => setEmoji(false)} />}
      <div class={`row${props.class !== undefined ? ` ${props.class}` : ''}`}>
        {props.onFiles !== undefined && <AttachButton onFiles={props.onFiles} />}
        <button type="button" class="icon" aria-label={t('emoji.insert')} aria-expanded={emoji} onClick={() => setEmoji(!emoji)}>
          <Smile aria-hidden="true" size={18} />
        </button>
        <textarea
          ref={props.inputRef}
          id={props.id}
          rows={2}
          maxLength={props.maxLength}
          value={props.value}
          placeholder={props.placeholder}
          onInput={(e) => props.onInput(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) props.onSend(e);
            else props.onKeyDown?.(e);
          }}
        />
        <button type="submit" class="primary">
          {props.submitLabel}
        </button>
      </div>
    </div>
  );
}
