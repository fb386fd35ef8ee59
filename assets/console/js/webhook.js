// One webhook (#/webhooks/<id>, #/webhooks/new): the form with every field, grouped as GLPI
// groups them, and the filter, preview (with "Send test delivery") and queries log tabs.

import { ApiError, gql } from './api.js';
import {
  button, clearFieldErrors, field, h, notice, replace, say, select, showFieldError,
} from './dom.js';
import { templateEditor, variablesOf } from './editor.js';
import { filterEditor } from './filter.js';
import { previewPanel } from './preview.js';
import { queriesLog } from './log.js';
import { generateSecret } from './secret.js';

const FIELDS = `id name comment isActive categoryId entityId isRecursive itemtype event sentTry url httpMethod
  saveResponseBody logInItemHistory signatureScheme expiration useCraChallenge useOauth oauthUrl clientId
  hasClientSecret useDefaultPayload payload customHeaders filter filterError savedSearchId ordered coalesceSeconds
  maxPerSecond health { state consecutiveFailures openedAt nextProbeAt }`;
const LOAD = `query Webhook($id: ID!) { webhook(id: $id) { ${FIELDS} } }`;
const LISTS = 'query FormLists { entities { id completename } webhookCategories { id completename } itemtypes { name } }';
const CREATE = `mutation Create($input: WebhookInput!) { createWebhook(input: $input) { ${FIELDS} } }`;
const UPDATE = `mutation Update($id: ID!, $input: WebhookPatch!) { updateWebhook(id: $id, input: $input) { ${FIELDS} } }`;
const EVENTS = ['NEW', 'UPDATE', 'DELETE', 'RESTORE', 'PURGE'];
const METHODS = ['POST', 'GET', 'PUT', 'PATCH', 'DELETE', 'UPDATE'];
const SCHEMES = [['GLPI', 'GLPI (X-GLPI-signature)'], ['STANDARD_WEBHOOKS', 'Standard Webhooks'], ['BOTH', 'Both']];
const DEFAULTS = {
  name: '', comment: '', isActive: true, categoryId: null, entityId: '0', isRecursive: false, itemtype: 'Ticket',
  event: 'NEW', sentTry: 3, url: '', httpMethod: 'POST', saveResponseBody: false, logInItemHistory: false,
  signatureScheme: 'GLPI', expiration: 0, useCraChallenge: false, useOauth: false, oauthUrl: '', clientId: '',
  hasClientSecret: false, useDefaultPayload: true, payload: '', customHeaders: {},
  ordered: false, coalesceSeconds: 0, maxPerSecond: null,
};

/** The secret of a webhook just created, shown once by the page the creation moves to. */
let secretToShow = null;

const variables = variablesOf(gql);

export function mount(main, { id }) {
  const status = notice();
  replace(main, h('h1', {}, id ? 'Webhook' : 'New webhook'), status);
  let stopTab = null;
  (async () => {
    try {
      const lists = await gql(LISTS);
      let webhook = { ...DEFAULTS };
      if (id) {
        const data = await gql(LOAD, { id });
        if (!data.webhook) {
          say(status, `There is no webhook ${id} (or it is outside your entities).`, 'error');
          return;
        }
        webhook = data.webhook;
      }
      render(webhook, lists);
    } catch (error) {
      say(status, error.message, 'error');
    }
  })();

  function render(webhook, lists) {
    const title = h('h1', {}, id ? webhook.name : 'New webhook');
    const panels = {};
    const tabs = [['settings', 'Settings'], ['filter', 'Filter'], ['preview', 'Preview'], ['log', 'Queries log']];
    const tablist = h('div', { role: 'tablist', class: 'tabs', 'aria-label': 'Webhook' });
    const tabButtons = {};
    for (const [key, label] of tabs) {
      const tab = h('button', {
        type: 'button', role: 'tab', id: `tab-${key}`, 'aria-controls': `panel-${key}`, 'aria-selected': 'false',
        tabindex: '-1', disabled: !id && key !== 'settings', dataset: { tab: key },
      }, label);
      tab.addEventListener('click', () => show(key));
      tab.addEventListener('keydown', (event) => {
        const keys = tabs.map(([k]) => k).filter((k) => !tabButtons[k].disabled);
        const at = keys.indexOf(key);
        let next = null;
        if (event.key === 'ArrowRight') next = keys[(at + 1) % keys.length];
        if (event.key === 'ArrowLeft') next = keys[(at - 1 + keys.length) % keys.length];
        if (next) {
          event.preventDefault();
          show(next);
          tabButtons[next].focus();
        }
      });
      tabButtons[key] = tab;
      tablist.append(tab);
      panels[key] = h('div', { role: 'tabpanel', id: `panel-${key}`, 'aria-labelledby': `tab-${key}`, hidden: true, tabindex: '0' });
    }
    const secretBox = h('div', { class: 'secret-box', hidden: true, role: 'alert' });

    function show(key) {
      stopTab?.();
      stopTab = null;
      for (const [k] of tabs) {
        tabButtons[k].setAttribute('aria-selected', String(k === key));
        tabButtons[k].tabIndex = k === key ? 0 : -1;
        panels[k].hidden = k !== key;
      }
      if (key === 'filter') {
        replace(panels.filter, filterEditor(webhook, variables, (saved) => Object.assign(webhook, saved)));
      } else if (key === 'preview') {
        replace(panels.preview, previewPanel(webhook));
      } else if (key === 'log') {
        const log = queriesLog(webhook);
        replace(panels.log, log.el);
        stopTab = log.stop;
      }
    }

    const actions = id
      ? h('div', { class: 'head-actions' },
        button('Check CRA', () => checkCra(webhook, status), { variant: 'small' }),
        button('Send test delivery', () => { show('preview'); panels.preview.querySelector('input')?.focus(); }, { variant: 'small' }),
        button('Delete', () => remove(webhook, status), { variant: 'small danger' }))
      : null;
    replace(main, h('div', { class: 'page-head' }, title, actions), status, secretBox, tablist,
      ...tabs.map(([k]) => panels[k]));
    replace(panels.settings, settingsForm(webhook, lists, {
      status,
      saved: (updated, secret) => {
        if (!id) {
          secretToShow = secret;
          window.location.hash = `#/webhooks/${updated.id}`;
          return;
        }
        Object.assign(webhook, updated);
        title.textContent = updated.name;
        if (secret) showSecret(secretBox, secret);
      },
    }));
    if (secretToShow) {
      showSecret(secretBox, secretToShow);
      secretToShow = null;
      say(status, 'Webhook created.', 'ok');
    }
    show('settings');
  }

  return () => stopTab?.();
}

function showSecret(box, secret) {
  const code = h('code', { class: 'secret', 'data-part': 'secret' }, secret);
  replace(box,
    h('p', {}, h('strong', {}, 'The signing secret, shown this once: '), 'copy it to the receiver now.'),
    code,
    button('Copy', async () => {
      try {
        await navigator.clipboard.writeText(secret);
      } catch {
        window.getSelection().selectAllChildren(code);
      }
    }, { variant: 'small' }),
    button('Done', () => { box.hidden = true; replace(box); }, { variant: 'small' }));
  box.hidden = false;
}

async function checkCra(webhook, status) {
  say(status, 'Sending the challenge…');
  try {
    const { validateCraChallenge: r } = await gql(
      'mutation Cra($w: ID!) { validateCraChallenge(webhookId: $w) { valid message statusCode } }', { w: webhook.id });
    say(status, `CRA challenge ${r.valid ? 'answered correctly' : 'failed'}: ${r.message}${r.statusCode ? ` (HTTP ${r.statusCode})` : ''}`, r.valid ? 'ok' : 'error');
  } catch (error) {
    say(status, error.message, 'error');
  }
}

async function remove(webhook, status) {
  if (!window.confirm(`Delete the webhook “${webhook.name}” and its history?`)) return;
  try {
    await gql('mutation Delete($id: ID!) { deleteWebhook(id: $id) }', { id: webhook.id });
    window.location.hash = '#/webhooks';
  } catch (error) {
    say(status, error.message, 'error');
  }
}

/** A fieldset with its legend. */
function group(legend, ...children) {
  return h('fieldset', { class: 'group' }, h('legend', {}, legend), h('div', { class: 'fields' }, children));
}

/** The circuit breaker's state, as the last load saw it. */
function healthLine(health) {
  if (!health) return null;
  const words = { CLOSED: 'closed: deliveries flow', OPEN: 'open: sends paused after repeated failures', HALF_OPEN: 'half-open: one probe is being sent' };
  const parts = [`Breaker ${words[health.state] ?? health.state}`];
  if (health.consecutiveFailures) parts.push(`${health.consecutiveFailures} failures in a row`);
  if (health.nextProbeAt) parts.push(`next probe at ${new Date(health.nextProbeAt).toLocaleString()}`);
  return h('p', { class: 'help', id: 'webhook-health', dataset: { state: health.state } }, `${parts.join('; ')}.`);
}

function checkbox(name, checked) {
  return h('input', { type: 'checkbox', name, checked });
}

/** The header rows editor: name, value (a template with completion), remove. */
function headersEditor(headers, itemtypeValue) {
  const rows = h('div', { class: 'header-rows' });
  const add = (name = '', value = '') => {
    const nameInput = h('input', { type: 'text', value: name, 'aria-label': 'Header name', placeholder: 'X-Header-Name', class: 'header-name' });
    const editor = templateEditor({ value, multiline: false, variables: () => variables(itemtypeValue()), 'aria-label': 'Header value' });
    const error = h('p', { class: 'field-error', role: 'alert', hidden: true });
    const row = h('div', { class: 'header-row field' }, nameInput, editor.wrapper,
      button('Remove', () => row.remove(), { variant: 'small', 'aria-label': 'Remove this header' }), error);
    row.read = () => [nameInput.value.trim(), editor.control.value];
    row.nameInput = nameInput;
    rows.append(row);
    return row;
  };
  for (const [name, value] of Object.entries(headers || {})) add(name, String(value));
  const el = h('div', { class: 'headers-editor field wide', dataset: { field: 'customHeaders' } },
    h('p', { class: 'help' }, 'Values are templates ({{ item.name }}). Credential headers (Authorization, names with token, secret, key…) are stored encrypted and read (hidden); leave (hidden) to keep the stored value.'),
    rows,
    button('Add header', () => add().nameInput.focus(), { variant: 'small' }),
    h('p', { class: 'field-error', role: 'alert', hidden: true }));
  return {
    el,
    read: () => Object.fromEntries([...rows.children].map((row) => row.read()).filter(([name]) => name)),
    /** Shows an error at the row of header `name`; false when there is none. */
    showError(name, message) {
      const row = [...rows.children].find((r) => r.read()[0].toLowerCase() === name.toLowerCase());
      if (!row) return false;
      const error = row.querySelector('.field-error');
      error.textContent = message;
      error.hidden = false;
      row.classList.add('invalid');
      row.querySelector('input.code')?.setAttribute('aria-invalid', 'true');
      return true;
    },
    clearErrors() {
      for (const row of rows.children) {
        row.classList.remove('invalid');
        const error = row.querySelector('.field-error');
        error.hidden = true;
        error.textContent = '';
      }
    },
  };
}

function settingsForm(webhook, lists, { status, saved }) {
  const isNew = !webhook.id;
  const c = {
    name: h('input', { type: 'text', name: 'name', value: webhook.name, required: true, autocomplete: 'off' }),
    comment: h('textarea', { name: 'comment', rows: 2 }),
    isActive: checkbox('isActive', webhook.isActive),
    categoryId: select([['', '(none)'], ...lists.webhookCategories.map((x) => [x.id, x.completename])], webhook.categoryId, { name: 'categoryId' }),
    entityId: select(lists.entities.map((x) => [x.id, x.completename]), webhook.entityId, { name: 'entityId' }),
    isRecursive: checkbox('isRecursive', webhook.isRecursive),
    itemtype: select(lists.itemtypes.map((x) => [x.name, x.name]), webhook.itemtype, { name: 'itemtype' }),
    event: select(EVENTS.map((e) => [e, e.toLowerCase()]), webhook.event, { name: 'event' }),
    sentTry: h('input', { type: 'number', name: 'sentTry', min: 0, max: 255, value: webhook.sentTry }),
    httpMethod: select(METHODS.map((m) => [m, m]), webhook.httpMethod, { name: 'httpMethod' }),
    saveResponseBody: checkbox('saveResponseBody', webhook.saveResponseBody),
    logInItemHistory: checkbox('logInItemHistory', webhook.logInItemHistory),
    signatureScheme: select(SCHEMES, webhook.signatureScheme, { name: 'signatureScheme' }),
    expiration: h('input', { type: 'number', name: 'expiration', min: 0, value: webhook.expiration }),
    useCraChallenge: checkbox('useCraChallenge', webhook.useCraChallenge),
    useOauth: checkbox('useOauth', webhook.useOauth),
    oauthUrl: h('input', { type: 'url', name: 'oauthUrl', value: webhook.oauthUrl ?? '' }),
    clientId: h('input', { type: 'text', name: 'clientId', value: webhook.clientId ?? '', autocomplete: 'off' }),
    clientSecret: h('input', {
      type: 'password', name: 'clientSecret', autocomplete: 'new-password',
      placeholder: webhook.hasClientSecret ? 'stored; leave empty to keep it' : '',
    }),
    useDefaultPayload: checkbox('useDefaultPayload', webhook.useDefaultPayload),
    ordered: checkbox('ordered', webhook.ordered),
    coalesceSeconds: h('input', { type: 'number', name: 'coalesceSeconds', min: 0, max: 3600, value: webhook.coalesceSeconds ?? 0 }),
    maxPerSecond: h('input', { type: 'number', name: 'maxPerSecond', min: 1, max: 10000, value: webhook.maxPerSecond ?? '', placeholder: 'no limit' }),
  };
  c.comment.value = webhook.comment ?? '';
  const itemtype = () => c.itemtype.value;
  const url = templateEditor({ value: webhook.url, multiline: false, name: 'url', placeholder: 'the receiver\'s address (http or https)', variables: () => variables(itemtype()) });
  const payload = templateEditor({ value: webhook.payload ?? '', name: 'payload', rows: 12, variables: () => variables(itemtype()) });
  const headers = headersEditor(webhook.customHeaders, itemtype);
  const syncPayload = () => { payload.control.disabled = c.useDefaultPayload.checked; };
  c.useDefaultPayload.addEventListener('change', syncPayload);
  syncPayload();
  const syncOauth = () => { for (const k of ['oauthUrl', 'clientId', 'clientSecret']) c[k].disabled = !c.useOauth.checked; };
  c.useOauth.addEventListener('change', syncOauth);
  syncOauth();

  // A new secret: always for a new webhook; on an edit, when asked or when the scheme moves
  // away from GLPI (Standard Webhooks needs a whsec_ key).
  let newSecret = isNew;
  const secretNote = h('p', { class: 'help', id: 'secret-note' });
  const describeSecret = () => {
    secretNote.textContent = newSecret
      ? 'A new secret will be generated in this browser when you save, and shown once.'
      : 'A secret is stored (it is never shown again).';
  };
  describeSecret();
  const regenerate = button('Generate a new secret', () => { newSecret = true; describeSecret(); }, { variant: 'small' });
  c.signatureScheme.addEventListener('change', () => {
    if (!isNew && webhook.signatureScheme === 'GLPI' && c.signatureScheme.value !== 'GLPI') {
      newSecret = true;
      describeSecret();
    }
  });

  const form = h('form', { class: 'webhook-form', novalidate: true, 'aria-label': 'Webhook settings' },
    group('Basic configuration',
      field('Name', c.name, { name: 'name' }),
      field('Comment', c.comment, { name: 'comment', wide: true }),
      field('Active', c.isActive, { name: 'isActive' }),
      field('Category', c.categoryId, { name: 'categoryId' }),
      field('Entity', c.entityId, { name: 'entityId' }),
      field('Child entities', c.isRecursive, { name: 'isRecursive' }),
      field('Itemtype', c.itemtype, { name: 'itemtype' }),
      field('Event', c.event, { name: 'event' }),
      field('Number of retries', c.sentTry, { name: 'sentTry', help: 'Attempts = retries + 1 (0 to 255).' })),
    group('Target',
      field('URL', url.control, { name: 'url', wide: true, container: url.wrapper, help: 'A template: {{ item.id }} and the other variables may be used.' }),
      field('HTTP method', c.httpMethod, { name: 'httpMethod' }),
      field('Save response body', c.saveResponseBody, { name: 'saveResponseBody' }),
      field('Log in item history', c.logInItemHistory, { name: 'logInItemHistory' })),
    group('Security',
      field('Signature', c.signatureScheme, { name: 'signatureScheme' }),
      h('div', { class: 'field', dataset: { field: 'secret' } }, h('span', { class: 'label' }, 'Secret'), secretNote,
        isNew ? null : regenerate, h('p', { class: 'field-error', role: 'alert', hidden: true })),
      field('Signature validity (seconds, 0 = unlimited)', c.expiration, { name: 'expiration' }),
      field('CRA challenge', c.useCraChallenge, { name: 'useCraChallenge' }),
      field('OAuth', c.useOauth, { name: 'useOauth' }),
      field('OAuth token URL', c.oauthUrl, { name: 'oauthUrl' }),
      field('Client id', c.clientId, { name: 'clientId' }),
      field('Client secret', c.clientSecret, { name: 'clientSecret' })),
    group('Delivery control',
      field('Ordered per item', c.ordered, { name: 'ordered', help: 'The deliveries of one item go one at a time, in event order.' }),
      field('Coalesce updates (seconds)', c.coalesceSeconds, { name: 'coalesceSeconds', help: 'Update deliveries wait this long; a newer update of the item replaces a waiting one (0 to 3600).' }),
      field('Most sends per second', c.maxPerSecond, { name: 'maxPerSecond', help: 'Empty: no limit (1 to 10000).' }),
      isNew ? null : healthLine(webhook.health)),
    group('Payload',
      field('Use the default payload', c.useDefaultPayload, { name: 'useDefaultPayload', help: '{"item": …, "event": …}, as GLPI sends it.' }),
      field('Payload template', payload.control, { name: 'payload', wide: true, container: payload.wrapper, help: 'Type {{ to insert a variable of the item.' })),
    group('Custom headers', headers.el),
    h('div', { class: 'form-actions' }, button(isNew ? 'Create webhook' : 'Save', null, { type: 'submit', variant: 'primary' })));

  const input = () => {
    const out = {
      name: c.name.value.trim(),
      comment: c.comment.value.trim() || null,
      isActive: c.isActive.checked,
      categoryId: c.categoryId.value || null,
      entityId: c.entityId.value,
      isRecursive: c.isRecursive.checked,
      itemtype: c.itemtype.value,
      event: c.event.value,
      sentTry: Number.parseInt(c.sentTry.value, 10),
      url: url.control.value.trim(),
      httpMethod: c.httpMethod.value,
      saveResponseBody: c.saveResponseBody.checked,
      logInItemHistory: c.logInItemHistory.checked,
      signatureScheme: c.signatureScheme.value,
      expiration: Number.parseInt(c.expiration.value || '0', 10),
      useCraChallenge: c.useCraChallenge.checked,
      useOauth: c.useOauth.checked,
      oauthUrl: c.oauthUrl.value.trim() || null,
      clientId: c.clientId.value.trim() || null,
      useDefaultPayload: c.useDefaultPayload.checked,
      payload: payload.control.value === '' ? null : payload.control.value,
      customHeaders: headers.read(),
      ordered: c.ordered.checked,
      coalesceSeconds: Number.parseInt(c.coalesceSeconds.value || '0', 10),
      maxPerSecond: c.maxPerSecond.value === '' ? null : Number.parseInt(c.maxPerSecond.value, 10),
    };
    if (Number.isNaN(out.sentTry)) out.sentTry = null;
    if (Number.isNaN(out.expiration)) out.expiration = null;
    if (Number.isNaN(out.coalesceSeconds)) out.coalesceSeconds = null;
    if (Number.isNaN(out.maxPerSecond)) out.maxPerSecond = null;
    if (c.clientSecret.value) out.clientSecret = c.clientSecret.value;
    return out;
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    headers.clearErrors();
    say(status, 'Saving…');
    const values = input();
    const secret = newSecret ? generateSecret(values.signatureScheme) : null;
    if (secret) values.secret = secret;
    try {
      const data = isNew
        ? await gql(CREATE, { input: values })
        : await gql(UPDATE, { id: webhook.id, input: values });
      const updated = isNew ? data.createWebhook : data.updateWebhook;
      say(status, isNew ? 'Webhook created.' : 'Saved.', 'ok');
      newSecret = false;
      describeSecret();
      c.clientSecret.value = '';
      saved(updated, secret);
    } catch (error) {
      placeError(error);
    }
  });

  /** Puts an error at the field it names (`extensions.field`), else above the form. */
  function placeError(error) {
    if (!(error instanceof ApiError) || !error.field) {
      say(status, error.message, 'error');
      return;
    }
    const name = error.field.replace(/^input\./, '');
    const message = error.describe();
    let placed = null;
    if (name.startsWith('customHeaders.')) {
      if (headers.showError(name.slice('customHeaders.'.length), message)) placed = headers.el;
      else placed = showFieldError(form, 'customHeaders', message);
    } else {
      placed = showFieldError(form, name, message);
    }
    if (placed) {
      say(status, 'Nothing was saved: correct the field marked below.', 'error');
      placed.scrollIntoView({ block: 'center' });
      placed.querySelector('[aria-invalid="true"], input, textarea, select')?.focus();
      if (name === 'payload' && error.line) moveCaret(payload.control, error.line, error.column);
    } else {
      say(status, message, 'error');
    }
  }
  return form;
}

/** Puts the caret of a textarea at a line and column (1-based). */
function moveCaret(textarea, line, column) {
  const lines = textarea.value.split('\n');
  let offset = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i += 1) offset += lines[i].length + 1;
  offset += Math.max(0, (column || 1) - 1);
  textarea.setSelectionRange(offset, offset);
}
