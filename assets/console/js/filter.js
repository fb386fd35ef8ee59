// The filter editor: criteria (field, operator, value, AND/OR/NOT links, groups) built as
// GLPI's search engine reads them, with the stored items that match.

import { gql, nodes } from './api.js';
import { button, h, notice, replace, say, select, uid } from './dom.js';

const LINKS = [['AND', 'AND'], ['OR', 'OR'], ['AND NOT', 'AND NOT'], ['OR NOT', 'OR NOT']];
const SEARCHTYPES = [
  ['contains', 'contains'], ['notcontains', 'does not contain'], ['equals', 'is'], ['notequals', 'is not'],
  ['lessthan', 'is less than'], ['morethan', 'is more than'], ['under', 'is under (entity)'],
  ['notunder', 'is not under (entity)'], ['empty', 'is empty'],
];

/** The fields a filter can test: the item document's paths, the parent's, the actor's. */
function filterFields(variables) {
  return variables.filter((p) => p !== 'event').map((p) => (p.startsWith('item.') ? p.slice(5) : p));
}

/** One criterion or group, as a list entry of the builder. */
function criterionRow(criterion, { first, fieldsList, onRemove }) {
  const link = select(LINKS, criterion.link || 'AND', { 'aria-label': 'Link' });
  if (first) link.hidden = true;
  if (criterion.criteria) {
    const group = criteriaList(criterion.criteria, fieldsList);
    const li = h('li', { class: 'criterion group' },
      h('div', { class: 'criterion-head' }, link, h('span', { class: 'group-label' }, '( group'),
        button('Remove group', onRemove, { variant: 'small' })),
      group.el, h('span', { class: 'group-label' }, ')'));
    li.read = () => ({ link: first ? undefined : link.value, criteria: group.read() });
    return li;
  }
  const fieldInput = h('input', { type: 'text', list: fieldsList, value: criterion.field || '', 'aria-label': 'Field', placeholder: 'field, e.g. status.id' });
  const searchtype = select(SEARCHTYPES, criterion.searchtype || 'contains', { 'aria-label': 'Operator' });
  const value = h('input', { type: 'text', value: criterion.value ?? '', 'aria-label': 'Value' });
  const syncValue = () => { value.disabled = searchtype.value === 'empty'; };
  searchtype.addEventListener('change', syncValue);
  syncValue();
  const li = h('li', { class: 'criterion' }, link, fieldInput, searchtype, value,
    button('Remove', onRemove, { variant: 'small', 'aria-label': 'Remove this criterion' }));
  li.read = () => {
    const out = { field: fieldInput.value.trim(), searchtype: searchtype.value };
    if (!first) out.link = link.value;
    if (searchtype.value !== 'empty') out.value = value.value;
    return out;
  };
  return li;
}

/** A list of criteria with its add buttons; `read()` gives the CriterionInput list. */
function criteriaList(criteria, fieldsList) {
  const ol = h('ol', { class: 'criteria' });
  const add = (criterion) => {
    const first = ol.children.length === 0;
    const li = criterionRow(criterion, { first, fieldsList, onRemove: () => { li.remove(); relink(); } });
    ol.append(li);
  };
  // The first entry has no link; when it goes, the next one loses its own.
  const relink = () => {
    const items = [...ol.children];
    const state = items.map((li) => li.read());
    ol.replaceChildren();
    for (const c of state) add(c);
  };
  for (const criterion of criteria) add(criterion);
  const el = h('div', { class: 'criteria-box' }, h('p', { class: 'help empty-note' }, 'No criterion: the webhook fires for every item.'), ol,
    h('div', { class: 'row-buttons' },
      button('Add criterion', () => add({ searchtype: 'contains' }), { variant: 'small' }),
      button('Add group', () => add({ criteria: [{ searchtype: 'contains' }] }), { variant: 'small' })));
  return { el, read: () => [...ol.children].map((li) => li.read()) };
}

/**
 * The filter tab of a webhook: its criteria or saved search, the items that match, and the
 * buttons that save or clear it. `onSaved(webhook)` after a change.
 */
export function filterEditor(webhook, variables, onSaved) {
  const fieldsList = uid('filter-fields');
  const datalist = h('datalist', { id: fieldsList });
  variables(webhook.itemtype).then((paths) => {
    replace(datalist, filterFields(paths).map((p) => h('option', { value: p })));
  });
  const status = notice();
  const results = h('div', { class: 'filter-results', 'aria-live': 'polite' });
  const usingSaved = Boolean(webhook.savedSearchId);
  const saved = select([['', 'None: use the criteria below']], webhook.savedSearchId || '', { name: 'savedSearchId' });
  gql('query Saved($t: String) { savedSearches(itemtype: $t) { id name } }', { t: webhook.itemtype })
    .then((data) => {
      for (const s of data.savedSearches) saved.append(h('option', { value: s.id, selected: s.id === webhook.savedSearchId }, s.name));
    })
    .catch((error) => say(status, error.message, 'error'));
  const list = criteriaList(usingSaved ? [] : (webhook.filter || []), fieldsList);

  async function preview() {
    const criteria = saved.value ? null : list.read();
    try {
      let data;
      if (saved.value) {
        const found = await gql('query Crit($t: String) { savedSearches(itemtype: $t) { id criteria } }', { t: webhook.itemtype });
        const search = found.savedSearches.find((s) => s.id === saved.value);
        data = await gql(PREVIEW, { t: webhook.itemtype, c: search ? search.criteria : [] });
      } else {
        data = await gql(PREVIEW, { t: webhook.itemtype, c: criteria });
      }
      const items = nodes(data.filterPreview);
      replace(results,
        h('p', { class: 'count' }, `${data.filterPreview.totalCount} stored ${webhook.itemtype} item${data.filterPreview.totalCount === 1 ? '' : 's'} match`),
        h('ul', { class: 'matches' }, items.map((item) => h('li', {}, `${item.id} — ${item.name ?? ''}`))));
      say(status, '');
    } catch (error) {
      say(status, error.message, 'error');
    }
  }

  async function save(clear) {
    const variablesIn = { w: webhook.id, c: null, s: null };
    if (!clear) {
      if (saved.value) variablesIn.s = saved.value;
      else variablesIn.c = list.read();
      if (variablesIn.c && variablesIn.c.length === 0) variablesIn.c = null;
    }
    try {
      const data = await gql(SET_FILTER, variablesIn);
      say(status, variablesIn.c || variablesIn.s ? 'Filter saved.' : 'Filter removed: the webhook fires for every item.', 'ok');
      onSaved(data.setWebhookFilter);
    } catch (error) {
      say(status, error.message, 'error');
    }
  }

  return h('section', { class: 'filter-editor', 'aria-labelledby': 'filter-title' },
    h('h2', { id: 'filter-title' }, 'Filter'),
    h('p', { class: 'help' }, 'The webhook fires only for items that match. Fields are paths into the item document (',
      h('code', {}, 'status.id'), ', ', h('code', {}, 'entity.completename'), ', ', h('code', {}, 'parent_item.name'), ', ',
      h('code', {}, 'actor.user'), '). NOT binds first, then AND, then OR; a group is a parenthesis.'),
    webhook.filterError ? h('p', { class: 'notice error' }, `The stored filter cannot be used: ${webhook.filterError}`) : null,
    datalist,
    h('div', { class: 'field' }, h('label', { for: saved.id = uid('saved') }, 'Saved search'), saved),
    list.el,
    h('div', { class: 'row-buttons' },
      button('Show matching items', preview),
      button('Save filter', () => save(false), { variant: 'primary' }),
      button('Remove filter', () => save(true))),
    status, results);
}

const PREVIEW = 'query Matching($t: String!, $c: [CriterionInput!]!) { filterPreview(itemtype: $t, criteria: $c, first: 20) { totalCount edges { node { id name } } } }';
const SET_FILTER = `mutation SetFilter($w: ID!, $c: [CriterionInput!], $s: ID) {
  setWebhookFilter(webhookId: $w, criteria: $c, savedSearchId: $s) { id filter savedSearchId filterError } }`;
