// Side panels (a conversation's history, the routing rules in force) and the per-queue
// counts above the grid.

import { $, h, STATUS_LABEL, age, when } from './dom.js';

function place(ctx, side) {
  if (!side) return '—';
  const parts = [STATUS_LABEL[side.status] || side.status, ctx.queueName(side.queue)];
  if (side.representative) parts.push(ctx.repName(side.representative));
  return parts.join(' · ');
}

/** The history of conversation `id`: who did what, when, under which rule-set version. */
export async function showHistory(ctx, id) {
  const panel = $('#history-panel');
  const body = $('#history-body');
  panel.hidden = false;
  panel.dataset.id = id;
  $('#history-title').textContent = `History of ${id}`;
  body.setAttribute('aria-busy', 'true');
  try {
    const { events } = await ctx.api.history(id);
    if (panel.dataset.id !== id) return;
    body.replaceChildren(h('ol', { class: 'history' }, events.map((e) => h('li', {},
      h('div', { class: 'what' }, h('strong', {}, e.action), ' by ', h('span', { class: 'actor' }, e.actor), ' · ',
        h('time', { datetime: e.at }, when(e.at))),
      h('div', {}, `${place(ctx, e.from)} → ${place(ctx, e.to)}`),
      h('div', { class: 'meta' }, `#${e.seq}`, e.ruleset ? ` · rules ${e.ruleset}` : ''),
      e.note ? h('blockquote', {}, e.note) : ''))));
  } catch (p) {
    body.replaceChildren(h('p', { class: 'error' }, p.detail || p.message));
  } finally {
    body.removeAttribute('aria-busy');
  }
}

/** The rules panel: version, files, rules, plugins with calls and failures, last error. */
export async function showRules(ctx) {
  const panel = $('#rules-panel');
  const body = $('#rules-body');
  panel.hidden = false;
  $('#rules-toggle').setAttribute('aria-expanded', 'true');
  body.setAttribute('aria-busy', 'true');
  try {
    const r = await ctx.api.rules();
    const err = r.last_error;
    const location = err && err.file ? `${err.file}${err.line ? `:${err.line}` : ''}${err.column ? `:${err.column}` : ''}` : '';
    body.replaceChildren(
      h('dl', { class: 'facts' },
        h('dt', {}, 'Version in force'), h('dd', {}, h('code', { id: 'rules-version' }, r.version)),
        h('dt', {}, 'Loaded'), h('dd', {}, h('time', { datetime: r.loaded_at }, when(r.loaded_at)))),
      h('h3', {}, `Files (${r.files.length})`),
      r.files.length ? h('ul', { class: 'files' }, r.files.map((f) => h('li', {}, h('code', {}, f)))) : h('p', {}, 'No rule files: every target is eligible.'),
      r.rules ? h('h3', {}, `Rules (${r.rules.length})`) : '',
      r.rules ? h('ul', { class: 'files' }, r.rules.map((id) => h('li', {}, h('code', {}, id)))) : '',
      h('h3', {}, `Plugins (${r.plugins.length})`),
      r.plugins.length ? h('table', { class: 'plugins' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Plugin'), h('th', { scope: 'col' }, 'Calls'), h('th', { scope: 'col' }, 'Failures'))),
        h('tbody', {}, r.plugins.map((p) => h('tr', {},
          h('th', { scope: 'row' }, h('code', {}, p.name), h('div', { class: 'sha', title: p.sha256 }, `sha256 ${String(p.sha256).slice(0, 12)}…`)),
          h('td', {}, p.calls ?? '—'), h('td', { class: p.failures ? 'bad' : '' }, p.failures ?? '—')))))
        : h('p', {}, 'No plugins loaded.'),
      h('h3', {}, 'Last reload error'),
      err ? h('div', { class: 'last-error', role: 'note' },
        location ? h('code', { class: 'where' }, location) : '', h('p', {}, err.message), h('p', { class: 'meta' }, when(err.at)))
        : h('p', {}, 'None: the last reload succeeded.'));
  } catch (p) {
    body.replaceChildren(h('p', { class: 'error' }, p.detail || p.message));
  } finally {
    body.removeAttribute('aria-busy');
  }
}

/** The counts per queue (GET /v1/stats), each with its Distribute button. */
export async function showCounts(ctx) {
  const { queues } = await ctx.api.stats();
  const tbody = $('#counts tbody');
  const canDistribute = ctx.may.supervise;
  tbody.replaceChildren(...queues.map((q) => h('tr', { 'data-queue': q.queue },
    h('th', { scope: 'row' }, ctx.queueName(q.queue)),
    h('td', {}, q.conversations.open), h('td', {}, q.conversations.active),
    h('td', {}, q.conversations.waiting), h('td', {}, q.conversations.wrap_up),
    h('td', {}, q.oldest_open_at ? age(q.oldest_open_at) : '—'),
    h('td', {}, `${q.representatives.available} of ${q.representatives.members}`),
    h('td', { class: 'act' }, canDistribute && q.conversations.open > 0
      ? h('button', { type: 'button', class: 'small', 'data-distribute': q.queue, 'aria-label': `Distribute ${ctx.queueName(q.queue)}` }, 'Distribute')
      : ''))));
}
