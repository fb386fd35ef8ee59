// A queued webhook: its detail (request, response, error, as GLPI's queries log shows it) and
// the actions on it (force send, resend, cancel), shared by the queue and a webhook's log.

import { gql } from './api.js';
import { button, h, pretty, replace, statusBadge, when } from './dom.js';

/** The fields a row of a list shows. */
export const ROW_FIELDS =
  'id webhookId itemtype itemId entityId event status sentTry maxAttempts lastStatusCode createTime sentTime lastError isTest';

const DETAIL = `query QueuedWebhook($id: ID!) { queuedWebhook(id: $id) {
  ${ROW_FIELDS} url httpMethod headers body responseBody deliveryId sendTime webhook { id name } } }`;

/** The actions a row in this status offers: [label, mutation name]. */
export function actionsFor(status) {
  switch (status) {
    case 'FAILED':
      return [['Force send', 'force'], ['Resend', 'resend']];
    case 'RETRYING':
      return [['Force send', 'force'], ['Cancel', 'cancel']];
    case 'PENDING':
      return [['Cancel', 'cancel']];
    default:
      return [];
  }
}

/**
 * Runs an action on a row; returns a message saying what happened. `force` and `cancel`
 * return the row as it is now in `result.row`.
 */
export async function runAction(action, id) {
  switch (action) {
    case 'force': {
      const data = await gql(
        `mutation Force($id: ID!) { forceSendQueuedWebhook(id: $id) { ${ROW_FIELDS} } }`, { id });
      const row = data.forceSendQueuedWebhook;
      return { row, message: `Queued webhook ${id} sent now: ${row.status.toLowerCase()}${row.lastStatusCode ? ` (HTTP ${row.lastStatusCode})` : ''}.` };
    }
    case 'resend': {
      const data = await gql('mutation Resend($ids: [ID!]) { resendFailedWebhooks(ids: $ids) }', { ids: [id] });
      const count = data.resendFailedWebhooks;
      return { row: null, message: count ? `Queued webhook ${id} is queued again.` : `Queued webhook ${id} was no longer failed.` };
    }
    case 'cancel': {
      const data = await gql(
        `mutation Cancel($id: ID!) { cancelQueuedWebhook(id: $id) { ${ROW_FIELDS} } }`, { id });
      return { row: data.cancelQueuedWebhook, message: `Queued webhook ${id} cancelled.` };
    }
    default:
      throw new Error(`unknown action ${action}`);
  }
}

/** The action buttons of a row; `done(result)` or `failed(error)` after each. */
export function actionButtons(row, { done, failed }) {
  return actionsFor(row.status).map(([label, action]) =>
    button(label, async (event) => {
      const target = event.currentTarget;
      target.disabled = true;
      try {
        done(await runAction(action, row.id));
      } catch (error) {
        failed(error);
      } finally {
        target.disabled = false;
      }
    }, { variant: 'small', 'aria-label': `${label} queued webhook ${row.id}`, dataset: { action } }));
}

let dialog = null;

/** Opens the detail of a queued webhook in a dialog. */
export async function showDetail(id) {
  if (!dialog) {
    dialog = h('dialog', { class: 'detail', 'aria-labelledby': 'detail-title' });
    document.body.append(dialog);
  }
  const close = button('Close', () => dialog.close(), { variant: 'small' });
  replace(dialog, h('div', { class: 'dialog-head' }, h('h2', { id: 'detail-title' }, `Queued webhook ${id}`), close),
    h('p', {}, 'Loading…'));
  if (!dialog.open) dialog.showModal();
  close.focus();
  try {
    const { queuedWebhook: row } = await gql(DETAIL, { id });
    if (!row) {
      replace(dialog, h('div', { class: 'dialog-head' }, h('h2', { id: 'detail-title' }, `Queued webhook ${id}`), close),
        h('p', {}, 'It no longer exists (cleaned up), or it is outside your entities.'));
      return;
    }
    replace(
      dialog,
      h('div', { class: 'dialog-head' }, h('h2', { id: 'detail-title' }, `Queued webhook ${id} `, statusBadge(row.status, row.isTest)), close),
      h('dl', { class: 'facts' },
        fact('Webhook', row.webhook ? h('a', { href: `#/webhooks/${row.webhook.id}` }, row.webhook.name) : `#${row.webhookId}`),
        fact('Item', `${row.itemtype} ${row.itemId}`),
        fact('Event', row.event.toLowerCase()),
        fact('Attempts', `${row.sentTry} of ${row.maxAttempts}`),
        fact('Delivery id', row.deliveryId),
        fact('Created', when(row.createTime)),
        fact('Next attempt', ['PENDING', 'RETRYING'].includes(row.status) ? when(row.sendTime) : '—'),
        fact('Last attempt', when(row.sentTime) || '—'),
        fact('Status code', row.lastStatusCode ?? '—'),
      ),
      h('h3', {}, 'Request'),
      h('pre', { class: 'code', 'data-part': 'request-line' }, `${row.httpMethod} ${row.url}`),
      h('h4', {}, 'Headers'),
      h('pre', { class: 'code', 'data-part': 'headers' }, pretty(row.headers)),
      h('h4', {}, 'Body'),
      h('pre', { class: 'code', 'data-part': 'body' }, row.body ?? '(none)'),
      h('h3', {}, 'Response'),
      h('pre', { class: 'code', 'data-part': 'response' }, row.responseBody ?? '(not saved, or none)'),
      row.lastError ? [h('h3', {}, 'Error'), h('pre', { class: 'code error', 'data-part': 'error' }, row.lastError)] : null,
    );
  } catch (error) {
    replace(dialog, h('div', { class: 'dialog-head' }, h('h2', { id: 'detail-title' }, `Queued webhook ${id}`), close),
      h('p', { class: 'notice error' }, error.message));
  }
}

function fact(term, value) {
  return [h('dt', {}, term), h('dd', {}, value)];
}

/** The id of a row as a button that opens its detail. */
export function idButton(row) {
  return h('button', {
    type: 'button', class: 'link', onclick: () => showDetail(row.id), 'aria-label': `Details of queued webhook ${row.id}`,
  }, row.id);
}
