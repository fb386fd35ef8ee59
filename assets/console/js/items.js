// The stored items of an itemtype (#/items/<itemtype>) with their history.

import { gql, nodes } from './api.js';
import { button, h, notice, replace, say, select, when } from './dom.js';
import { showDetail } from './queued.js';

const ITEMS = `query Items($t: String!, $after: String) { items(itemtype: $t, first: 50, after: $after) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { node { id name entity { completename } isDeleted dateMod parentItemtype parentId } } } }`;
const HISTORY = `query History($t: String!, $id: ID!) { item(itemtype: $t, id: $id) { history(first: 100) {
  totalCount edges { node { id date action message oldValue newValue queuedWebhookId actor { user profile } } } } } }`;

export function mount(main, { itemtype }) {
  const status = notice();
  replace(main, h('h1', {}, 'Items'), status);
  gql('query Types { itemtypes { name } }')
    .then(({ itemtypes }) => {
      if (!itemtype) {
        const first = itemtypes.find((t) => t.name === 'Ticket') || itemtypes[0];
        if (first) window.location.replace(`#/items/${encodeURIComponent(first.name)}`);
        return;
      }
      render(itemtypes.map((t) => t.name));
    })
    .catch((error) => say(status, error.message, 'error'));

  function render(names) {
    const picker = select(names.map((n) => [n, n]), itemtype, { name: 'itemtype', 'aria-label': 'Itemtype' });
    picker.addEventListener('change', () => { window.location.hash = `#/items/${encodeURIComponent(picker.value)}`; });
    const count = h('p', { class: 'count', role: 'status' });
    const tbody = h('tbody', {});
    const more = button('Load more', () => load(), { hidden: true });
    let cursor = null;

    async function load() {
      try {
        const data = await gql(ITEMS, { t: itemtype, after: cursor });
        const list = nodes(data.items);
        count.textContent = `${data.items.totalCount} ${itemtype} item${data.items.totalCount === 1 ? '' : 's'}`;
        for (const item of list) tbody.append(...row(item));
        if (!tbody.children.length) tbody.append(h('tr', {}, h('td', { colspan: 6 }, 'No item of this type is stored.')));
        cursor = data.items.pageInfo.endCursor;
        more.hidden = !data.items.pageInfo.hasNextPage;
      } catch (error) {
        say(status, error.message, 'error');
      }
    }

    function row(item) {
      const historyRow = h('tr', { class: 'history-row', hidden: true }, h('td', { colspan: 6 }));
      const toggle = h('button', { type: 'button', class: 'btn small', 'aria-expanded': 'false' }, 'History');
      toggle.addEventListener('click', async () => {
        const open = toggle.getAttribute('aria-expanded') === 'true';
        toggle.setAttribute('aria-expanded', String(!open));
        historyRow.hidden = open;
        if (!open) await showHistory(item, historyRow.firstChild);
      });
      return [
        h('tr', { dataset: { id: item.id } },
          h('td', {}, item.id),
          h('td', {}, item.name ?? ''),
          h('td', {}, item.entity.completename),
          h('td', {}, item.isDeleted ? 'in the trash' : ''),
          h('td', {}, when(item.dateMod)),
          h('td', {}, toggle)),
        historyRow,
      ];
    }

    replace(main,
      h('div', { class: 'page-head' }, h('h1', {}, `Items: ${itemtype}`), h('label', {}, 'Itemtype ', picker)),
      status, count,
      h('div', { class: 'table-wrap' }, h('table', { class: 'grid', 'aria-label': `${itemtype} items` },
        h('thead', {}, h('tr', {}, ['Id', 'Name', 'Entity', 'State', 'Modified', 'History'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody)),
      more);
    load();
  }

  async function showHistory(item, cell) {
    replace(cell, 'Loading…');
    try {
      const data = await gql(HISTORY, { t: itemtype, id: item.id });
      const entries = nodes(data.item?.history);
      replace(cell, entries.length
        ? h('table', { class: 'grid history', 'aria-label': `History of ${itemtype} ${item.id}` },
          h('thead', {}, h('tr', {}, ['Date', 'Action', 'Change', 'By'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, entries.map((e) => h('tr', {},
            h('td', {}, when(e.date)),
            h('td', {}, e.action),
            h('td', {}, e.message,
              e.oldValue !== null || e.newValue !== null ? h('small', { class: 'change' }, ` (${e.oldValue ?? '∅'} → ${e.newValue ?? '∅'})`) : null,
              e.queuedWebhookId ? [' ', h('button', { type: 'button', class: 'link', onclick: () => showDetail(e.queuedWebhookId) }, `queued webhook ${e.queuedWebhookId}`)] : null),
            h('td', {}, e.actor ? `${e.actor.user} (${e.actor.profile})` : 'hookline')))))
        : 'No history.');
    } catch (error) {
      replace(cell, h('span', { class: 'notice error' }, error.message));
    }
  }
}
