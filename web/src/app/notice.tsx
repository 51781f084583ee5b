// A page of its own for a state the user must read: loading, a failure,
// the end of a meeting. It always offers a way on: the home page at least,
// except in a meeting another site embeds, where the home page refuses to be
// framed and the site itself is the way on (it gets readyToClose).
import type { ComponentChildren } from 'preact';
import { embedded } from './embed';
import { t } from './i18n';

export function Notice(props: {
  title: string;
  body?: string;
  detail?: string;
  busy?: boolean;
  children?: ComponentChildren;
}) {
  return (
    <main class="centered">
      <section class="card" aria-busy={props.busy === true} aria-labelledby="notice-title">
        <h1 id="notice-title">{props.title}</h1>
        {props.busy === true && <div class="spinner" role="status" aria-label={props.title} />}
        {props.body !== undefined && <p>{props.body}</p>}
        {props.detail !== undefined && <p class="detail">{props.detail}</p>}
        <div class="row">
          {props.children}
          {props.busy !== true && <HomeLink />}
        </div>
      </section>
    </main>
  );
}

/** The way back to the home page; none in an embedded meeting (the home page refuses framing). */
export function HomeLink() {
  if (embedded() !== null) return null;
  return (
    <a class="button" href="/">
      {t('common.home')}
    </a>
  );
}

/** A problem to read at once (announced by screen readers); nothing when `text` is ''. */
export function ErrorText({ text, id, banner = false }: { text: string; id?: string; banner?: boolean }) {
  if (text === '') return null;
  return (
    <p id={id} class={banner ? 'banner warn' : 'error'} role="alert">
      {text}
    </p>
  );
}
