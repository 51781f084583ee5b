// Files in chat, for the meeting's chat and the chat app alike: the
// attach button, a drop zone, the progress of our upload, and what a shared
// file looks like (an image or a video to play and seek inline, anything
// else a download link).
import type { ComponentChildren } from 'preact';
import { useRef, useState } from 'preact/hooks';
import { Paperclip } from 'lucide-preact';
import type { FileRef, UploadError } from '../lib';
import { t } from './i18n';

const IMAGE = /\.(png|jpe?g|gif|webp|avif)$/i;
const VIDEO = /\.(mp4|webm|ogv|mov)$/i;

export function uploadMessage(err: UploadError): string {
  switch (err.reason) {
    case 'quota':
      return t('files.quota');
    case 'too-large':
      return t('files.tooLarge', { detail: err.message });
    case 'forbidden':
      return t('files.forbidden');
    case 'unavailable':
      return t('files.unavailable');
    case 'failed':
      return t('files.failedDetail', { detail: err.message });
  }
}

export function FileView({ file }: { file: FileRef }) {
  if (IMAGE.test(file.name)) {
    return (
      <a class="file image" href={file.url} target="_blank" rel="noopener noreferrer">
        <img src={file.url} alt={file.name} loading="lazy" />
      </a>
    );
  }
  if (VIDEO.test(file.name)) {
    return (
      <span class="file video">
        <video src={file.url} controls preload="metadata" aria-label={file.name} />
        <a href={file.url} download={file.name}>
          {t('files.download', { name: file.name })}
        </a>
      </span>
    );
  }
  return (
    <a class="file" href={file.url} download={file.name}>
      {t('files.download', { name: file.name })}
    </a>
  );
}

/** Our file on its way: a real progress bar, then "sent", or why not. */
export function UploadProgress({ name, progress, error }: { name: string; progress: number; error?: string | undefined }) {
  if (error !== undefined) {
    return (
      <p class="upload-error" role="alert">
        {t('files.notSent', { name })} {error}
      </p>
    );
  }
  const pct = Math.round(progress * 100);
  return (
    <span class="upload">
      <progress max={100} value={pct} aria-label={t('files.uploading', { name })} />
      <span>{pct >= 100 ? t('files.sent') : `${String(pct)}%`}</span>
    </span>
  );
}

/** The attach button and its hidden file input. */
export function AttachButton({ onFiles, disabled = false }: { onFiles: (files: File[]) => void; disabled?: boolean }) {
  const input = useRef<HTMLInputElement>(null);
  return (
    <>
      <input
        ref={input}
        type="file"
        multiple
        class="visually-hidden"
        tabIndex={-1}
        aria-hidden="true"
        onChange={(e) => {
          const files = [...(e.currentTarget.files ?? [])];
          e.currentTarget.value = '';
          if (files.length > 0) onFiles(files);
        }}
      />
      <button type="button" class="icon" disabled={disabled} aria-label={t('files.attach')} title={t('files.attach')} onClick={() => input.current?.click()}>
        <Paperclip aria-hidden="true" size={18} />
      </button>
    </>
  );
}

/** Wraps `children` so that files dropped on them are sent. */
export function DropZone({ onFiles, children, class: cls }: { onFiles: (files: File[]) => void; children: ComponentChildren; class: string }) {
  const [over, setOver] = useState(false);
  return (
    <div
      class={`${cls}${over ? ' drop-over' : ''}`}
      onDragOver={(e) => {
        if (e.dataTransfer?.types.includes('Files') !== true) return;
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        setOver(false);
        const files = [...(e.dataTransfer?.files ?? [])];
        if (files.length === 0) return;
        e.preventDefault();
        onFiles(files);
      }}
    >
      {children}
    </div>
  );
}
