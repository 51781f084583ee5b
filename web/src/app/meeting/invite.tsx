// Inviting people: the meeting's link to copy or share, and as a QR code
// for a phone to scan (Jitsi Meet's "Invite someone", in the participants
// panel; the QR code is lean-qr's, drawn on a canvas: no image is fetched).
import { generate } from 'lean-qr';
import { QrCode } from 'lucide-preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { t } from '../i18n';
import { meetingLink } from '../route';

export function InvitePeople({ room }: { room: string }) {
  const link = meetingLink(room);
  const [copied, setCopied] = useState<'yes' | 'failed' | null>(null);
  const [qr, setQr] = useState(false);
  const copy = () => {
    navigator.clipboard.writeText(link).then(
      () => setCopied('yes'),
      () => setCopied('failed'),
    );
  };
  const canShare = typeof navigator.share === 'function';
  return (
    <section class="invite" aria-labelledby="invite-title">
      <h3 id="invite-title">{t('invite.title')}</h3>
      <label for="invite-link">{t('invite.linkLabel')}</label>
      <input id="invite-link" type="text" readOnly value={link} onFocus={(e) => e.currentTarget.select()} />
      <div class="row">
        <button type="button" class="small primary" onClick={copy}>
          {t('invite.copy')}
        </button>
        {canShare && (
          <button type="button" class="small" onClick={() => void navigator.share({ title: t('invite.shareTitle', { room }), url: link }).catch(() => undefined)}>
            {t('invite.share')}
          </button>
        )}
        <button type="button" class="small" aria-expanded={qr} aria-controls="invite-qr" onClick={() => setQr(!qr)}>
          <QrCode aria-hidden="true" size={14} /> {t('invite.qr')}
        </button>
      </div>
      <p class="detail" role="status">
        {copied === 'yes' ? t('invite.copied') : copied === 'failed' ? t('invite.copyFailed') : ''}
      </p>
      {qr && <QrCanvas id="invite-qr" text={link} label={t('invite.qrLabel', { url: link })} />}
    </section>
  );
}

function QrCanvas({ id, text, label }: { id: string; text: string; label: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (canvas.current === null) return;
    // One pixel per module (and the quiet zone the standard asks for);
    // CSS scales it up without smoothing.
    generate(text).toCanvas(canvas.current, { on: [0, 0, 0, 255], off: [255, 255, 255, 255], pad: 4 });
  }, [text]);
  return <canvas id={id} class="qr" ref={canvas} role="img" aria-label={label} />;
}
