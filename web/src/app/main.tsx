// The web client: home page, pre-join screen and meeting, in one page that
// the server answers every /<room> with.
import './style.css';
import { render } from 'preact';
import { loadMeetConfig } from '../lib';
import { App } from './app';

const root = document.getElementById('app');
if (root) render(<App />, root);

// Installable, and the shell opens even when the network is gone (it then
// says that the server cannot be reached instead of a browser error page).
// Not under a self-signed certificate, which browsers refuse workers from.
if ('serviceWorker' in navigator && window.isSecureContext) {
  loadMeetConfig()
    .then((c) => (c.installable === true ? navigator.serviceWorker.register('/sw.js') : undefined))
    .catch(() => undefined);
}
