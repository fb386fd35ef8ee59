// The preview tab of a webhook: pick a stored item, see the API data and the exact payload,
// URL and headers that would be sent, and send it as a test delivery.

import { gql, nodes } from './api.js';
import { button, field, h, notice, pretty, replace, say, statusBadge, uid } from './dom.js';
import { showDetail } from './queued.js';

const PREVIEW = `query Preview($w: ID!, $i: ID!) { webhookPreview(webhookId: $w, itemId: $i) {
  apiData payload url headers matchesFilter } }`;
const SEND = `mutation Test($w: ID!, $i: ID!) { sendTestDelivery(webhookId: $w, itemId: $i) {
  id status isTest sentTry lastStatusCode responseBody lastError } }`;
const ITEMS = 'query Items($t: String!) { items(itemtype: $t, first: 200) { totalCount edges { node { id name } } } }';

export function previewPanel(webhook) {
  const listId = uid('items');
  const datalist = h('datalist', { id: listId });
  const itemInput = h('input', { type: 'text', name: 'itemId', list: listId, autocomplete: 'off', placeholder: 'an item id' });
  const status = notice();
  const result = h('div', { class: 'preview-result' });
  const testResult = h('div', { class: 'test-result', 'aria-live': 'polite' });
  const previewButton = button('Preview', () => preview(), { variant: 'primary' });
  const sendButton = button('Send test delivery', () => send());

  gql(ITEMS, { t: webhook.itemtype })
    .then((data) => {
      const items = nodes(data.items);
      replace(datalist, items.map((item) => h('option', { value: item.id }, `${item.id} — ${item.name ?? ''}`)));
      if (!itemInput.value && items.length) itemInput.value = items[items.length - 1].id;
      if (!items.length) say(status, `No ${webhook.itemtype} item is stored yet: create one through the API to preview.`);
    })
    .catch((error) => say(status, error.message, 'error'));

  async function preview() {
    const itemId = itemInput.value.trim();
    if (!itemId) {
      say(status, 'Choose an item first.', 'error');
      return;
    }
    say(status, 'Rendering…');
    try {
      const { webhookPreview: p } = await gql(PREVIEW, { w: webhook.id, i: itemId });
      say(status, '');
      replace(result,
        h('p', { class: p.matchesFilter ? 'notice ok' : 'notice warn', 'data-part': 'matches' },
          p.matchesFilter ? 'The item matches the filter: an event would queue this.' : 'The item does not match the filter: an event would not queue this (a test delivery sends it anyway).'),
        h('h3', {}, 'URL'), h('pre', { class: 'code', 'data-part': 'url' }, `${webhook.httpMethod} ${p.url}`),
        h('h3', {}, 'Headers'), h('pre', { class: 'code', 'data-part': 'headers' }, pretty(p.headers)),
        h('h3', {}, 'Payload'), h('pre', { class: 'code', 'data-part': 'payload' }, p.payload),
        h('details', {}, h('summary', {}, 'API data (the template variables)'),
          h('pre', { class: 'code', 'data-part': 'api-data' }, pretty(p.apiData))));
    } catch (error) {
      replace(result);
      say(status, error.describe ? error.describe() : error.message, 'error');
    }
  }

  async function send() {
    const itemId = itemInput.value.trim();
    if (!itemId) {
      say(status, 'Choose an item first.', 'error');
      return;
    }
    sendButton.disabled = true;
    say(status, 'Sending a test delivery…');
    try {
      const { sendTestDelivery: row } = await gql(SEND, { w: webhook.id, i: itemId });
      say(status, '');
      replace(testResult,
        h('h3', {}, 'Test delivery'),
        h('p', { 'data-part': 'test-status' }, statusBadge(row.status, row.isTest),
          row.lastStatusCode ? ` HTTP ${row.lastStatusCode}` : '', ' ',
          h('button', { type: 'button', class: 'link', onclick: () => showDetail(row.id) }, `queued webhook ${row.id}`)),
        row.lastError ? h('pre', { class: 'code error' }, row.lastError) : null,
        row.responseBody ? [h('h4', {}, 'Response'), h('pre', { class: 'code' }, row.responseBody)] : null);
    } catch (error) {
      say(status, error.describe ? error.describe() : error.message, 'error');
    } finally {
      sendButton.disabled = false;
    }
  }

  const form = h('form', { class: 'preview-form', novalidate: true },
    field('Item', itemInput, { name: 'itemId', help: `A stored ${webhook.itemtype} item (its id).` }),
    datalist, h('div', { class: 'row-buttons' }, previewButton, sendButton));
  form.addEventListener('submit', (event) => { event.preventDefault(); preview(); });
  return h('section', { 'aria-labelledby': 'preview-title' },
    h('h2', { id: 'preview-title' }, 'Preview'),
    h('p', { class: 'help' }, 'What the webhook sends for a stored item now; signatures and timestamps are computed at send time. “Send test delivery” sends it once, whatever “Active” and the filter say, and logs it as a test.'),
    form, status, result, testResult);
}
