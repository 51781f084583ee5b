// The message box of both chats (a meeting's and the chat app's): attach,
// type, Enter sends (Shift+Enter is a new line), the send button.
import type { Ref } from 'preact';
import { AttachButton } from './files';

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
  return (
    <div class={`row${props.class !== undefined ? ` ${props.class}` : ''}`}>
      {props.onFiles !== undefined && <AttachButton onFiles={props.onFiles} />}
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
  );
}
