// The console's shell: sign-in, navigation, the hash routes and the connection's state.
//
// Routes: #/queue, #/webhooks, #/webhooks/new, #/webhooks/<id>, #/items/<itemtype>.

import { ApiError, gql } from './api.js';
import { button, field, h, replace, showFieldError } from './dom.js';
import { live } from './live.js';
import * as session from './session.js';
import * as queuePage from './queue.js';
import * as webhooksPage from './webhooks.js';
import * as webhookPage from './webhook.js';
import * as itemsPage from './items.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const banner = document.getElementById('banner');
const connection = document.getElementById('connection');
const signOutButton = document.getElementById('sign-out');

let cleanup = null;
let refusal = null;

function route() {
  const hash = window.location.hash.replace(/^#\/?/, '');
  const parts = hash.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'webhooks' && parts[1] === 'new') return { page: webhookPage, params: { id: null }, nav: 'webhooks' };
  if (parts[0] === 'webhooks' && parts[1]) return { page: webhookPage, params: { id: parts[1] }, nav: 'webhooks' };
  if (parts[0] === 'webhooks') return { page: webhooksPage, params: {}, nav: 'webhooks' };
  if (parts[0] === 'items') return { page: itemsPage, params: { itemtype: parts[1] || null }, nav: 'items' };
  return { page: queuePage, params: {}, nav: 'queue' };
}

function unmount() {
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.warn('cleanup failed', error);
    }
  }
  cleanup = null;
}

function render() {
  unmount();
  if (!session.token()) {
    showSignIn();
    return;
  }
  document.body.classList.add('signed-in');
  nav.hidden = false;
  signOutButton.hidden = false;
  const { page, params, nav: current } = route();
  for (const link of nav.querySelectorAll('a')) {
    if (link.dataset.nav === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  replace(main);
  main.focus({ preventScroll: true });
  const result = page.mount(main, params);
  cleanup = typeof result === 'function' ? result : null;
}

function showSignIn() {
  document.body.classList.remove('signed-in');
  nav.hidden = true;
  signOutButton.hidden = true;
  setConnection('idle');
  const input = h('input', {
    type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true,
  });
  const status = h('p', { class: 'notice', role: 'status' });
  const submit = button('Sign in', null, { type: 'submit', variant: 'primary' });
  const form = h(
    'form',
    { class: 'sign-in', 'aria-labelledby': 'sign-in-title', novalidate: true },
    h('h1', { id: 'sign-in-title' }, 'Sign in to hookline'),
    h('p', { class: 'help' }, 'Paste an API token (a super-admin token is in admin.token in the data directory; ',
      h('code', {}, 'hookline token'), ' issues others). It is kept for this browser tab only.'),
    field('API token', input, { name: 'token' }),
    submit,
    status,
  );
  if (refusal) {
    showFieldError(form, 'token', `The server refused the token: ${refusal}`);
    refusal = null;
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) {
      showFieldError(form, 'token', 'Paste a token first.');
      input.focus();
      return;
    }
    submit.disabled = true;
    status.textContent = 'Checking the token…';
    try {
      await gql('query SignIn { __typename }', {}, { token: value });
      session.signIn(value);
      status.textContent = '';
      if (!window.location.hash || window.location.hash === '#/') window.location.hash = '#/queue';
      else render();
    } catch (error) {
      status.textContent = '';
      const message = error instanceof ApiError && error.code === 'UNAUTHENTICATED'
        ? `The server refused the token: ${error.message}`
        : error.message;
      showFieldError(form, 'token', message);
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(main, form);
  input.focus();
}

function signOut(reason) {
  session.signOut();
  live.reset();
  unmount();
  refusal = reason || null;
  hideBanner();
  showSignIn();
}

function setConnection(state) {
  const labels = {
    idle: '',
    connecting: 'Connecting…',
    open: 'Live',
    reconnecting: 'Connection lost; reconnecting…',
  };
  connection.textContent = labels[state] || '';
  connection.dataset.state = state;
  if (state === 'reconnecting') showBanner('The live connection dropped; reconnecting by itself…');
  else if (state === 'open' && banner.dataset.kind === 'connection') hideBanner();
}

function showBanner(message, kind = 'connection') {
  banner.hidden = false;
  banner.dataset.kind = kind;
  banner.textContent = message;
}

function hideBanner() {
  banner.hidden = true;
  banner.dataset.kind = '';
  banner.textContent = '';
}

window.addEventListener('hashchange', render);
window.addEventListener('hookline:unauthenticated', (event) => {
  if (session.token()) signOut(event.detail);
});
window.addEventListener('hookline:reachable', (event) => {
  if (!event.detail) showBanner('The server cannot be reached; check the connection.', 'network');
  else if (banner.dataset.kind === 'network') hideBanner();
});
signOutButton.addEventListener('click', () => {
  signOut(null);
  window.location.hash = '#/queue';
});
live.onState(setConnection);
render();
